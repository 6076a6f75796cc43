"""The ``transformer_lens`` backend: TransformerLens 4.x `TransformerBridge` hook points.

The bridge wraps an already loaded Hugging Face model in place (its modules are
replaced by bridge components), so nothing is downloaded. Give this backend its
own `LoadedModel` if you also want the untouched model for the torch backend.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, final

import torch
from jaxtyping import Float

from amygdala._types import Site
from amygdala.backends._hooked import HookedBackend, HookFn, Remover, remover, resid_mid_shift
from amygdala.backends._loading import LoadedModel
from amygdala.backends._protocol import Generation
from amygdala.errors import BackendError, MissingDependencyError

__all__ = ["TransformerLensBackend"]

_HOOK_NAMES = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "resid_post": "blocks.{}.hook_resid_post",
    "mlp_neurons": "blocks.{}.mlp.hook_post",
    "attn_heads": "blocks.{}.attn.hook_z",
}


def boot_bridge(loaded: LoadedModel) -> Any:
    """Wrap ``loaded.model`` in a `TransformerBridge` without touching the network."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:
        raise MissingDependencyError(
            f"the transformer_lens backend needs TransformerLens 4.x ({exc}); "
            "`pip install 'transformer-lens>=4'`"
        ) from exc
    source = Path(loaded.source)
    with tempfile.TemporaryDirectory() as scratch:
        if not (source / "config.json").is_file():
            # A model built in code has no directory: give the bridge its config.
            loaded.model.config.save_pretrained(scratch)
            source = Path(scratch)
        try:
            return TransformerBridge.boot_transformers(
                str(source), hf_model=loaded.model, tokenizer=loaded.tokenizer,
                device=str(loaded.model.device), dtype=loaded.model.dtype,
            )
        except Exception as exc:
            raise BackendError(
                f"TransformerLens could not wrap {loaded.model_id} "
                f"({type(loaded.model).__name__}): {exc}; try backend='torch'"
            ) from exc


@final
class TransformerLensBackend(HookedBackend):
    """Capture and edit through TransformerLens hook points (``blocks.L.hook_resid_post``...).

    >>> from amygdala import load_model
    >>> backend = TransformerLensBackend(load_model())  # doctest: +SKIP
    """

    name = "transformer_lens"

    def __init__(self, loaded: LoadedModel) -> None:
        self.bridge = boot_bridge(loaded)
        super().__init__(loaded)

    def _hf_model(self) -> Any:
        return self.bridge.original_model

    def generate(
        self, prompt: str, *, max_new_tokens: int = 40, do_sample: bool = False,
        temperature: float = 1.0, seed: int = 0, chat: bool = False, use_cache: bool = False,
    ) -> Generation:
        """Generate a continuation of one prompt, without the KV cache by default.

        With TransformerLens 4.3 the bridge's cached decoding drifts from the
        Hugging Face model on SmolLM2 (greedy outputs differ after a few tokens;
        the uncached ones match the torch backend exactly), so this backend
        recomputes the prefix at each step unless ``use_cache=True``.
        """
        return super().generate(
            prompt, max_new_tokens=max_new_tokens, do_sample=do_sample,
            temperature=temperature, seed=seed, chat=chat, use_cache=use_cache,
        )

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.bridge(  # type: ignore[no-any-return]
                input_ids, attention_mask=attention_mask, return_type="logits", use_cache=False
            )

    def _attach(self, site: Site, fn: HookFn) -> Remover:
        if site.point == "resid_mid":
            return self._attach_mid(site.layer, fn)
        point = self.bridge.hook_dict[_HOOK_NAMES[site.point].format(site.layer)]
        if site.point == "attn_heads":
            def heads(_m: Any, _args: Any, output: torch.Tensor) -> Any:
                flat = output.reshape(*output.shape[:2], -1)
                new = fn(flat)
                return None if new is None else new.reshape(output.shape)
            return remover(point.register_forward_hook(heads))

        def plain(_m: Any, _args: Any, output: torch.Tensor) -> Any:
            return fn(output)
        return remover(point.register_forward_hook(plain))

    def _attach_mid(self, layer: int, fn: HookFn) -> Remover:
        # The bridge's hook_resid_mid feeds the post-attention norm, so writing it
        # would not move the residual stream. As in the torch backend, write
        # resid_mid by shifting the attention output (resid_mid = resid_pre + attn_out).
        remember, shift = resid_mid_shift(fn)

        def block_input(_m: Any, _args: Any, output: torch.Tensor) -> None:
            remember(output)

        def attn_output(_m: Any, _args: Any, attn_out: torch.Tensor) -> Any:
            return shift(attn_out)

        hooks = self.bridge.hook_dict
        return remover(
            hooks[f"blocks.{layer}.hook_resid_pre"].register_forward_hook(block_input),
            hooks[f"blocks.{layer}.hook_attn_out"].register_forward_hook(attn_output),
        )

    def mlp_out_weights(self, layer: int) -> Float[torch.Tensor, "d_mlp d_model"]:
        """Return what each MLP neuron writes to the residual stream (``W_out[layer]``)."""
        self._check_site(Site(layer=layer))
        return self.bridge.W_out[layer].detach().float().cpu()  # type: ignore[no-any-return]

    def head_out_weights(self, layer: int) -> Float[torch.Tensor, "heads d_head d_model"]:
        """Return each head's slice of the attention output projection (``W_O[layer]``)."""
        self._check_site(Site(layer=layer))
        return self.bridge.W_O[layer].detach().float().cpu()  # type: ignore[no-any-return]
