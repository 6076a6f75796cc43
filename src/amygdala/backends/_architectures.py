"""Where the generic sites live in each Hugging Face architecture: data, not code.

The torch backend reaches a `Site` through a handful of module paths per model
class. They are plain data in an `ArchitectureMap`; `ARCHITECTURES` holds the
built-in ones by class name (``type(model).__name__``), and a user can pass their
own map for a model that is not listed (``attach(model, tok, architecture=...)``
or ``TorchHooksBackend(loaded, architecture=...)``), or register one for the
whole process with `register_architecture`.

What ``resid_mid`` means differs between block layouts; `ArchitectureMap.layout`
names the layout and ``docs/backends.md`` explains each one.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from amygdala.errors import UnsupportedArchitectureError

__all__ = [
    "ARCHITECTURES",
    "ArchitectureMap",
    "Layout",
    "architecture_for",
    "register_architecture",
]

Layout = Literal["pre_norm", "sandwich_norm", "post_norm", "parallel"]
LAYOUTS: Final[tuple[Layout, ...]] = ("pre_norm", "sandwich_norm", "post_norm", "parallel")


def _nonempty(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value or value.startswith(".") or value.endswith("."):
        raise ValueError(
            f"ArchitectureMap.{attribute.name} must be a dotted module path like "
            f"'self_attn.o_proj', got {value!r}"
        )


@attrs.frozen(kw_only=True)
class ArchitectureMap:
    """Module paths of one Hugging Face architecture.

    ``blocks`` is relative to the model root; every other path is relative to one
    decoder block.

    Attributes:
        blocks: the ``ModuleList`` of decoder blocks (``model.layers``); a block's
            input is ``resid_pre`` and its (first) output ``resid_post``.
        attn: the attention module.
        attn_residual: the module whose (first) output the block adds to the residual
            stream after attention: ``attn`` itself in Llama-style blocks, the norm
            after attention in Gemma 2/3 and OLMo 2. ``resid_mid`` is read and
            written through it (``resid_pre`` + its output).
        heads: the attention output projection W_O; its input is the heads
            concatenated, ``[batch, seq, heads * d_head]`` (``attn_heads``).
        mlp_in: the MLP module; its input is what the MLP reads.
        mlp_out: the MLP down projection; its input is the neuron activations
            (``mlp_neurons``) and its weight holds what each neuron writes.
        weight_layout: ``"out_in"`` for ``torch.nn.Linear`` (``[out, in]``),
            ``"in_out"`` for GPT-2's ``Conv1D``.
        layout: ``pre_norm`` (Llama), ``sandwich_norm`` (norms before and after each
            sublayer: Gemma 2/3), ``post_norm`` (norm after each sublayer, before
            the add: OLMo 2) or ``parallel`` (attention and MLP read the same block
            input: GPT-NeoX, Phi-1/2). Under ``sandwich_norm``/``post_norm`` a
            neuron's write is normed before it reaches the residual stream, so
            ``mlp_out`` weights give its direction only up to that norm.

    >>> ArchitectureMap(blocks="model.layers", attn="self_attn", heads="self_attn.o_proj",
    ...                 mlp_in="mlp", mlp_out="mlp.down_proj").attn_residual
    'self_attn'
    """

    blocks: str = attrs.field(validator=_nonempty)
    attn: str = attrs.field(validator=_nonempty)
    heads: str = attrs.field(validator=_nonempty)
    mlp_in: str = attrs.field(validator=_nonempty)
    mlp_out: str = attrs.field(validator=_nonempty)
    attn_residual: str = attrs.field(validator=_nonempty)
    weight_layout: Literal["out_in", "in_out"] = attrs.field(
        default="out_in", validator=attrs.validators.in_(("out_in", "in_out")))
    layout: Layout = attrs.field(default="pre_norm", validator=attrs.validators.in_(LAYOUTS))

    @attn_residual.default
    def _attn_residual_default(self) -> str:
        return self.attn

    def paths(self) -> dict[str, str]:
        """The block-relative paths by field name (``blocks`` excluded)."""
        return {"attn": self.attn, "attn_residual": self.attn_residual, "heads": self.heads,
                "mlp_in": self.mlp_in, "mlp_out": self.mlp_out}

    def check(self, model: Any, *, name: str = "this model") -> Any:
        """Resolve every path on ``model`` and return its block list.

        Raises:
            UnsupportedArchitectureError: a path does not exist; the message names the
                field, the path and the modules that do exist there.
        """
        try:
            blocks = model.get_submodule(self.blocks)
        except AttributeError as exc:
            top = ", ".join(n for n, _ in model.named_children())
            raise UnsupportedArchitectureError(
                f"ArchitectureMap for {name}: blocks={self.blocks!r} is not a module of the "
                f"model ({exc}); its top-level modules are: {top}. Fix the map's `blocks`."
            ) from exc
        if len(blocks) == 0:
            raise UnsupportedArchitectureError(
                f"ArchitectureMap for {name}: blocks={self.blocks!r} is empty; expected the "
                "ModuleList of decoder blocks")
        block = blocks[0]
        for field, path in self.paths().items():
            try:
                block.get_submodule(path)
            except AttributeError as exc:
                inside = sorted(n for n, _ in block.named_modules() if n)
                raise UnsupportedArchitectureError(
                    f"ArchitectureMap for {name}: {field}={path!r} is not a module of block 0 "
                    f"({self.blocks}.0); its modules are: {', '.join(inside)}. Fix the map's "
                    f"`{field}` (see docs/backends.md, 'Adding an architecture')."
                ) from exc
        return blocks


_LLAMA = ArchitectureMap(
    blocks="model.layers", attn="self_attn", heads="self_attn.o_proj", mlp_in="mlp",
    mlp_out="mlp.down_proj",
)
# Gemma 2/3: input norm, attention, a norm on the attention output, then the add;
# the same around the MLP. resid_mid is resid_pre + the normed attention output.
_GEMMA_SANDWICH = attrs.evolve(_LLAMA, attn_residual="post_attention_layernorm",
                               layout="sandwich_norm")
# OLMo 2/3: no input norms; the sublayer outputs are normed before the add.
_OLMO2 = attrs.evolve(_LLAMA, attn_residual="post_attention_layernorm", layout="post_norm")

ARCHITECTURES: Final[dict[str, ArchitectureMap]] = {
    "LlamaForCausalLM": _LLAMA,
    "MistralForCausalLM": _LLAMA,
    "Qwen2ForCausalLM": _LLAMA,  # Qwen2 and Qwen2.5
    "Qwen3ForCausalLM": _LLAMA,
    "GemmaForCausalLM": _LLAMA,
    "Gemma2ForCausalLM": _GEMMA_SANDWICH,
    "Gemma3ForCausalLM": _GEMMA_SANDWICH,
    "Gemma3ForConditionalGeneration": attrs.evolve(
        _GEMMA_SANDWICH, blocks="model.language_model.layers"),
    # Phi-3's MLP fuses gate and up projections (gate_up_proj); down_proj is separate.
    "Phi3ForCausalLM": _LLAMA,
    "OlmoForCausalLM": _LLAMA,
    "Olmo2ForCausalLM": _OLMO2,
    "Olmo3ForCausalLM": _OLMO2,
    "GPT2LMHeadModel": ArchitectureMap(
        blocks="transformer.h", attn="attn", heads="attn.c_proj", mlp_in="mlp",
        mlp_out="mlp.c_proj", weight_layout="in_out",
    ),
    # GPT-NeoX (Pythia): with use_parallel_residual the MLP reads resid_pre, not resid_mid.
    "GPTNeoXForCausalLM": ArchitectureMap(
        blocks="gpt_neox.layers", attn="attention", heads="attention.dense", mlp_in="mlp",
        mlp_out="mlp.dense_4h_to_h", layout="parallel",
    ),
}

_USER: dict[str, ArchitectureMap] = {}


def register_architecture(class_name: str, architecture: ArchitectureMap) -> None:
    """Use ``architecture`` for every model whose class is called ``class_name``.

    A registered map wins over a built-in one of the same name.

    >>> register_architecture("MyLlamaForCausalLM", ARCHITECTURES["LlamaForCausalLM"])
    """
    if not isinstance(architecture, ArchitectureMap):
        raise TypeError(f"expected an ArchitectureMap, got {type(architecture).__name__}")
    _USER[class_name] = architecture


def _guess(model: Any) -> str | None:
    """Name a built-in map whose paths all resolve on ``model``, for the error message."""
    for name, candidate in ARCHITECTURES.items():
        try:
            candidate.check(model)
        except UnsupportedArchitectureError:
            continue
        return name
    return None


def architecture_for(model: Any, architecture: ArchitectureMap | None = None) -> ArchitectureMap:
    """Return the map for ``model``: ``architecture`` if given, else a registered or built-in one.

    Raises:
        UnsupportedArchitectureError: no map for the model's class (the message lists the
            supported classes and shows how to pass or register a map), or a path of the
            chosen map does not exist in the model.
    """
    name = type(model).__name__
    chosen = architecture or _USER.get(name) or ARCHITECTURES.get(name)
    if chosen is None:
        guess = _guess(model)
        hint = (f" Its modules match the {guess} map, so "
                f"`architecture=ARCHITECTURES[{guess!r}]` may work (check what resid_mid "
                "means for it in docs/backends.md)." if guess else "")
        raise UnsupportedArchitectureError(
            f"the torch backend has no ArchitectureMap for {name}; built-in: "
            f"{', '.join(sorted(ARCHITECTURES))}.{hint} Pass one with "
            "`amygdala.attach(model, tokenizer, architecture=ArchitectureMap(blocks=..., "
            "attn=..., heads=..., mlp_in=..., mlp_out=...))` or "
            f"`amygdala.backends.register_architecture({name!r}, ArchitectureMap(...))`, "
            "or use backend='transformer_lens'"
        )
    chosen.check(model, name=name)
    return chosen
