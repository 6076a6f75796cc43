"""Detection: how well one concept's read-out score separates its texts from the rest.

Classification (the top concept of a text) cannot tell the raw read-out from the relative
one (each concept minus the mean over concepts): subtracting the same number from every
concept leaves the argmax alone. What the relative view changes is *detection*, the use
of a single score against a threshold (the monitor's events): a text that lifts every
concept together (a shared "intensity") lifts each score past its threshold. Detection
is measured per concept by the area under the ROC curve of that concept's score between
the texts of the concept and every other text, averaged over concepts (macro AUC). Its
interval resamples whole groups (scenarios) with replacement, like the accuracies.

The AUC is the Mann-Whitney statistic (ties count one half), computed from one sort per
concept with bootstrap weights, so 2000 replicates cost one cumulative sum each;
`scipy.stats.roc_auc`-style routines would re-sort per replicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from amygdala._codec import from_data, spec, to_data
from amygdala.diagnose._intervals import BOOTSTRAP

__all__ = ["Detection", "detection_auc", "weighted_auc"]


def _sorted(values: Mapping[str, float]) -> dict[str, float]:
    return dict(sorted(values.items()))


@attrs.frozen(kw_only=True)
class Detection:
    """Macro AUC of per-concept scores, with a bootstrap interval over groups.

    Attributes:
        value: mean over concepts of each concept's AUC (NaN when none is measurable).
        low, high: 95% percentile bootstrap interval.
        n_items: scored texts.
        n_groups: groups (scenarios) resampled.
        per_concept: ``{concept: AUC}`` for concepts with texts on both sides, sorted by
            concept.
    """

    value: float = attrs.field(metadata=spec(key="auc", round=4))
    low: float = attrs.field(metadata=spec(key="ci95", at=0, round=4))
    high: float = attrs.field(metadata=spec(key="ci95", at=1, round=4))
    n_items: int
    n_groups: int
    per_concept: dict[str, float] = attrs.field(converter=_sorted, metadata=spec(round=4))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``auc``, ``ci95: [low, high]``, four decimals)."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Detection:
        """Inverse of `to_json` (up to the rounding)."""
        return from_data(cls, data)


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of ``scores [n]`` (positives above negatives) under item weights.

    Args:
        scores: one score per item.
        positive: ``[n]`` booleans.
        weights: ``[R, n]`` non-negative item weights (one row per replicate).

    Returns:
        ``[R]`` AUCs: the weighted share of (positive, negative) pairs ordered correctly,
        ties counted one half; NaN where a side has no weight.

    >>> weighted_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]),
    ...              np.ones((1, 4))).round(2).tolist()
    [0.75]
    """
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    pos = positive[order]
    w = np.asarray(weights, np.float64)[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups
    pos_w = np.add.reduceat(w * pos, starts, axis=1)
    neg_w = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(neg_w, axis=1) - neg_w
    total = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos_w * (below + 0.5 * neg_w)).sum(axis=1) / total  # type: ignore[no-any-return]


def detection_auc(z: np.ndarray, truth: np.ndarray, groups: np.ndarray,
                  concepts: tuple[str, ...], *, fitted: np.ndarray | None = None,
                  seed: int = 0, n_boot: int = BOOTSTRAP) -> Detection:
    """Macro AUC of each concept's score ``z[:, c]`` for "this text is concept ``c``".

    Args:
        z: ``[items, concepts]`` scores; non-finite entries leave the item out for that
            concept.
        truth: ``[items]`` concept index of each item.
        groups: ``[items]`` resampling group (scenario) of each item.
        concepts: concept names (columns).
        fitted: ``[concepts]`` concepts to measure (default all).
        seed: bootstrap seed.
        n_boot: replicates.

    Returns:
        A `Detection`.
    """
    z = np.asarray(z, np.float64)
    truth = np.asarray(truth)
    labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(labels), np.full(len(labels), 1.0 / len(labels)), size=n_boot)
    weights = np.vstack([np.ones(len(labels)), draws])[:, inverse]  # row 0: the point value
    use = np.ones(z.shape[1], bool) if fitted is None else np.asarray(fitted, bool)
    per_concept: dict[str, float] = {}
    rows = []
    for c in np.flatnonzero(use):
        ok = np.isfinite(z[:, c])
        positive = truth[ok] == c
        if not positive.any() or positive.all():
            continue
        auc = weighted_auc(z[ok, c], positive, weights[:, ok])
        per_concept[concepts[c]] = float(auc[0])
        rows.append(auc)
    if not rows:
        nan = float("nan")
        return Detection(value=nan, low=nan, high=nan, per_concept={}, n_items=len(truth),
                         n_groups=len(labels))
    macro = np.nanmean(np.vstack(rows), axis=0)
    low, high = np.nanpercentile(macro[1:], [2.5, 97.5])
    return Detection(value=float(macro[0]), low=float(low), high=float(high),
                     per_concept=per_concept, n_items=len(truth), n_groups=len(labels))
