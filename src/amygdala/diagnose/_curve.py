"""Learning curve: held-out accuracy against the number of training scenarios.

Scenarios are dealt into ``folds`` outer groups. For each group and each size ``k``, a
random draw of ``k`` scenarios from the *other* groups is the training set: the layer is
chosen by cross-validation inside the draw, the method is fitted on the draw, and the
group's variants are scored at that layer (both tasks). A draw's accuracy pools the
groups; several draws per size give the mean and spread. ``all`` uses every scenario
outside the group (one draw).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from amygdala._codec import from_data, from_fields, register, spec, to_data, to_fields
from amygdala.diagnose._folds import Fitter
from amygdala.diagnose._nested import TASKS, Items, groups_of, select_layers

__all__ = ["CURVE_SIZES", "CurvePoint", "learning_curve"]

CURVE_SIZES = (4, 8, 16, 32, 64)


@attrs.frozen(kw_only=True)
class CurvePoint:
    """Accuracy of one training-set size over its draws.

    Attributes:
        size: training scenarios per draw (``None`` for all outside the held-out group).
        n_train: mean training scenarios actually used.
        draws: ``{task: [accuracy per draw]}``.
    """

    size: int | None
    n_train: float = attrs.field(metadata=spec(round=2))
    draws: dict[str, tuple[float, ...]]

    def summary(self, task: str) -> dict[str, float]:
        """Mean, standard deviation, min and max of the draws' accuracies for ``task``."""
        a = np.asarray(self.draws[task])
        return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                "min": float(a.min()), "max": float(a.max())}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``k``: the size or ``"all"``; per task its draws and summary)."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CurvePoint:
        """Inverse of `to_json`."""
        return from_data(cls, data)


def _point_data(point: CurvePoint) -> dict[str, Any]:
    fields = to_fields(point)
    return {"k": "all" if point.size is None else fields["size"], "n_train": fields["n_train"],
            **{task: {"draws": fields["draws"][task],
                      **{k: round(v, 4) for k, v in point.summary(task).items()}}
               for task in point.draws}}


def _point_from_data(data: Mapping[str, Any]) -> CurvePoint:
    return from_fields(CurvePoint, {
        "size": None if data["k"] == "all" else data["k"], "n_train": data["n_train"],
        "draws": {t: data[t]["draws"] for t in TASKS if t in data}})


# ``k`` is a number or "all", and each task's summary is written beside its draws: a
# custom format, used wherever a CurvePoint is nested.
register(CurvePoint, encode=_point_data, decode=_point_from_data)


def learning_curve(fitter: Fitter, items: Items, *, sizes: Sequence[int] = CURVE_SIZES,
                   draws: int = 3, folds: int = 5, seed: int = 0,
                   layer_index: int | None = None) -> tuple[CurvePoint, ...]:
    """Accuracy against the number of training scenarios (see the module docstring).

    Args:
        fitter: refits the method on a training mask.
        items: the corpus's variants.
        sizes: training-set sizes; sizes not below every pool are left out (``all`` covers
            them).
        draws: random draws per size.
        folds: outer groups, and inner folds for the layer choice (at most the draw size).
        seed: seeds groups and draws.
        layer_index: a fixed layer (no selection).

    Returns:
        One `CurvePoint` per size, then the ``all`` point.
    """
    n_s = items.n_scenarios
    groups = groups_of(n_s, max(folds, 2), seed)
    k = int(groups.max()) + 1
    smallest_pool = min(int((groups != g).sum()) for g in range(k))
    rng = np.random.default_rng(seed + 1)
    plan: list[tuple[int | None, int]] = [(size, draws) for size in sizes
                                          if 2 <= size < smallest_pool]
    plan.append((None, 1))
    points = []
    for size, n_draws in plan:
        per_draw: dict[str, list[float]] = {t: [] for t in TASKS}
        used = []
        for _ in range(n_draws):
            correct = np.zeros(len(TASKS))
            valid = np.zeros(len(TASKS))
            for g in range(k):
                pool = np.flatnonzero(groups != g)
                pick = pool if size is None else rng.choice(pool, size, replace=False)
                train = np.zeros(n_s, bool)
                train[pick] = True
                used.append(len(pick))
                if layer_index is None:
                    chosen, _ = select_layers(fitter, items, train, min(folds, len(pick)),
                                              int(rng.integers(1 << 31)))
                else:
                    chosen = np.full(len(TASKS), layer_index)
                idx = items.of(groups == g)
                guesses = items.predict(fitter(train), idx, train)
                for t in range(len(TASKS)):
                    at = guesses[t, :, chosen[t]]
                    ok = at >= 0
                    correct[t] += (at[ok] == items.truth[idx][ok]).sum()
                    valid[t] += ok.sum()
            for t, task in enumerate(TASKS):
                per_draw[task].append(float(correct[t] / max(valid[t], 1)))
        points.append(CurvePoint(size=size, n_train=float(np.mean(used)),
                                 draws={t: tuple(v) for t, v in per_draw.items()}))
    return tuple(points)
