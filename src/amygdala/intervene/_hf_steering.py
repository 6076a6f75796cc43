"""Steer a plain Hugging Face model inside a ``with`` block, for your own ``generate`` calls.

`steer` works on an amygdala `Backend`; people who already drive
``model.generate(...)`` themselves want the same effect without changing their code:

>>> with steering(model, vectors, {"calm": 0.1}):  # doctest: +SKIP
...     out = model.generate(**inputs, max_new_tokens=40)

The block adds the same edits `steer` would (``alpha * resid_norm[layer] *
direction`` at resid_post of the chosen layers), through the torch backend's
hooks on the model's own modules, and removes every hook when the block ends,
also when it ends with an exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from amygdala.backends._attach import wrap_model
from amygdala.backends._registry import Backend, Edit
from amygdala.intervene._steer import Positions, steer
from amygdala.vectors._set import SteeringVectorSet

if TYPE_CHECKING:
    from amygdala.backends._architectures import ArchitectureMap

__all__ = ["steering"]


def _backend(model: Any, architecture: ArchitectureMap | None) -> Backend:
    if not isinstance(model, torch.nn.Module):
        backend: Backend = model  # already an amygdala backend (from attach or get_backend)
        return backend
    from amygdala.backends.torch_hooks import TorchHooksBackend

    # Steering stores nothing, so the fingerprint (a pass over every parameter) is
    # skipped, and the model's train/eval mode is the caller's business.
    loaded = wrap_model(model, None, with_fingerprint=False, prepare=False)
    return TorchHooksBackend(loaded, architecture=architecture)


@contextmanager
def steering(
    model: Any, vectors: SteeringVectorSet, alphas: Mapping[str, float], *,
    layers: Sequence[int] | None = None, positions: Positions = "all",
    prompt_len: int | None = None, architecture: ArchitectureMap | None = None,
) -> Iterator[list[Edit]]:
    """Steer every forward call of ``model`` inside the block (``model.generate`` too).

    Args:
        model: a Hugging Face causal LM (any device and dtype), or an amygdala backend.
        vectors: steering vectors trained on this model.
        alphas: ``{concept: alpha}``; alpha is in units of the layer's typical
            per-token residual norm (0.05-0.2 is a gentle to strong push).
        layers: resid_post layers to steer (default: the middle layer of the set).
        positions: ``all`` (default), ``prompt`` or ``generated`` (the last two need
            ``prompt_len``, the prompt's token count; positions count from the first
            token of each sequence, also under the KV cache).
        prompt_len: the prompt's token count, for ``positions`` other than ``all``.
        architecture: module paths for a model the torch backend does not know.

    Yields:
        The edits in force.

    Raises:
        UnknownConceptError: a concept is not in ``vectors``.
        UnknownSiteError: a layer is not in ``vectors`` or not in the model.
        DimensionMismatchError: the vectors were made for a model of another width.
        UnsupportedArchitectureError: no module map for the model's class.
    """
    backend = _backend(model, architecture)
    with steer(backend, vectors, alphas, layers=layers, positions=positions,
               prompt_len=prompt_len) as edits:
        yield edits
