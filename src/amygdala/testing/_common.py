"""What every check shares: the texts, the prompt, tolerances and assertion helpers."""

from __future__ import annotations

from typing import Final

import torch

from amygdala.backends._protocol import Backend

__all__ = ["PROMPT", "RESIDUAL", "TEXTS"]

TEXTS: Final = ("The kettle clicked off.", "He read the letter twice, then folded it.", "Rain.")
PROMPT: Final = "The cat sat"
RESIDUAL: Final = ("resid_pre", "resid_mid", "resid_post")
# Cross-backend tolerance: two backends on the same float32 weights may sum in a
# different order, never more.
_PARITY = {"rtol": 1e-4, "atol": 1e-5}


class _InsideBlockError(RuntimeError):
    """Raised inside a context manager to check that its hooks are removed anyway."""


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str, **tol: float) -> None:
    try:
        torch.testing.assert_close(actual, expected, **tol)  # type: ignore[arg-type]
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


def _differs(a: torch.Tensor, b: torch.Tensor, what: str, by: float = 1e-4) -> None:
    gap = float((a - b).abs().max())
    if not gap > by:
        raise AssertionError(f"{what}: expected a change above {by:g}, the largest is {gap:.2e}")


def _vector(width: int, seed: int, scale: float = 0.7) -> torch.Tensor:
    return scale * torch.randn(width, generator=torch.Generator().manual_seed(seed))


def _layers(backend: Backend) -> tuple[int, int]:
    """(an early layer, the last layer); the suite needs two distinct ones."""
    n = backend.dims.n_layers
    if n < 2:
        raise AssertionError(f"the conformance suite needs a model of >= 2 layers, got {n}")
    return 0, n - 1
