"""Nested leave-one-scenario-out evaluation: every choice is made without the held-out scenario.

Two tasks are scored on every held-out variant:

- ``paired``: the variant minus its own baseline, projected on every concept's reader; the
  top concept among those the scenario carries is the guess (what a paired direction is
  built for);
- ``readout``: the variant *alone*, each concept's reader score z-scored against that
  score's mean and spread over the neutral texts, and the top concept among *all* concepts
  is the guess (what ``amygdala read`` does with text that has no baseline).

What is chosen is a *candidate*: a hyper-parameter setting of the method (one `Fitter`
each, e.g. the probe's shrinkage) and a *reading* (`Readings`): one layer, or for the
read-out task also a band of neighbouring layers whose z-scores are averaged (the
multi-layer read-out). The paired task chooses among single layers only (its layer is
the one steering uses).

Selection is nested. Scenarios are dealt into ``folds`` groups (seeded). For a held-out
scenario in group ``k``, each candidate is scored by cross-validation over the other
groups only (fit on all groups but ``j`` and ``k``, score group ``j``, for every
``j != k``); the best candidate is then used with the method refitted on every scenario
but the held-out one. The held-out scenario (and the rest of its group) never enters the
choice. The *recommended* candidate is the same inner selection run on the whole corpus
(fit on all groups but ``j``, score ``j``).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.diagnose._folds import Fitter, FoldFit
from amygdala.errors import CorpusError
from amygdala.vectors._extract import ExtractionInput

__all__ = ["BAND_WIDTHS", "TASKS", "Items", "NestedRun", "Readings", "groups_of",
           "readout_guesses", "readout_z", "run_nested", "select_layers"]

TASKS = ("paired", "readout")
# Widths (in captured layers) of the bands the read-out may choose.
BAND_WIDTHS = (3, 5, 9)


@attrs.frozen(kw_only=True)
class Readings:
    """The readings a selection chooses among: each layer alone, then bands of layers.

    Column ``k < n_layers`` is layer index ``k``; the columns after it are the bands, every
    run of ``width`` neighbouring captured layers for each width of ``widths`` (in order of
    width, then start). A band's score is the mean of its layers' scores (z-scores for the
    read-out), as `ReadoutBundle.zscores` averages a band.
    """

    n_layers: int
    widths: tuple[int, ...] = BAND_WIDTHS

    @property
    def bands(self) -> tuple[tuple[int, int], ...]:
        """``(start, stop)`` layer-index ranges of the band columns."""
        return tuple((s, s + w) for w in self.widths if 1 < w <= self.n_layers
                     for s in range(self.n_layers - w + 1))

    @property
    def size(self) -> int:
        """Number of columns."""
        return self.n_layers + len(self.bands)

    def members(self, column: int) -> tuple[int, ...]:
        """Layer indices a column averages."""
        if column < self.n_layers:
            return (column,)
        start, stop = self.bands[column - self.n_layers]
        return tuple(range(start, stop))

    def label(self, column: int, layers: Sequence[int]) -> str:
        """``"14"`` for a layer, ``"12-16"`` for a band (model layers)."""
        m = self.members(column)
        return str(layers[m[0]]) if len(m) == 1 else f"{layers[m[0]]}-{layers[m[-1]]}"

    def expand(self, scores: np.ndarray) -> np.ndarray:
        """Per-layer scores ``[..., L, C]`` to ``[..., columns, C]`` (layers, then band means).

        >>> Readings(n_layers=3, widths=(3,)).expand(np.arange(3.0)[:, None]).ravel().tolist()
        [0.0, 1.0, 2.0, 1.0]
        """
        bands = self.bands
        if not bands:
            return scores
        zero = np.zeros_like(scores[..., :1, :])
        cumulative = np.concatenate([zero, np.cumsum(scores, axis=-2)], axis=-2)
        start = np.array([b[0] for b in bands])
        stop = np.array([b[1] for b in bands])
        means = ((cumulative[..., stop, :] - cumulative[..., start, :])
                 / (stop - start)[:, None].astype(scores.dtype))
        return np.concatenate([scores, means], axis=-2)


def _single(n_layers: int) -> Readings:
    return Readings(n_layers=n_layers, widths=())


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

    def predict(self, fit: FoldFit, idx: np.ndarray, train: np.ndarray,
                readings: Readings | None = None) -> np.ndarray:
        """Guesses ``[tasks, len(idx), columns]``; -1 where an item cannot be scored.

        ``readings`` (default: single layers) gives the columns. The paired task's band
        columns average each layer's paired score divided by the score's spread over the
        reference texts (so layers weigh alike); its single-layer columns are the raw
        projections.
        """
        readings = readings or _single(self.n_layers)
        out = np.full((len(TASKS), len(idx), readings.size), -1, np.int64)
        if len(idx) == 0:
            return out
        fitted = fit.fitted
        truth_ok = fitted[self.truth[idx]]
        # paired: (variant - baseline) . reader, among the scenario's fitted concepts.
        allowed = self.candidates[idx] & fitted[None]
        w = np.transpose(fit.readers, (1, 2, 0)).astype(np.float32)  # [L, d, C]
        raw = np.transpose(self.diff[:, idx] @ w, (1, 0, 2)).astype(np.float64)  # [n, L, C]
        if readings.bands:
            _, sd = _reference_stats(fit, self.reference(train))
            scaled = readings.expand(raw / np.transpose(sd, (1, 0, 2)))
            scores = np.concatenate([raw, scaled[:, self.n_layers:]], axis=1)
        else:
            scores = raw
        scores = np.where(allowed[:, None, :], scores, -np.inf)
        ok = truth_ok & (allowed.sum(axis=1) >= 2)
        out[0, ok] = scores[ok].argmax(axis=-1)
        # readout: the variant alone, z-scored against reference texts, among all concepts.
        out[1, truth_ok] = readout_guesses(fit, self.variant[:, idx], self.reference(train),
                                           readings)[truth_ok]
        return out


def _reference_stats(fit: FoldFit, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread ``[L, 1, C]`` of each concept's score over ``reference [L, N, d]``."""
    w = np.transpose(fit.readers, (1, 2, 0)).astype(np.float32)
    ref = reference @ w + fit.offsets.T[:, None, :]  # [L, N, C]
    return ref.mean(axis=1, keepdims=True), np.maximum(ref.std(axis=1, keepdims=True), 1e-12)


def readout_z(fit: FoldFit, x: np.ndarray, reference: np.ndarray,
              readings: Readings | None = None) -> np.ndarray:
    """Z-scores ``[n, columns, C]`` of texts ``x [L, n, d]`` read alone; NaN for unfitted.

    Each concept's score ``reader . h + offset`` is z-scored with its mean and spread over
    the ``reference [L, N, d]`` texts (neutral text) at the same layer; band columns are the
    mean z over the band (``readings``; default single layers).
    """
    readings = readings or _single(x.shape[0])
    w = np.transpose(fit.readers, (1, 2, 0)).astype(np.float32)  # [L, d, C]
    mu, sd = _reference_stats(fit, reference)
    z = (x @ w + fit.offsets.T[:, None, :] - mu) / sd  # [L, n, C]
    z = readings.expand(np.transpose(z, (1, 0, 2)).astype(np.float64))
    return np.where(fit.fitted[None, None, :], z, np.nan)


def readout_guesses(fit: FoldFit, x: np.ndarray, reference: np.ndarray,
                    readings: Readings | None = None) -> np.ndarray:
    """Top concept ``[n, columns]`` of texts ``x [L, n, d]`` read alone (see `readout_z`).

    -1 everywhere when fewer than two concepts are fitted.
    """
    readings = readings or _single(x.shape[0])
    if fit.fitted.sum() < 2:
        return np.full((x.shape[1], readings.size), -1, np.int64)
    z = readout_z(fit, x, reference, readings)
    return np.where(np.isnan(z), -np.inf, z).argmax(axis=-1)  # type: ignore[no-any-return]


def groups_of(n_scenarios: int, folds: int, seed: int) -> np.ndarray:
    """Deal scenarios into ``min(folds, n)`` groups of near-equal size, seeded."""
    k = min(folds, n_scenarios)
    order = np.random.default_rng(seed).permutation(n_scenarios)
    groups = np.empty(n_scenarios, np.int64)
    groups[order] = np.arange(n_scenarios) % k
    return groups


def _accuracy_by_layer(correct: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per task and column, correct / valid (0 where nothing was valid)."""
    return correct / np.maximum(valid, 1)  # type: ignore[no-any-return]


def _tally(items: Items, guesses: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(correct [tasks, columns], valid [tasks])`` of guesses for items ``idx``."""
    correct = (guesses == items.truth[idx][None, :, None]).sum(axis=1)
    valid = (guesses[:, :, 0] >= 0).sum(axis=1)
    return correct.astype(np.float64), valid.astype(np.float64)


def _predict_all(fitters: Sequence[Fitter], items: Items, train: np.ndarray, idx: np.ndarray,
                 readings: Readings) -> tuple[np.ndarray, list[FoldFit]]:
    """Guesses ``[tasks, n, fitters * columns]`` of every fitter, and the fits."""
    fits = [f(train) for f in fitters]
    return np.concatenate([items.predict(fit, idx, train, readings) for fit in fits],
                          axis=2), fits


def _allowed(readings: Readings, n_fitters: int) -> np.ndarray:
    """``[tasks, fitters * columns]``: the paired task chooses single layers only."""
    single = np.arange(readings.size) < readings.n_layers
    return np.stack([np.tile(single, n_fitters), np.ones(readings.size * n_fitters, bool)])


def _pick(accuracy: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Argmax over the last axis among allowed columns (first on ties)."""
    return np.where(allowed, accuracy, -1.0).argmax(axis=-1)  # type: ignore[no-any-return]


@attrs.frozen(kw_only=True)
class NestedRun:
    """Guesses of one method, nested, and per candidate.

    Candidate column ``j`` is fitter ``j // readings.size`` at reading
    ``j % readings.size``.

    Attributes:
        readings: the readings of each fitter's block of columns.
        n_fitters: hyper-parameter settings compared.
        nested: ``[tasks, items]`` guesses at the candidate chosen without each item's
            scenario (or the fixed layer); -1 where the item could not be scored.
        chosen: ``[tasks, scenarios]`` the candidate column chosen for each held-out scenario.
        per_layer: ``[tasks, items, candidates]`` leave-one-scenario-out guesses of every
            candidate (a diagnostic: choosing the best of these would select on the
            reported folds).
        recommended: ``[tasks]`` candidate the inner selection picks on the whole corpus.
        recommended_layer: ``[tasks]`` the best single layer (index) of the recommended
            fitter on the whole-corpus inner folds (what steering and one-layer readers use).
        inner_accuracy: ``[tasks, candidates]`` the whole-corpus inner accuracy.
        readout_z: ``[items, concepts]`` the read-out z-scores of each item at the candidate
            chosen without its scenario (NaN for unfitted concepts).
    """

    readings: Readings
    n_fitters: int
    nested: np.ndarray = attrs.field(eq=False)
    chosen: np.ndarray = attrs.field(eq=False)
    per_layer: np.ndarray = attrs.field(eq=False)
    recommended: np.ndarray = attrs.field(eq=False)
    recommended_layer: np.ndarray = attrs.field(eq=False)
    inner_accuracy: np.ndarray = attrs.field(eq=False)
    readout_z: np.ndarray = attrs.field(eq=False)

    def fitter_of(self, column: int) -> int:
        """The fitter (hyper-parameter setting) of a candidate column."""
        return int(column) // self.readings.size

    def reading_of(self, column: int) -> int:
        """The reading (layer or band column) of a candidate column."""
        return int(column) % self.readings.size


def select_layers(fitter: Fitter, items: Items, train: np.ndarray, folds: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Choose a single layer per task by group cross-validation over ``train`` scenarios only.

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


def _inner(fitters: Sequence[Fitter], items: Items, groups: np.ndarray,
           readings: Readings) -> tuple[np.ndarray, np.ndarray]:
    """Inner-fold accuracy ``[groups, tasks, candidates]`` for each held-out group, and the
    whole-corpus inner accuracy ``[tasks, candidates]``."""
    k = int(groups.max()) + 1
    width = readings.size * len(fitters)
    correct = np.zeros((k, len(TASKS), width))
    valid = np.zeros((k, len(TASKS)))
    for a in range(k):
        for b in range(a + 1, k):
            train = (groups != a) & (groups != b)
            for scored, owner in ((a, b), (b, a)):
                idx = items.of(groups == scored)
                c, v = _tally(items, _predict_all(fitters, items, train, idx, readings)[0], idx)
                correct[owner] += c
                valid[owner] += v
    whole_c = np.zeros((len(TASKS), width))
    whole_v = np.zeros(len(TASKS))
    for a in range(k):
        train = groups != a
        idx = items.of(~train)
        c, v = _tally(items, _predict_all(fitters, items, train, idx, readings)[0], idx)
        whole_c += c
        whole_v += v
    return (correct / np.maximum(valid, 1)[:, :, None],
            _accuracy_by_layer(whole_c, whole_v[:, None]))


def run_nested(fitter: Fitter | Sequence[Fitter], items: Items, *, folds: int = 5,
               seed: int = 0, layer_index: int | None = None,
               bands: Sequence[int] = BAND_WIDTHS) -> NestedRun:
    """Nested leave-one-scenario-out guesses of one method (see the module docstring).

    Args:
        fitter: refits the method on a training mask (`make_fitter`); a sequence compares
            hyper-parameter settings (the first is the default, used with ``layer_index``).
        items: the corpus's variants.
        folds: scenario groups for the inner selection (at least 3).
        seed: seeds the grouping.
        layer_index: evaluate this layer (index into the data's layers) with the first
            fitter, without selection.
        bands: band widths the read-out task may choose (empty: single layers only).

    Returns:
        A `NestedRun`.

    Raises:
        CorpusError: fewer than 3 scenarios.
    """
    fitters = [fitter] if callable(fitter) else list(fitter)
    n_s = items.n_scenarios
    if n_s < 3:
        raise CorpusError(f"nested evaluation needs at least 3 scenarios, got {n_s}; "
                          "add scenarios")
    readings = Readings(n_layers=items.n_layers,
                        widths=() if layer_index is not None else tuple(bands))
    width = readings.size * len(fitters)
    allowed = _allowed(readings, len(fitters))
    tasks, n_items = len(TASKS), len(items.truth)
    groups = groups_of(n_s, max(folds, 3), seed)
    if layer_index is not None:
        chosen = np.full((tasks, n_s), layer_index, np.int64)
        recommended = np.full(tasks, layer_index)
        recommended_layer = recommended.copy()
        inner = np.full((tasks, width), np.nan)
    else:
        per_group, inner = _inner(fitters, items, groups, readings)
        chosen = _pick(per_group, allowed[None]).T[:, groups]  # [tasks, scenarios]
        recommended = _pick(inner, allowed)
        best_fitter = recommended // readings.size
        recommended_layer = np.array([
            int(np.argmax(inner[t, h * readings.size:h * readings.size + readings.n_layers]))
            for t, h in enumerate(best_fitter)])
    per_layer = np.full((tasks, n_items, width), -1, np.int64)
    z = np.full((n_items, len(items.concepts)), np.nan)
    read = TASKS.index("readout")
    for s in range(n_s):
        train = np.ones(n_s, bool)
        train[s] = False
        idx = items.of(~train)
        per_layer[:, idx], fits = _predict_all(fitters, items, train, idx, readings)
        column = int(chosen[read, s])
        fit = fits[column // readings.size]
        z[idx] = readout_z(fit, items.variant[:, idx], items.reference(train),
                           readings)[:, column % readings.size]
    item_column = chosen[:, items.scenario]  # [tasks, items]
    nested = np.take_along_axis(per_layer, item_column[:, :, None], axis=2)[:, :, 0]
    return NestedRun(readings=readings, n_fitters=len(fitters), nested=nested, chosen=chosen,
                     per_layer=per_layer, recommended=recommended,
                     recommended_layer=recommended_layer, inner_accuracy=inner, readout_z=z)
