"""The checks of two backends on the same weights (`PARITY_CHECKS`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import torch

from amygdala._types import POINTS, Pooling, Site
from amygdala.backends._protocol import Ablation, Backend, Edit
from amygdala.testing._common import (
    _PARITY,
    PROMPT,
    RESIDUAL,
    TEXTS,
    _close,
    _vector,
)

__all__ = [
    "PARITY_CHECKS",
    "check_parity_ablations",
    "check_parity_capture",
    "check_parity_edits",
    "check_parity_generation",
]

# ----- two backends on the same weights ---------------------------------------------------


def check_parity_capture(backend: Backend, reference: Backend) -> None:
    """Both backends read the same activations at every point of every layer."""
    sites = [Site(layer=layer, point=p) for layer in range(backend.dims.n_layers)
             for p in POINTS]
    a = backend.capture(list(TEXTS), sites, Pooling())
    b = reference.capture(list(TEXTS), sites, Pooling())
    for site in sites:
        _close(a[site], b[site], f"capture at {site} vs the reference", **_PARITY)


def check_parity_edits(backend: Backend, reference: Backend) -> None:
    """A non-zero edit at every residual point moves the logits as in the reference."""
    for layer in range(backend.dims.n_layers):
        for k, point in enumerate(RESIDUAL):
            site = Site(layer=layer, point=point)  # type: ignore[arg-type]
            edit = Edit(site=site, vector=_vector(backend.dims.d_model, seed=10 * layer + k),
                        start=2)
            with backend.editing([edit]):
                a = backend.logits(list(TEXTS))
            with reference.editing([edit]):
                b = reference.logits(list(TEXTS))
            _close(a, b, f"logits under an edit at {site} vs the reference", **_PARITY)


def check_parity_ablations(backend: Backend, reference: Backend) -> None:
    """Zero, scale, mean and per-row ablations change the logits as in the reference."""
    d = backend.dims
    kinds = {
        "heads zero": [Ablation(layer=0, component="heads", indices=[0, 1])],
        "neurons scale": [Ablation(layer=1, component="neurons", indices=[0, 5, 9],
                                   mode="scale", factor=3.0)],
        "heads mean": [Ablation(layer=1, component="heads", indices=[1], mode="mean",
                                means=torch.linspace(-1, 1, d.n_heads * d.d_head))],
        "neurons mean": [Ablation(layer=0, component="neurons", indices=[7, 8], mode="mean",
                                  means=torch.linspace(2, -2, d.d_mlp))],
        "per row": [Ablation(layer=1, component="heads", indices=[0], rows=(1,))],
    }
    for kind, ablations in kinds.items():
        texts = [TEXTS[1], TEXTS[1]] if kind == "per row" else list(TEXTS)
        with backend.ablating(ablations):
            a = backend.logits(texts)
        with reference.ablating(ablations):
            b = reference.logits(texts)
        _close(a, b, f"logits under {kind} ablation vs the reference", **_PARITY)


def check_parity_generation(backend: Backend, reference: Backend) -> None:
    """Greedy steered generation gives the reference's tokens."""
    vector = _vector(backend.dims.d_model, seed=2, scale=1.0)
    runs = []
    for b in (backend, reference):
        with b.editing([Edit(site=Site(layer=1, point="resid_mid"), vector=vector)]):
            runs.append(b.generate(PROMPT, max_new_tokens=8, use_cache=False).token_ids)
    if runs[0] != runs[1]:
        raise AssertionError(f"steered generation {runs[0]} != the reference's {runs[1]}")


PARITY_CHECKS: Final[Mapping[str, Callable[[Backend, Backend], None]]] = {
    "parity_capture": check_parity_capture,
    "parity_edits": check_parity_edits,
    "parity_ablations": check_parity_ablations,
    "parity_generation": check_parity_generation,
}
