"""Nested leave-one-scenario-out evaluation: the layer is chosen without the held-out scenario.

Two tasks are scored on every held-out variant, at every layer:

- ``paired``: the variant minus its own baseline, projected on every concept's reader; the
  top concept among those the scenario carries is the guess (what a paired direction is
  built for);
- ``readout``: the variant *alone*, each concept's reader score z-scored against that
  score's mean and spread over the neutral texts, and the top concept among *all* concepts
  is the guess (what ``amygdala read`` does with text that has no baseline).

Layer selection is nested. Scenarios are dealt into ``folds`` groups (seeded). For a
held-out scenario in group ``k``, each layer is scored by cross-validation over the other
groups only (fit on all groups but ``j`` and ``k``, score group ``j``, for every ``j != k``);
the best layer is then used with vectors refitted on every scenario but the held-out one.
The held-out scenario (and the rest of its group) never enters the choice. The
*recommended layer* is the same inner selection run on the whole corpus (fit on all groups
but ``j``, score ``j``).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.diagnose._folds import Fitter, FoldFit
from amygdala.errors import CorpusError
from amygdala.vectors._extract import ExtractionInput

__all__ = ["TASKS", "Items", "NestedRun", "groups_of", "readout_guesses", "run_nested",
           "select_layers"]

TASKS = ("paired", "readout")


class Items:
    """Every paired variant of a corpus, ready to be scored by any fit."""

    def __init__(self, data: ExtractionInput, corpus: Corpus, concepts: Sequence[str]) -> None:
        index = {c: i for i, c in enumerate(concepts)}
        scen, truth, var, base = [], [], [], []
        cand = []
        for si, s in enumerate(corpus.scenarios):
            mask = np.zeros(len(concepts), bool)
            mask[[index[c] for c in s.concepts]] = True
            for c in s.concepts:
                scen.append(si)
                truth.append(index[c])
                var.append(s.variants[c].id)
                base.append(s.baseline.id)
                cand.append(mask)
        self.concepts = tuple(concepts)
        self.n_scenarios = len(corpus.scenarios)
        self.scenario = np.asarray(scen, np.int64)
        self.truth = np.asarray(truth, np.int64)
        self.candidates = np.asarray(cand, bool).reshape(len(scen), len(concepts))
        xv = data.rows(var)
        self.variant = np.ascontiguousarray(np.transpose(xv, (1, 0, 2)))  # [L, n, d]
        self.diff = np.ascontiguousarray(np.transpose(xv - data.rows(base), (1, 0, 2)))
        neutral = [t.id for t in corpus.neutral]
        self.neutral = (np.ascontiguousarray(np.transpose(data.rows(neutral), (1, 0, 2)))
                        if neutral else None)
        baselines = data.rows([s.baseline.id for s in corpus.scenarios])
        self.baselines = np.ascontiguousarray(np.transpose(baselines, (1, 0, 2)))
        self.n_layers = self.variant.shape[0]

    def of(self, scenarios: np.ndarray) -> np.ndarray:
        """Indices of the items of a boolean scenario mask."""
        return np.flatnonzero(scenarios[self.scenario])

    def reference(self, train: np.ndarray) -> np.ndarray:
        """``[L, N, d]`` texts the read-out z-scores against: neutral, else training baselines."""
        return self.neutral if self.neutral is not None else self.baselines[:, train]

    def predict(self, fit: FoldFit, idx: np.ndarray, train: np.ndarray) -> np.ndarray:
        """Guesses ``[tasks, len(idx), layers]``; -1 where an item cannot be scored."""
        w = np.transpose(fit.readers, (1, 2, 0)).astype(np.float32)  # [L, d, C]
        out = np.full((len(TASKS), len(idx), self.n_layers), -1, np.int64)
        if len(idx) == 0:
            return out
        fitted = fit.fitted
        truth_ok = fitted[self.truth[idx]]
        # paired: (variant - baseline) . reader, among the scenario's fitted concepts.
        allowed = self.candidates[idx] & fitted[None]
        scores = np.transpose(self.diff[:, idx] @ w, (1, 0, 2)).astype(np.float64)
        scores = np.where(allowed[:, None, :], scores, -np.inf)
        ok = truth_ok & (allowed.sum(axis=1) >= 2)
        out[0, ok] = scores[ok].argmax(axis=-1)
        # readout: the variant alone, z-scored against reference texts, among all concepts.
        out[1, truth_ok] = readout_guesses(fit, self.variant[:, idx], self.reference(train))[
            truth_ok]
        return out


def readout_guesses(fit: FoldFit, x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Top concept ``[n, L]`` of texts ``x [L, n, d]`` read alone, among all fitted concepts.

    Each concept's score ``reader . h + offset`` is z-scored with its mean and spread over
    the ``reference [L, N, d]`` texts (neutral text) at the same layer; -1 everywhere when
    fewer than two concepts are fitted.
    """
    w = np.transpose(fit.readers, (1, 2, 0)).astype(np.float32)  # [L, d, C]
    off = fit.offsets.T[:, None, :]  # [L, 1, C]
    if fit.fitted.sum() < 2:
        return np.full((x.shape[1], x.shape[0]), -1, np.int64)
    ref = reference @ w + off  # [L, N, C]
    mu = ref.mean(axis=1, keepdims=True)
    sd = np.maximum(ref.std(axis=1, keepdims=True), 1e-12)
    z = np.transpose((x @ w + off - mu) / sd, (1, 0, 2)).astype(np.float64)
    z = np.where(fit.fitted[None, None, :], z, -np.inf)
    return z.argmax(axis=-1)  # type: ignore[no-any-return]


def groups_of(n_scenarios: int, folds: int, seed: int) -> np.ndarray:
    """Deal scenarios into ``min(folds, n)`` groups of near-equal size, seeded."""
    k = min(folds, n_scenarios)
    order = np.random.default_rng(seed).permutation(n_scenarios)
    groups = np.empty(n_scenarios, np.int64)
    groups[order] = np.arange(n_scenarios) % k
    return groups


def _accuracy_by_layer(correct: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per task and layer, correct / valid (0 where nothing was valid)."""
    return correct / np.maximum(valid, 1)  # type: ignore[no-any-return]


def _tally(items: Items, guesses: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(correct [tasks, L], valid [tasks])`` of guesses for items ``idx``."""
    correct = (guesses == items.truth[idx][None, :, None]).sum(axis=1)
    valid = (guesses[:, :, 0] >= 0).sum(axis=1)
    return correct.astype(np.float64), valid.astype(np.float64)


@attrs.frozen(kw_only=True)
class NestedRun:
    """Guesses of one method, nested and per layer.

    Attributes:
        nested: ``[tasks, items]`` guesses at the layer chosen without each item's scenario
            (or the fixed layer); -1 where the item could not be scored.
        chosen: ``[tasks, scenarios]`` the layer index chosen for each held-out scenario.
        per_layer: ``[tasks, items, layers]`` leave-one-scenario-out guesses at every layer
            (a diagnostic: choosing the best of these rows would select on the reported folds).
        recommended: ``[tasks]`` layer index the inner selection picks on the whole corpus.
        inner_accuracy: ``[tasks, layers]`` the whole-corpus inner cross-validated accuracy.
    """

    nested: np.ndarray = attrs.field(eq=False)
    chosen: np.ndarray = attrs.field(eq=False)
    per_layer: np.ndarray = attrs.field(eq=False)
    recommended: np.ndarray = attrs.field(eq=False)
    inner_accuracy: np.ndarray = attrs.field(eq=False)


def select_layers(fitter: Fitter, items: Items, train: np.ndarray, folds: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Choose a layer per task by group cross-validation over the ``train`` scenarios only.

    Returns:
        ``(layer index [tasks], accuracy [tasks, layers])``.
    """
    members = np.flatnonzero(train)
    if len(members) < 2:
        raise CorpusError(f"choosing a layer needs at least 2 training scenarios, got "
                          f"{len(members)}; add scenarios or pass a fixed layer")
    groups = groups_of(len(members), folds, seed)
    correct = np.zeros((len(TASKS), items.n_layers))
    valid = np.zeros(len(TASKS))
    for g in range(groups.max() + 1):
        held = np.zeros_like(train)
        held[members[groups == g]] = True
        fit_mask = train & ~held
        idx = items.of(held)
        c, v = _tally(items, items.predict(fitter(fit_mask), idx, fit_mask), idx)
        correct += c
        valid += v
    acc = _accuracy_by_layer(correct, valid[:, None])
    return acc.argmax(axis=1), acc


def run_nested(fitter: Fitter, items: Items, *, folds: int = 5, seed: int = 0,
               layer_index: int | None = None) -> NestedRun:
    """Nested leave-one-scenario-out guesses of one method (see the module docstring).

    Args:
        fitter: refits the method on a training mask (`make_fitter`).
        items: the corpus's variants.
        folds: scenario groups for the inner selection (at least 3).
        seed: seeds the grouping.
        layer_index: evaluate this layer (index into the data's layers) without selection.

    Returns:
        A `NestedRun`.

    Raises:
        CorpusError: fewer than 3 scenarios.
    """
    n_s = items.n_scenarios
    if n_s < 3:
        raise CorpusError(f"nested evaluation needs at least 3 scenarios, got {n_s}; "
                          "add scenarios")
    tasks, n_items, n_layers = len(TASKS), len(items.truth), items.n_layers
    groups = groups_of(n_s, max(folds, 3), seed)
    k = int(groups.max()) + 1
    chosen = np.zeros((tasks, n_s), np.int64)
    if layer_index is not None:
        chosen[:] = layer_index
        recommended = np.full(tasks, layer_index)
        inner = np.full((tasks, n_layers), np.nan)
    else:
        correct = np.zeros((k, tasks, n_layers))
        valid = np.zeros((k, tasks))
        for a in range(k):
            for b in range(a + 1, k):
                train = (groups != a) & (groups != b)
                fit = fitter(train)
                for scored, owner in ((a, b), (b, a)):
                    idx = items.of(groups == scored)
                    c, v = _tally(items, items.predict(fit, idx, train), idx)
                    correct[owner] += c
                    valid[owner] += v
        per_group = correct / np.maximum(valid, 1)[:, :, None]
        chosen = per_group.argmax(axis=2).T[:, groups]  # [tasks, scenarios]
        whole_c = np.zeros((tasks, n_layers))
        whole_v = np.zeros(tasks)
        for a in range(k):
            train = groups != a
            idx = items.of(~train)
            c, v = _tally(items, items.predict(fitter(train), idx, train), idx)
            whole_c += c
            whole_v += v
        inner = _accuracy_by_layer(whole_c, whole_v[:, None])
        recommended = inner.argmax(axis=1)
    per_layer = np.full((tasks, n_items, n_layers), -1, np.int64)
    for s in range(n_s):
        train = np.ones(n_s, bool)
        train[s] = False
        idx = items.of(~train)
        per_layer[:, idx] = items.predict(fitter(train), idx, train)
    item_layer = chosen[:, items.scenario]  # [tasks, items]
    nested = np.take_along_axis(per_layer, item_layer[:, :, None], axis=2)[:, :, 0]
    return NestedRun(nested=nested, chosen=chosen, per_layer=per_layer,
                     recommended=recommended, inner_accuracy=inner)
