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
from typing import Any, Literal

import attrs
import numpy as np

from amygdala._types import Pooling
from amygdala.backends._registry import Ablation, Backend
from amygdala.corpus._model import Corpus
from amygdala.diagnose._circuits import Circuit, HeadScore, NeuronScore, readout
from amygdala.vectors._set import SteeringVectorSet

__all__ = ["AblationEffect", "CircuitExperiments", "Enhancement", "Specificity",
           "circuit_experiments", "render_summary"]

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

    @property
    def random_drop(self) -> float:
        """Mean fall over the random draws."""
        return float(np.mean(self.random_drops))

    @property
    def passes(self) -> bool:
        """Whether the top-k fall is at least `PASS_RATIO` times the random fall."""
        return self.drop > 0 and self.drop >= PASS_RATIO * max(self.random_drop, 0.0)


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
        """Rebuild from `to_json` output (nulls come back as nan)."""
        return _experiments_from_json(data)

    def effect(self, kind: Kind, k: int) -> AblationEffect | None:
        """The ablation result for ``kind`` at ``k`` (None if not run)."""
        return next((e for e in self.ablation if e.kind == kind and e.k == k), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become null)."""
        def clean(value: Any) -> Any:
            if isinstance(value, float):
                return _finite(value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [clean(v) for v in value]
            return value

        record = clean(attrs.asdict(self, recurse=True))
        for row, effect in zip(record["ablation"], self.ablation, strict=True):
            row["random_drop"] = _finite(effect.random_drop)
            row["passes"] = effect.passes
        return record  # type: ignore[no-any-return]


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _experiments_from_json(data: Mapping[str, Any]) -> CircuitExperiments:
    ablation = tuple(AblationEffect(
        kind=a["kind"], k=int(a["k"]), mode=a["mode"], drop=_num(a["drop"]),
        rel_drop=_num(a["rel_drop"]), random_drops=tuple(_num(x) for x in a["random_drops"]),
        ratio=None if a["ratio"] is None else float(a["ratio"]),
        ratio_ci=(a["ratio_ci"][0], a["ratio_ci"][1]),
        excess_ci=(_num(a["excess_ci"][0]), _num(a["excess_ci"][1])),
        scenario_drops=tuple(_num(x) for x in a["scenario_drops"]),
        accuracy_clean=_num(a["accuracy_clean"]), accuracy_top=_num(a["accuracy_top"]),
        accuracy_random=_num(a["accuracy_random"])) for a in data["ablation"])
    enhancement = tuple(Enhancement(kind=e["kind"], k=int(e["k"]), factor=float(e["factor"]),
                                    rise=_num(e["rise"]), rel_rise=_num(e["rel_rise"]))
                        for e in data["enhancement"])
    specificity = tuple(Specificity(kind=x["kind"], k=int(x["k"]), own=_num(x["own"]),
                                    others={k: _num(v) for k, v in x["others"].items()})
                        for x in data["specificity"])
    return CircuitExperiments(
        concept=data["concept"], layer=int(data["layer"]),
        clean_projection=_num(data["clean_projection"]), scenarios=tuple(data["scenarios"]),
        ablation=ablation, enhancement=enhancement, specificity=specificity,
        params=data.get("params", {}))


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
               ) -> tuple[tuple[float | None, float | None], tuple[float, float]]:
    """95% percentile intervals of mean(top) / mean(rand) and of their difference.

    ``top`` is ``[scenarios]``, ``rand`` ``[draws, scenarios]``; scenarios are resampled.
    """
    n = top.shape[0]
    picks = rng.integers(0, n, size=(n_boot, n))
    num = top[picks].mean(1)
    den = rand[:, picks].mean(axis=(0, 2))
    excess = np.percentile(num - den, [2.5, 97.5])
    # A resample whose random fall is <= 0 has an unbounded ratio (signed by the top fall).
    ratios = np.where(den > 0, num / np.where(den > 0, den, 1.0),
                      np.where(num > 0, np.inf, np.where(num < 0, -np.inf, 0.0)))
    lo, hi = np.percentile(ratios, [2.5, 97.5], method="nearest")
    return (_finite(float(lo)), _finite(float(hi))), (float(excess[0]), float(excess[1]))


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
            ratio_ci, excess_ci = _bootstrap(top_drop, rand_drop, n_boot, rng)
            effects.append(AblationEffect(
                kind=kind, k=k, mode=mode, drop=float(top_drop.mean()),
                rel_drop=float(top_drop.mean() / clean_mean) if clean_mean else math.nan,
                random_drops=tuple(float(r) for r in rand_drop.mean(1)),
                ratio=float(top_drop.mean() / rmean) if rmean > 0 else None,
                ratio_ci=ratio_ci, excess_ci=excess_ci,
                scenario_drops=tuple(float(x) for x in top_drop),
                accuracy_clean=accuracy(0), accuracy_top=accuracy(top_c),
                accuracy_random=float(np.mean([accuracy(c) for c in rand_c])),
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
