"""Accuracies with bootstrap intervals over groups, confusion matrices, precision and recall."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from amygdala._codec import from_data, spec, to_data

__all__ = ["BOOTSTRAP", "Accuracy", "Confusion", "accuracy_with_interval", "confusion"]

BOOTSTRAP = 2000


@attrs.frozen(kw_only=True)
class Accuracy:
    """Top-1 accuracy with a 95% percentile-bootstrap interval over groups (scenarios).

    Attributes:
        value: the point estimate (correct / scored items).
        low: 2.5th percentile of the bootstrap distribution.
        high: 97.5th percentile.
        n_items: items scored.
        n_groups: groups resampled (scenarios, or texts when each is its own group).
        chance: expected accuracy of a uniform guess among each item's candidates.

    >>> Accuracy(value=0.5, low=0.4, high=0.6, n_items=10, n_groups=5, chance=0.25).text()
    '0.500 [0.400, 0.600]'
    """

    value: float = attrs.field(metadata=spec(key="accuracy", round=4))
    low: float = attrs.field(metadata=spec(key="ci95", at=0, round=4))
    high: float = attrs.field(metadata=spec(key="ci95", at=1, round=4))
    n_items: int
    n_groups: int
    chance: float = attrs.field(metadata=spec(round=4))

    def text(self) -> str:
        """``value [low, high]`` with three decimals."""
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``accuracy``, ``ci95: [low, high]``, four decimals)."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Accuracy:
        """Inverse of `to_json` (up to the rounding)."""
        return from_data(cls, data)


def accuracy_with_interval(correct: np.ndarray, groups: np.ndarray, *, chance: float,
                           seed: int = 0, n_boot: int = BOOTSTRAP) -> Accuracy:
    """Accuracy of boolean ``correct`` items with a bootstrap interval resampling ``groups``.

    Whole groups are drawn with replacement (items of one scenario are not independent);
    each replicate's accuracy is its correct items over its items.

    Args:
        correct: ``[items]`` booleans.
        groups: ``[items]`` group label per item.
        chance: the chance level to record.
        seed: bootstrap seed.
        n_boot: replicates.

    Returns:
        An `Accuracy` (NaN value and bounds when there are no items).
    """
    correct = np.asarray(correct, bool)
    if correct.size == 0:
        nan = float("nan")
        return Accuracy(value=nan, low=nan, high=nan, n_items=0, n_groups=0, chance=chance)
    labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
    hits = np.bincount(inverse, weights=correct.astype(np.float64), minlength=len(labels))
    sizes = np.bincount(inverse, minlength=len(labels)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(labels), np.full(len(labels), 1.0 / len(labels)), size=n_boot)
    replicates = (draws @ hits) / np.maximum(draws @ sizes, 1.0)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return Accuracy(value=float(correct.mean()), low=float(low), high=float(high),
                    n_items=int(correct.size), n_groups=len(labels), chance=chance)


@attrs.frozen(kw_only=True)
class Confusion:
    """Counts of (true concept, guessed concept).

    Attributes:
        labels: concept names of rows and columns.
        matrix: ``[true, guessed]`` counts.
    """

    labels: tuple[str, ...]
    matrix: np.ndarray = attrs.field(eq=False, metadata=spec(dtype="int64"))

    def recall(self) -> dict[str, float]:
        """Per true concept, the share guessed right (concepts with items only)."""
        rows = self.matrix.sum(axis=1)
        return {c: float(self.matrix[i, i] / rows[i])
                for i, c in enumerate(self.labels) if rows[i] > 0}

    def precision(self) -> dict[str, float]:
        """Per guessed concept, the share of its guesses that were right (guessed ones only)."""
        cols = self.matrix.sum(axis=0)
        return {c: float(self.matrix[i, i] / cols[i])
                for i, c in enumerate(self.labels) if cols[i] > 0}

    def per_concept(self) -> dict[str, dict[str, float | int | None]]:
        """``{concept: {precision, recall, support}}`` for concepts with items or guesses."""
        rows, cols = self.matrix.sum(axis=1), self.matrix.sum(axis=0)
        rec, prec = self.recall(), self.precision()
        return {c: {"precision": None if c not in prec else round(prec[c], 4),
                    "recall": None if c not in rec else round(rec[c], 4),
                    "support": int(rows[i])}
                for i, c in enumerate(self.labels) if rows[i] > 0 or cols[i] > 0}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Confusion:
        """Inverse of `to_json`."""
        return from_data(cls, data)


def confusion(truth: np.ndarray, guess: np.ndarray, labels: Sequence[str]) -> Confusion:
    """Count ``(truth[i], guess[i])`` pairs over items with a guess (``guess >= 0``)."""
    ok = np.asarray(guess) >= 0
    matrix = np.zeros((len(labels), len(labels)), np.int64)
    np.add.at(matrix, (np.asarray(truth)[ok], np.asarray(guess)[ok]), 1)
    return Confusion(labels=tuple(labels), matrix=matrix)
