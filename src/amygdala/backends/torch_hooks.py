"""The ``torch`` backend: raw PyTorch hooks on Hugging Face modules.

Supported architectures are listed in `ARCHITECTURES` (see
`amygdala.backends._architectures`); each maps the generic sites onto module
paths, and a user can pass a map for any other model. ``resid_mid`` is the block
input plus what the block adds after attention; it is written by shifting that
output (`amygdala.backends._hooked.resid_mid_shift`), which moves the residual
stream itself (writing the post-attention norm input would not).
"""

from __future__ import annotations

from typing import Any, final

import torch
from jaxtyping import Float

from amygdala._types import Site
from amygdala.backends._architectures import ARCHITECTURES, ArchitectureMap, architecture_for
from amygdala.backends._hooked import HookedBackend, HookFn, Remover, remover, resid_mid_shift
from amygdala.backends._loading import LoadedModel

__all__ = ["ARCHITECTURES", "ArchitectureMap", "TorchHooksBackend"]


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


def _replace_first(output: Any, new: torch.Tensor) -> Any:
    return (new, *output[1:]) if isinstance(output, tuple) else new


@final
class TorchHooksBackend(HookedBackend):
    """Capture and edit a Hugging Face model through raw forward hooks.

    >>> from amygdala import load_model
    >>> backend = TorchHooksBackend(load_model())  # doctest: +SKIP
    """

    name = "torch"

    def __init__(self, loaded: LoadedModel, *, architecture: ArchitectureMap | None = None) -> None:
        """Wrap ``loaded``; ``architecture`` overrides the built-in map for its class.

        Raises:
            UnsupportedArchitectureError: no map for the model's class, or a path of the
                map is not in the model (the message says which and how to fix it).
        """
        self.arch = architecture_for(loaded.model, architecture)
        super().__init__(loaded)
        self._layers = self.arch.check(loaded.model)

    def _module(self, layer: int, path: str) -> torch.nn.Module:
        return self._layers[layer].get_submodule(path)  # type: ignore[no-any-return]

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            model = self.loaded.model
            out = model(input_ids=input_ids.to(model.device),
                        attention_mask=attention_mask.to(model.device), use_cache=False)
        return out.logits  # type: ignore[no-any-return]

    def _attach(self, site: Site, fn: HookFn) -> Remover:
        layer = self._layers[site.layer]
        if site.point == "resid_pre":
            def pre(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if args:
                    new = fn(args[0])
                    return None if new is None else ((new, *args[1:]), kwargs)
                new = fn(kwargs["hidden_states"])
                return None if new is None else (args, {**kwargs, "hidden_states": new})
            return remover(layer.register_forward_pre_hook(pre, with_kwargs=True))
        if site.point == "resid_post":
            def post(_m: Any, _args: Any, output: Any) -> Any:
                new = fn(_first(output))
                return None if new is None else _replace_first(output, new)
            return remover(layer.register_forward_hook(post))
        if site.point == "resid_mid":
            return self._attach_mid(layer, fn)
        target = self.arch.mlp_out if site.point == "mlp_neurons" else self.arch.heads

        def inputs(_m: Any, args: tuple[Any, ...]) -> Any:
            new = fn(args[0])
            return None if new is None else (new, *args[1:])
        return remover(layer.get_submodule(target).register_forward_pre_hook(inputs))

    def _attach_mid(self, layer: torch.nn.Module, fn: HookFn) -> Remover:
        # What the block adds after attention is the attention output, or its norm
        # in Gemma 2/3 and OLMo 2 (`attn_residual`); the block input is resid_pre.
        remember, shift = resid_mid_shift(fn)

        def block_input(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            remember(args[0] if args else kwargs["hidden_states"])

        def attn_output(_m: Any, _args: Any, output: Any) -> Any:
            new = shift(_first(output))
            return None if new is None else _replace_first(output, new)

        return remover(
            layer.register_forward_pre_hook(block_input, with_kwargs=True),
            layer.get_submodule(self.arch.attn_residual).register_forward_hook(attn_output),
        )

    def mlp_out_weights(self, layer: int) -> Float[torch.Tensor, "d_mlp d_model"]:
        """Return what each MLP neuron writes to the residual stream (W_down columns)."""
        self._check_site(Site(layer=layer))
        weight: torch.Tensor = self._module(layer, self.arch.mlp_out).weight  # type: ignore[assignment]
        weight = weight.detach().float().cpu()
        return weight.T if self.arch.weight_layout == "out_in" else weight

    def head_out_weights(self, layer: int) -> Float[torch.Tensor, "heads d_head d_model"]:
        """Return each head's slice of the attention output projection (W_O)."""
        self._check_site(Site(layer=layer))
        weight: torch.Tensor = self._module(layer, self.arch.heads).weight  # type: ignore[assignment]
        weight = weight.detach().float().cpu()
        w_in_out = weight.T if self.arch.weight_layout == "out_in" else weight
        d = self.dims
        return w_in_out.reshape(d.n_heads, d.d_head, d.d_model)
