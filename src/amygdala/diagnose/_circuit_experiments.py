"""Causal tests of a `Circuit`: ablate or enhance it, against random components.

For each k of a grid, the top-k neurons (heads) of the circuit are ablated and the
fall of the concept's paired projection at the read site is compared with the
fall caused by ``draws`` random sets of k components drawn uniformly from the
same layers (same count per layer, excluding the top-k). The ratio
``top fall / mean random fall`` gets a percentile bootstrap interval over
scenarios. The held-out-style classification of the concept's variants (which
of the scenario's concepts scores highest on ``variant - baseline``; readers of
the vector set) is measured under the same ablations. Enhancement scales the
top components by factors > 1; specificity measures how much the circuit's
ablation lowers the other concepts' projections on their own variants.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import attrs
import numpy as np

from amygdala._codec import from_data, to_data
from amygdala._types import Pooling, Site
from amygdala.backends._registry import Ablation, Backend
from amygdala.corpus._model import Corpus, Scenario
from amygdala.diagnose._circuits import (
    Circuit,
    HeadMethod,
    HeadScore,
    NeuronScore,
    RankBy,
    paired_texts,
    rank,
    readout,
    score_pairs,
)
from amygdala.store._store import ActivationStore
from amygdala.vectors._extract import ExtractionInput, Method, Normalisation, extract
from amygdala.vectors._set import SteeringVectorSet

__all__ = ["AblationEffect", "CircuitExperiments", "CrossFitExperiments", "Enhancement",
           "FoldResult", "HeldOutEffect", "Specificity", "assign_folds", "circuit_experiments",
           "crossfit_experiments", "fold_readers", "layer_activations", "render_crossfit",
           "render_summary", "strict_pass"]

Kind = Literal["neurons", "heads"]
PASS_RATIO = 3.0
_POOLING = Pooling()


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@attrs.frozen(kw_only=True)
class AblationEffect:
    """Top-k ablation against random-k ablation, for one component kind and k.

    Attributes:
        drop: mean fall of the paired projection (clean - ablated).
        rel_drop: ``drop / clean projection``.
        random_drops: mean fall for each random draw.
        ratio: ``drop / mean(random_drops)`` (None when the random mean is <= 0).
        ratio_ci: 95% bootstrap interval over scenarios (None ends are unbounded).
        excess_ci: 95% bootstrap interval of ``drop - random drop`` over scenarios
            (well defined even when the random fall is ~0 or negative).
        scenario_drops: the top-k fall per scenario.
        accuracy: classification accuracy of the concept's variants: clean, top-k
            ablated, random-k ablated (mean over draws).
    """

    kind: Kind
    k: int
    mode: str
    drop: float
    rel_drop: float
    random_drops: tuple[float, ...] = attrs.field()
    ratio: float | None
    ratio_ci: tuple[float | None, float | None] = attrs.field()
    excess_ci: tuple[float, float]
    scenario_drops: tuple[float, ...]
    accuracy_clean: float
    accuracy_top: float
    accuracy_random: float
    drop_ci: tuple[float, float] = (math.nan, math.nan)
    random_ci: tuple[float, float] = (math.nan, math.nan)

    @property
    def random_drop(self) -> float:
        """Mean fall over the random draws."""
        return float(np.mean(self.random_drops))

    @property
    def passes(self) -> bool:
        """The strict rule: the top fall's interval lies wholly above the random fall's.

        See `strict_pass`; the old ratio rule is `passes_ratio`.
        """
        return strict_pass(self.drop_ci, self.random_ci)

    @property
    def passes_ratio(self) -> bool:
        """The old, lenient rule: top fall >= `PASS_RATIO` x the mean random fall.

        Kept to compare with earlier reports; it ignores the spread of both falls.
        """
        return self.drop > 0 and self.drop >= PASS_RATIO * max(self.random_drop, 0.0)


def strict_pass(top_ci: Sequence[float], random_ci: Sequence[float]) -> bool:
    """Whether the lower end of ``top_ci`` beats the upper end of ``random_ci``.

    Missing (nan) ends never pass.

    >>> strict_pass((1.0, 2.0), (0.2, 0.9)), strict_pass((1.0, 2.0), (0.2, 1.1))
    (True, False)
    """
    lo, hi = float(top_ci[0]), float(random_ci[1])
    return math.isfinite(lo) and math.isfinite(hi) and lo > hi


@attrs.frozen(kw_only=True)
class Enhancement:
    """Rise of the paired projection when the top-k are scaled by ``factor``."""

    kind: Kind
    k: int
    factor: float
    rise: float
    rel_rise: float


@attrs.frozen(kw_only=True)
class Specificity:
    """Relative fall of each concept's projection (on its own variants) under one ablation."""

    kind: Kind
    k: int
    own: float
    others: Mapping[str, float]

    @property
    def others_mean(self) -> float:
        """Mean relative fall over the other concepts (nan when there are none)."""
        return float(np.mean(list(self.others.values()))) if self.others else math.nan


@attrs.frozen(kw_only=True)
class CircuitExperiments:
    """Every experiment run on one circuit (see the module docs)."""

    concept: str
    layer: int
    clean_projection: float
    scenarios: tuple[str, ...] = attrs.field()
    ablation: tuple[AblationEffect, ...] = attrs.field()
    enhancement: tuple[Enhancement, ...] = attrs.field()
    specificity: tuple[Specificity, ...] = attrs.field()
    params: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CircuitExperiments:
        """Rebuild from `to_json` output (nulls come back as nan; files written before the
        intervals existed get (nan, nan) intervals)."""
        return from_data(cls, data)

    def effect(self, kind: Kind, k: int) -> AblationEffect | None:
        """The ablation result for ``kind`` at ``k`` (None if not run)."""
        return next((e for e in self.ablation if e.kind == kind and e.k == k), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become null)."""
        record: dict[str, Any] = to_data(self, finite=True)
        for row, effect in zip(record["ablation"], self.ablation, strict=True):
            row["random_drop"] = _finite(effect.random_drop)
            row["passes"] = effect.passes
            row["passes_ratio"] = effect.passes_ratio
        record["procedure"] = "in_sample"
        return record


def _draw(pool: Mapping[int, int], top: Sequence[NeuronScore | HeadScore],
          rng: np.random.Generator) -> dict[int, tuple[int, ...]]:
    """Random components with the per-layer counts of ``top``, avoiding ``top``."""
    counts: dict[int, int] = {}
    taken: dict[int, set[int]] = {}
    for item in top:
        counts[item.layer] = counts.get(item.layer, 0) + 1
        taken.setdefault(item.layer, set()).add(item.index)
    out = {}
    for layer, count in counts.items():
        free = np.array([i for i in range(pool[layer]) if i not in taken[layer]])
        if len(free) < count:  # the whole layer is in the top set: draw with overlap
            free = np.arange(pool[layer])
        out[layer] = tuple(int(i) for i in rng.choice(free, size=count, replace=False))
    return out


def _ablations(kind: Kind, sets: Mapping[int, Sequence[int]], mode: str,
               factor: float = 0.0) -> list[Ablation]:
    return [Ablation(layer=layer, component=kind, indices=idx, mode=mode,  # type: ignore[arg-type]
                     factor=factor) for layer, idx in sorted(sets.items()) if idx]


def _bootstrap(top: np.ndarray, rand: np.ndarray, n_boot: int, rng: np.random.Generator
               ) -> tuple[tuple[float | None, float | None], tuple[float, float],
                          tuple[float, float], tuple[float, float]]:
    """95% percentile intervals: ratio, difference, top fall, random fall.

    ``top`` is ``[scenarios]``, ``rand`` ``[draws, scenarios]``; scenarios are resampled.
    """
    n = top.shape[0]
    picks = rng.integers(0, n, size=(n_boot, n))
    num = top[picks].mean(1)
    den = rand[:, picks].mean(axis=(0, 2))
    excess = np.percentile(num - den, [2.5, 97.5])
    top_ci, rand_ci = np.percentile(num, [2.5, 97.5]), np.percentile(den, [2.5, 97.5])
    # A resample whose random fall is <= 0 has an unbounded ratio (signed by the top fall).
    ratios = np.where(den > 0, num / np.where(den > 0, den, 1.0),
                      np.where(num > 0, np.inf, np.where(num < 0, -np.inf, 0.0)))
    lo, hi = np.percentile(ratios, [2.5, 97.5], method="nearest")
    return ((_finite(float(lo)), _finite(float(hi))), (float(excess[0]), float(excess[1])),
            (float(top_ci[0]), float(top_ci[1])), (float(rand_ci[0]), float(rand_ci[1])))


def circuit_experiments(
    backend: Backend, circuit: Circuit, vectors: SteeringVectorSet, corpus: Corpus, *,
    k_neurons: Sequence[int] = (10, 50, 200), k_heads: Sequence[int] = (1, 5, 20),
    draws: int = 5, scales: Sequence[float] = (2.0, 4.0), mode: Literal["zero"] = "zero",
    specificity: bool = True, max_scenarios: int | None = None, seed: int = 0,
    n_boot: int = 2000, pooling: Pooling = _POOLING, batch_size: int = 16,
) -> CircuitExperiments:
    """Ablate and enhance the circuit's top components against random controls.

    Args:
        backend: the model.
        circuit: from `find_circuit`.
        vectors: the vector set (readers of every concept at ``circuit.layer``).
        corpus: gives the scenarios of the concept.
        k_neurons: neuron counts to test; ``k_heads``: head counts (0 skips).
        draws: random draws per k (at least 5 recommended).
        scales: enhancement factors (> 1), applied to the largest k of each grid.
        mode: ablation mode (``zero``).
        specificity: also measure the other concepts' variants of the same scenarios
            under the largest-k ablations (more texts in those passes).
        max_scenarios: first scenarios only (default: as the circuit was found).
        seed: seeds the random draws and the bootstrap.
        n_boot: bootstrap resamples.
        pooling: token pooling (must match the vectors').
        batch_size: rows per forward pass.

    Returns:
        A `CircuitExperiments`.
    """
    start = time.perf_counter()
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {list(scales)}")
    concept, layer = circuit.concept, circuit.layer
    if max_scenarios is None:
        max_scenarios = circuit.params.get("max_scenarios")
    scenarios = corpus.scenarios_with(concept)[:max_scenarios]
    readers = vectors.readers(layer).astype(np.float64)
    ci = vectors.concept_index(concept)
    dims = backend.dims
    rng = np.random.default_rng(seed)

    texts: list[str] = []
    where: dict[str, int] = {}

    def add(text: str) -> int:
        if text not in where:
            where[text] = len(texts)
            texts.append(text)
        return where[text]

    base = [add(s.baseline.text) for s in scenarios]
    own = [add(s.variants[concept].text) for s in scenarios]
    n_own = len(texts)
    others: dict[str, list[tuple[int, int]]] = {}  # concept -> (variant, baseline) text ids
    if specificity:
        for s, b in zip(scenarios, base, strict=True):
            for other in s.concepts:
                if other != concept and other in vectors.concepts:
                    others.setdefault(other, []).append((add(s.variants[other].text), b))
    everything = list(range(len(texts)))
    own_texts = list(range(n_own))

    configs: list[list[Ablation]] = [[]]
    jobs: list[tuple[int, int]] = [(t, 0) for t in everything]
    plan: list[tuple[str, Kind, int, float, int]] = []  # (what, kind, k, factor, config)

    def add_config(ablations: list[Ablation], text_ids: Sequence[int], what: str, kind: Kind,
                   k: int, factor: float = 0.0) -> None:
        configs.append(ablations)
        jobs.extend((t, len(configs) - 1) for t in text_ids)
        plan.append((what, kind, k, factor, len(configs) - 1))

    grids: dict[Kind, list[int]] = {"neurons": sorted({k for k in k_neurons if k > 0}),
                                    "heads": sorted({k for k in k_heads if k > 0})}
    pools = {"neurons": dict.fromkeys(range(layer + 1), dims.d_mlp),
             "heads": dict.fromkeys(range(layer + 1), dims.n_heads)}
    for kind, grid in grids.items():
        for k in grid:
            top = circuit.top_neurons(k) if kind == "neurons" else circuit.top_heads(k)
            sets = {lay: tuple(i) for lay, i in
                    (circuit.neuron_sets(k) if kind == "neurons" else circuit.head_sets(k)).items()}
            biggest = k == grid[-1]
            add_config(_ablations(kind, sets, mode),
                       everything if biggest and specificity else own_texts, "top", kind, k)
            for _ in range(draws):
                add_config(_ablations(kind, _draw(pools[kind], top, rng), mode), own_texts,
                           "random", kind, k)
            if biggest:
                for factor in scales:
                    add_config(_ablations(kind, sets, "scale", float(factor)), own_texts,
                               "scale", kind, k, float(factor))

    pooled = readout(backend, texts, configs, jobs, layer=layer, pooling=pooling,
                     batch_size=batch_size)
    proj = np.full((len(configs), len(texts), len(vectors.concepts)), np.nan)
    for row, (t, c) in enumerate(jobs):
        proj[c, t] = pooled[row] @ readers.T
    b_idx, v_idx = np.array(base), np.array(own)
    own_pairs = proj[:, v_idx, ci] - proj[:, b_idx, ci]  # [configs, scenarios]
    clean_mean = float(own_pairs[0].mean())

    cand = [[vectors.concept_index(c) for c in s.concepts if c in vectors.concepts]
            for s in scenarios]

    def accuracy(config: int) -> float:
        hits = []
        for s_i, (v, b) in enumerate(zip(own, base, strict=True)):
            scores = proj[config, v, cand[s_i]] - proj[config, b, cand[s_i]]
            hits.append(cand[s_i][int(np.argmax(scores))] == ci)
        return float(np.mean(hits))

    effects: list[AblationEffect] = []
    enhancements: list[Enhancement] = []
    specifics: list[Specificity] = []
    for kind, grid in grids.items():
        for k in grid:
            top_c = next(c for w, kd, kk, _, c in plan if (w, kd, kk) == ("top", kind, k))
            rand_c = [c for w, kd, kk, _, c in plan if (w, kd, kk) == ("random", kind, k)]
            top_drop = own_pairs[0] - own_pairs[top_c]  # [scenarios]
            rand_drop = own_pairs[0][None] - own_pairs[rand_c]  # [draws, scenarios]
            rmean = float(rand_drop.mean())
            ratio_ci, excess_ci, drop_ci, random_ci = _bootstrap(top_drop, rand_drop, n_boot,
                                                                 rng)
            effects.append(AblationEffect(
                kind=kind, k=k, mode=mode, drop=float(top_drop.mean()),
                rel_drop=float(top_drop.mean() / clean_mean) if clean_mean else math.nan,
                random_drops=tuple(float(r) for r in rand_drop.mean(1)),
                ratio=float(top_drop.mean() / rmean) if rmean > 0 else None,
                ratio_ci=ratio_ci, excess_ci=excess_ci,
                scenario_drops=tuple(float(x) for x in top_drop),
                accuracy_clean=accuracy(0), accuracy_top=accuracy(top_c),
                accuracy_random=float(np.mean([accuracy(c) for c in rand_c])),
                drop_ci=drop_ci, random_ci=random_ci,
            ))
            if specificity and k == grid[-1]:
                rel: dict[str, float] = {}
                for other, pairs in sorted(others.items()):
                    oi = vectors.concept_index(other)
                    vs, bs = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
                    clean_o = (proj[0, vs, oi] - proj[0, bs, oi]).mean()
                    abl_o = (proj[top_c, vs, oi] - proj[top_c, bs, oi]).mean()
                    rel[other] = float((clean_o - abl_o) / clean_o) if clean_o > 0 else math.nan
                specifics.append(Specificity(
                    kind=kind, k=k, own=float(top_drop.mean() / clean_mean), others=rel))
    for what, kind, k, factor, c in plan:
        if what == "scale":
            rise = float((own_pairs[c] - own_pairs[0]).mean())
            enhancements.append(Enhancement(kind=kind, k=k, factor=factor, rise=rise,
                                            rel_rise=rise / clean_mean if clean_mean else math.nan))
    params = {"k_neurons": grids["neurons"], "k_heads": grids["heads"], "draws": draws,
              "scales": [float(s) for s in scales], "mode": mode, "seed": seed,
              "n_boot": n_boot, "max_scenarios": max_scenarios, "specificity": specificity,
              "forward_rows": len(jobs), "seconds": round(time.perf_counter() - start, 2),
              "random_control": "same per-layer counts as the top-k, top-k excluded",
              "classification": "argmax over the scenario's concepts of "
                                "readers(layer) . (variant - baseline); in-sample readers"}
    return CircuitExperiments(concept=concept, layer=layer, clean_projection=clean_mean,
                              scenarios=tuple(s.slug for s in scenarios),
                              ablation=tuple(effects), enhancement=tuple(enhancements),
                              specificity=tuple(specifics), params=params)


def render_summary(results: Sequence[CircuitExperiments], *, k_neuron: int = 50,
                   k_head: int = 5) -> str:
    """One line per concept: top/random fall ratios at ``k_neuron`` and ``k_head``, pass/fail."""
    def cell(effect: AblationEffect | None) -> str:
        if effect is None:
            return f"{'-':>34}"
        ratio = "inf" if effect.ratio is None else f"{effect.ratio:.1f}"
        lo, hi = effect.excess_ci
        return (f"{effect.drop:>6.2f}/{effect.random_drop:>6.2f}={ratio:>5} "
                f"[{lo:>5.2f},{hi:>5.2f}]")

    head = (f"{'concept':<15} {'L':>3} {'clean':>6}  {'neurons k=' + str(k_neuron):<34} "
            f"{'heads k=' + str(k_head):<34} pass")
    lines = [head, "-" * len(head)]
    n_pass = {"neurons": 0, "heads": 0}
    for r in results:
        n, h = r.effect("neurons", k_neuron), r.effect("heads", k_head)
        flags = []
        for kind, e in (("neurons", n), ("heads", h)):
            ok = e is not None and e.passes
            n_pass[kind] += ok
            flags.append(("N" if kind == "neurons" else "H") + ("+" if ok else "-"))
        lines.append(f"{r.concept:<15} {r.layer:>3} {r.clean_projection:>6.2f}  {cell(n)} "
                     f"{cell(h)} {' '.join(flags)}")
    total = max(len(results), 1)
    lines.append("cells: top fall / random fall = ratio [95% CI of top - random, "
                 "bootstrap over scenarios]")
    lines.append(f"top fall >= {PASS_RATIO:g}x random: neurons {n_pass['neurons']}/{len(results)}"
                 f" ({n_pass['neurons'] / total:.0%}), heads {n_pass['heads']}/{len(results)} "
                 f"({n_pass['heads'] / total:.0%})")
    return "\n".join(lines)


# ----- cross-fitted experiments --------------------------------------------------------------

@attrs.frozen(kw_only=True)
class HeldOutEffect:
    """Held-out fall of the top-k chosen on the other scenarios, against random k.

    Every scenario is held out once; its fall is measured with the components (and
    the reader) chosen without it. Intervals are 95% percentile bootstraps that
    resample the held-out scenarios *and* redo the selection on a bootstrap resample
    of the training scenarios, so they include selection error.

    Attributes:
        drop: mean held-out fall of the projection (selection on the whole training half).
        random_drop: mean held-out fall for random sets of the same per-layer counts.
        drop_ci: interval of ``drop``; ``random_ci``: of ``random_drop``.
        fold_drops: ``drop`` per fold; ``fold_random_drops``: the random fall per fold.
        rel_drop: ``drop`` over the mean held-out clean projection.
        selection_jaccard: mean Jaccard overlap of the resampled selections with the
            whole-half selection (1 = selection never changes; nan without re-selections).
        accuracy_clean: held-out classification of the concept's variants (fold
            readers), clean; ``accuracy_top``: top-k ablated; ``accuracy_random``: random.
    """

    kind: Kind
    k: int
    drop: float
    random_drop: float
    drop_ci: tuple[float, float]
    random_ci: tuple[float, float]
    fold_drops: tuple[float, ...]
    fold_random_drops: tuple[float, ...]
    rel_drop: float
    selection_jaccard: float
    accuracy_clean: float
    accuracy_top: float
    accuracy_random: float

    @property
    def passes(self) -> bool:
        """Lower end of the top fall's interval above the random fall's upper end."""
        return strict_pass(self.drop_ci, self.random_ci)


@attrs.frozen(kw_only=True)
class FoldResult:
    """One fold: what was fit on which scenarios and what it did on the others.

    Attributes:
        train: scenarios the reader and the ranking were fit on (the concept's).
        test: held-out scenarios the ablations were measured on.
        clean_projection: mean held-out paired projection with the fold's reader.
        top_neurons: ``(layer, index)`` of the largest-k neuron selection;
            ``top_heads``: of the largest-k head selection.
        enhancement: held-out rise when the largest-k selection is scaled.
    """

    train: tuple[str, ...]
    test: tuple[str, ...]
    clean_projection: float
    top_neurons: tuple[tuple[int, int], ...]
    top_heads: tuple[tuple[int, int], ...]
    enhancement: tuple[Enhancement, ...]


@attrs.frozen(kw_only=True)
class CrossFitExperiments:
    """Cross-fitted ablation and enhancement of one concept's circuit (`crossfit_experiments`)."""

    concept: str
    layer: int
    clean_projection: float
    folds: tuple[FoldResult, ...]
    ablation: tuple[HeldOutEffect, ...]
    params: Mapping[str, Any] = attrs.field(factory=dict)

    def effect(self, kind: Kind, k: int) -> HeldOutEffect | None:
        """The held-out result for ``kind`` at ``k`` (None if not run)."""
        return next((e for e in self.ablation if e.kind == kind and e.k == k), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become null; `from_json` inverts it)."""
        record: dict[str, Any] = to_data(self, finite=True)
        for row, effect in zip(record["ablation"], self.ablation, strict=True):
            row["passes"] = effect.passes
        record["procedure"] = "crossfit"
        return record

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CrossFitExperiments:
        """Rebuild from `to_json` output (nulls come back as nan)."""
        return from_data(cls, data)


def fold_readers(data: ExtractionInput, corpus: Corpus, held_out: Sequence[str], *,
                 method: Method | str, normalisation: Normalisation | str
                 ) -> tuple[tuple[str, ...], np.ndarray]:
    """The method's raw-space readers ``[concepts, d_model]`` fit without ``held_out``.

    The held-out scenarios are removed whole (every variant and the baseline), so
    neither the concept's direction nor the normalisation statistics see them.
    ``data`` must hold one layer.

    Raises:
        ValueError: ``data`` holds more than one layer.
    """
    if len(data.layers) != 1:
        raise ValueError(f"fold_readers needs activations at one layer, got {data.layers}")
    out = set(held_out)
    kept = attrs.evolve(corpus, scenarios=[s for s in corpus.scenarios if s.slug not in out])
    raw = extract(data, kept, method=cast("Method", method),
                  normalisation=cast("Normalisation", normalisation))
    # The method's own raw-space readers, as `SteeringVectorSet.readers` gives in-sample.
    return raw.concepts, raw.readers[:, 0].astype(np.float64)


def layer_activations(backend: Backend, corpus: Corpus, layer: int, *,
                      store: ActivationStore | None = None, pooling: Pooling = _POOLING,
                      batch_size: int = 16) -> ExtractionInput:
    """Pooled ``resid_post.layer`` of every corpus text (from the store when given)."""
    site = Site(layer=layer)
    texts = [t.text for t in corpus.texts]
    ids = [t.id for t in corpus.texts]
    if store is not None:
        store.ensure(backend, texts, [site], batch_size=batch_size)
        x = store.load(texts, [site], ids=ids)[site]
    else:
        x = backend.capture(texts, [site], pooling, batch_size=batch_size)[site].numpy()
    return ExtractionInput(x=np.asarray(x, np.float32)[:, None], ids=tuple(ids),
                           layers=(layer,))


def assign_folds(slugs: Sequence[str], folds: int, seed: int) -> list[tuple[str, ...]]:
    """Split scenario slugs into ``folds`` held-out groups of near-equal size (seeded).

    Raises:
        ValueError: fewer scenarios than folds, or fewer than 2 folds.

    >>> assign_folds(["a", "b", "c"], 2, 0)
    [('b', 'c'), ('a',)]
    """
    if folds < 2 or len(slugs) < folds:
        raise ValueError(f"cross-fitting needs >= 2 folds and at least one scenario per fold; "
                         f"got {folds} folds for {len(slugs)} scenarios: lower --folds or "
                         "raise --max-scenarios")
    order = np.random.default_rng(seed).permutation(len(slugs))
    groups: list[list[str]] = [[] for _ in range(folds)]
    for position, i in enumerate(order):
        groups[position % folds].append(slugs[i])
    return [tuple(sorted(g)) for g in groups]


def _jaccard(a: set[tuple[int, int]], b: set[tuple[int, int]]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def crossfit_experiments(
    backend: Backend, vectors: SteeringVectorSet, corpus: Corpus, concept: str, *,
    layer: int, k_neurons: Sequence[int] = (10, 50, 200), k_heads: Sequence[int] = (1, 5, 20),
    draws: int = 5, selections: int = 5, scales: Sequence[float] = (2.0, 4.0),
    folds: int = 2, max_scenarios: int | None = None, head_method: HeadMethod = "ablation",
    rank_heads_by: RankBy = "mean", head_layers: Sequence[int] | None = None,
    store: ActivationStore | None = None, data: ExtractionInput | None = None, seed: int = 0,
    n_boot: int = 2000, pooling: Pooling = _POOLING, batch_size: int = 16,
) -> CrossFitExperiments:
    """Fit on some scenarios, ablate and enhance on the others, swap; pool the held-out falls.

    For each fold, the concept's reader (and every other concept's, for the held-out
    classification) is refit with the run's method and normalisation on the corpus
    without the fold's held-out scenarios (`fold_readers`); neurons and heads are
    ranked on the concept's training pairs with that reader (`score_pairs`, `rank`);
    the top-k, ``draws`` random sets with the same per-layer counts, and ``selections``
    top-k sets re-ranked on bootstrap resamples of the training pairs are ablated on
    the held-out pairs only. `HeldOutEffect` pools the folds.

    Args:
        backend: the model.
        vectors: the run's vectors (their method, normalisation and concepts are reused;
            their directions are not: each fold refits its own).
        corpus: the corpus (the run's).
        concept: the concept.
        layer: the read layer.
        k_neurons: neuron counts to test; ``k_heads``: head counts (0 skips).
        draws: random draws per k and fold.
        selections: bootstrap re-selections per k and fold (0: intervals without
            selection error).
        scales: enhancement factors applied to the largest k.
        folds: number of folds (2: halves).
        max_scenarios: the concept's first scenarios only.
        head_method: ``ablation`` or ``direct`` (see `circuit_from_pairs`).
        rank_heads_by: ``mean`` or ``zero`` with ablation.
        head_layers: layers whose heads are scored.
        store: activation store (reruns capture nothing).
        data: pooled activations of the corpus at ``layer`` (`layer_activations`);
            computed when None.
        seed: seeds the folds, the draws and the bootstrap.
        n_boot: bootstrap resamples.
        pooling: token pooling (the store's when a store is given).
        batch_size: rows per forward pass.

    Returns:
        A `CrossFitExperiments`.

    Raises:
        ValueError: bad counts, or fewer scenarios than folds.
        UnknownConceptError: the concept is in no scenario.
    """
    start = time.perf_counter()
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if selections < 0:
        raise ValueError(f"selections must be >= 0, got {selections}")
    if any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {list(scales)}")
    if store is not None:
        pooling = store.pooling
    scenarios = list(paired_scenarios(corpus, concept, max_scenarios))
    by_slug = {s.slug: s for s in scenarios}
    groups = assign_folds([s.slug for s in scenarios], folds, seed)
    rng = np.random.default_rng(seed)
    if data is None:
        data = layer_activations(backend, corpus, layer, store=store, pooling=pooling,
                                 batch_size=batch_size)
    dims = backend.dims
    grids: dict[Kind, list[int]] = {"neurons": sorted({k for k in k_neurons if k > 0}),
                                    "heads": sorted({k for k in k_heads if k > 0})}
    pools = {"neurons": dict.fromkeys(range(layer + 1), dims.d_mlp),
             "heads": dict.fromkeys(range(layer + 1), dims.n_heads)}
    keep = max([1000, *grids["neurons"]])
    # per (kind, k): lists over folds of [selections+1, test] and [draws, test] falls
    top_falls: dict[tuple[Kind, int], list[np.ndarray]] = {}
    rand_falls: dict[tuple[Kind, int], list[np.ndarray]] = {}
    jaccards: dict[tuple[Kind, int], list[float]] = {}
    acc: dict[tuple[Kind, int], list[tuple[list[bool], list[bool]]]] = {}
    clean_hits: list[bool] = []
    clean_all: list[np.ndarray] = []
    fold_results: list[FoldResult] = []
    for test in groups:
        train = tuple(s.slug for s in scenarios if s.slug not in test)
        names, readers = fold_readers(data, corpus, test, method=vectors.method,
                                      normalisation=vectors.normalisation)
        ci = names.index(concept)
        scores = score_pairs(
            backend, pairs=[(by_slug[t].variants[concept].text, by_slug[t].baseline.text)
                            for t in train],
            reader=readers[ci], layer=layer, head_method=head_method, head_layers=head_layers,
            pooling=pooling, store=store, batch_size=batch_size)
        ranked = [rank(scores, rank_heads_by=rank_heads_by, keep_neurons=keep)]
        for _ in range(selections):
            counts = np.bincount(rng.integers(0, len(train), len(train)), minlength=len(train))
            ranked.append(rank(scores, counts.astype(np.float64), rank_heads_by=rank_heads_by,
                               keep_neurons=keep))

        texts: list[str] = []
        for slug in test:
            texts += [by_slug[slug].variants[concept].text, by_slug[slug].baseline.text]
        configs: list[list[Ablation]] = [[]]
        plan: dict[tuple[str, Kind, int], list[int]] = {}
        tops: dict[tuple[Kind, int], list[set[tuple[int, int]]]] = {}
        for kind, grid in grids.items():
            for k in grid:
                sets = []
                for neurons, heads, _ in ranked:
                    top = (neurons if kind == "neurons" else heads)[:k]
                    sets.append({(x.layer, x.index) for x in top})
                    configs.append(_ablations(kind, _group(top), "zero"))
                    plan.setdefault(("top", kind, k), []).append(len(configs) - 1)
                tops[(kind, k)] = sets
                first = (ranked[0][0] if kind == "neurons" else ranked[0][1])[:k]
                for _ in range(draws):
                    configs.append(_ablations(kind, _draw(pools[kind], first, rng), "zero"))
                    plan.setdefault(("random", kind, k), []).append(len(configs) - 1)
                if k == grid[-1]:
                    for factor in scales:
                        configs.append(_ablations(kind, _group(first), "scale", float(factor)))
                        plan.setdefault(("scale", kind, k), []).append(len(configs) - 1)
        jobs = [(t, c) for c in range(len(configs)) for t in range(len(texts))]
        pooled = readout(backend, texts, configs, jobs, layer=layer, pooling=pooling,
                         batch_size=batch_size)
        proj = (pooled @ readers.T).reshape(len(configs), len(texts), len(names))
        diff = proj[:, 0::2] - proj[:, 1::2]  # [configs, test, concepts]
        own = diff[:, :, ci]
        clean_all.append(own[0])
        cand = [[names.index(c) for c in by_slug[slug].concepts if c in names] for slug in test]

        def hits(config: int, diff: np.ndarray = diff,
                 cand: list[list[int]] = cand, ci: int = ci) -> list[bool]:
            return [cand[s][int(np.argmax(diff[config, s, cand[s]]))] == ci
                    for s in range(len(cand))]

        clean_hits += hits(0)
        enhancement = []
        for kind, grid in grids.items():
            for k in grid:
                tc, rc = plan[("top", kind, k)], plan[("random", kind, k)]
                top_falls.setdefault((kind, k), []).append(own[0][None] - own[tc])
                rand_falls.setdefault((kind, k), []).append(own[0][None] - own[rc])
                sets = tops[(kind, k)]
                if len(sets) > 1:
                    jaccards.setdefault((kind, k), []).extend(
                        _jaccard(sets[0], other) for other in sets[1:])
                acc.setdefault((kind, k), []).append(
                    (hits(tc[0]), [h for c in rc for h in hits(c)]))
                for c, factor in zip(plan.get(("scale", kind, k), []), scales, strict=False):
                    rise = float((own[c] - own[0]).mean())
                    clean_mean = float(own[0].mean())
                    enhancement.append(Enhancement(
                        kind=kind, k=k, factor=float(factor), rise=rise,
                        rel_rise=rise / clean_mean if clean_mean else math.nan))
        largest = {kind: (tops[(kind, grid[-1])][0] if grid else set())
                   for kind, grid in grids.items()}
        fold_results.append(FoldResult(
            train=train, test=test, clean_projection=float(own[0].mean()),
            top_neurons=tuple(sorted(largest["neurons"])),
            top_heads=tuple(sorted(largest["heads"])), enhancement=tuple(enhancement)))

    clean = np.concatenate(clean_all)
    clean_mean = float(clean.mean())
    effects = []
    for (kind, k), per_fold in top_falls.items():
        rand = rand_falls[(kind, k)]
        drop = float(np.concatenate([f[0] for f in per_fold]).mean())
        random_drop = float(np.concatenate([r.mean(0) for r in rand]).mean())
        drop_ci, random_ci = _selection_bootstrap(per_fold, rand, n_boot, rng)
        top_hits = [h for t, _ in acc[(kind, k)] for h in t]
        rand_hits = [h for _, r in acc[(kind, k)] for h in r]
        effects.append(HeldOutEffect(
            kind=kind, k=k, drop=drop, random_drop=random_drop, drop_ci=drop_ci,
            random_ci=random_ci, fold_drops=tuple(float(f[0].mean()) for f in per_fold),
            fold_random_drops=tuple(float(r.mean()) for r in rand),
            rel_drop=drop / clean_mean if clean_mean else math.nan,
            selection_jaccard=float(np.mean(jaccards[(kind, k)])) if jaccards.get((kind, k))
            else math.nan,
            accuracy_clean=float(np.mean(clean_hits)), accuracy_top=float(np.mean(top_hits)),
            accuracy_random=float(np.mean(rand_hits))))
    params = {
        "procedure": "crossfit", "folds": folds, "draws": draws, "selections": selections,
        "k_neurons": grids["neurons"], "k_heads": grids["heads"],
        "scales": [float(s) for s in scales], "head_method": head_method,
        "rank_heads_by": rank_heads_by if head_method == "ablation" else "direct",
        "max_scenarios": max_scenarios, "seed": seed, "n_boot": n_boot,
        "pooling": pooling.key, "vectors_method": vectors.method,
        "normalisation": vectors.normalisation,
        "readers": "refit per fold with the run's method on the corpus minus the held-out "
                   "scenarios; fixed within a fold's bootstrap",
        "selection_bootstrap": "each bootstrap draw uses one of `selections` rankings "
                               "redone on a resample of the training pairs",
        "pass_rule": "2.5th percentile of the held-out top-k fall > 97.5th percentile "
                     "of the random-k fall",
        "seconds": round(time.perf_counter() - start, 2),
    }
    return CrossFitExperiments(concept=concept, layer=layer, clean_projection=clean_mean,
                               folds=tuple(fold_results), ablation=tuple(effects),
                               params=params)


def paired_scenarios(corpus: Corpus, concept: str,
                     max_scenarios: int | None) -> tuple[Scenario, ...]:
    """The concept's scenarios in corpus order, the first ``max_scenarios``.

    Raises:
        UnknownConceptError: no scenario carries the concept.
    """
    paired_texts(corpus, concept)  # raises with the list of paired concepts
    return corpus.scenarios_with(concept)[:max_scenarios]


def _group(top: Sequence[NeuronScore | HeadScore]) -> dict[int, tuple[int, ...]]:
    out: dict[int, list[int]] = {}
    for item in top:
        out.setdefault(item.layer, []).append(item.index)
    return {layer: tuple(sorted(idx)) for layer, idx in sorted(out.items())}


def _selection_bootstrap(top: Sequence[np.ndarray], rand: Sequence[np.ndarray], n_boot: int,
                         rng: np.random.Generator
                         ) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% intervals of the pooled held-out top fall and random fall.

    ``top[f]`` is ``[1 + selections, test_f]`` (row 0: whole-half selection),
    ``rand[f]`` is ``[draws, test_f]``. Each resample draws, per fold, the held-out
    scenarios with replacement and one re-selection (row 0 when there are none).
    """
    total = sum(t.shape[1] for t in top)
    top_sum = np.zeros(n_boot)
    rand_sum = np.zeros(n_boot)
    for t, r in zip(top, rand, strict=True):
        n = t.shape[1]
        picks = rng.integers(0, n, size=(n_boot, n))
        rows = (rng.integers(1, t.shape[0], size=n_boot) if t.shape[0] > 1
                else np.zeros(n_boot, dtype=int))
        top_sum += t[rows[:, None], picks].sum(1)
        rand_sum += r.mean(0)[picks].sum(1)
    lo_hi = np.percentile(top_sum / total, [2.5, 97.5])
    r_lo_hi = np.percentile(rand_sum / total, [2.5, 97.5])
    return (float(lo_hi[0]), float(lo_hi[1])), (float(r_lo_hi[0]), float(r_lo_hi[1]))


def render_crossfit(results: Sequence[CrossFitExperiments], *, k_neuron: int = 50,
                    k_head: int = 5) -> str:
    """One line per concept: held-out falls with intervals, per-fold falls, strict pass."""
    def cell(e: HeldOutEffect | None) -> str:
        if e is None:
            return f"{'-':>42}"
        return (f"{e.drop:>5.2f} [{e.drop_ci[0]:>5.2f},{e.drop_ci[1]:>5.2f}] vs "
                f"{e.random_drop:>5.2f} [{e.random_ci[0]:>5.2f},{e.random_ci[1]:>5.2f}]")

    head = (f"{'concept':<15} {'L':>3} {'clean':>6}  {'neurons k=' + str(k_neuron):<42} "
            f"{'heads k=' + str(k_head):<42} pass")
    lines = [head, "-" * len(head)]
    n_pass = {"neurons": 0, "heads": 0}
    for r in results:
        flags = []
        cells = []
        for kind, k in (("neurons", k_neuron), ("heads", k_head)):
            e = r.effect(kind, k)  # type: ignore[arg-type]
            ok = e is not None and e.passes
            n_pass[kind] += ok
            flags.append(("N" if kind == "neurons" else "H") + ("+" if ok else "-"))
            cells.append(cell(e))
        lines.append(f"{r.concept:<15} {r.layer:>3} {r.clean_projection:>6.2f}  "
                     f"{cells[0]} {cells[1]} {' '.join(flags)}")
    n = len(results)
    total = max(n, 1)
    lines.append("cells: held-out top fall [95% CI, selection redone inside the bootstrap] vs "
                 "random fall [95% CI]; cross-fitted")
    lines.append(f"passes (top CI above random CI): neurons {n_pass['neurons']}/{n} "
                 f"({n_pass['neurons'] / total:.0%}), heads {n_pass['heads']}/{n} "
                 f"({n_pass['heads'] / total:.0%})")
    return "\n".join(lines)
