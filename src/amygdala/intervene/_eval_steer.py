"""Does steering work? Generate from neutral prompts at several strengths and score.

For every concept and strength (vector alpha, or circuit factor when
``RUN_DIR/circuits/<concept>.json`` exists), each neutral prompt is continued
greedily and the continuation is scored by:

(a) readout: mean z of the concept at a later layer of the *unsteered* model,
    over the generated tokens, minus the same for the unsteered continuation;
(b) judge: an independent classifier (`amygdala.intervene._judge`) on the continuation's
    text: which class is its argmax over *all* classes, ``neutral`` included?
(c) fluency: perplexity of the continuation under the unsteered model, distinct-2
    (share of distinct token bigrams) and the share of repeated token 3-grams.

A sample *succeeds* when the judge's argmax over all classes, neutral included, is
the concept. The same rate is measured when steering along ``random_draws`` random
directions of the same norm at the same strengths (the *control*: how often the
judge names the concept when the text is merely perturbed). A strength is *fluent*
when its median perplexity is at most `FLUENCY_BUDGET` times the unsteered median,
its mean distinct-2 at least `DISTINCT_BUDGET` times the unsteered one, and its mean
repeated-3-gram share at most `REPETITION_BUDGET` above the unsteered one (low
perplexity alone lets loops through). The best strength of a concept is the fluent
one with the highest lift (success minus control; ties: the smaller strength).
`choose_defaults` picks the steering layer and strength of a run from a sweep.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import attrs
import numpy as np
import torch

from amygdala._codec import from_data, to_data
from amygdala._io import figure, json_finite, write_figure, write_json
from amygdala._types import Site
from amygdala.backends._registry import Ablation, Backend, Generation
from amygdala.intervene._judge import Judge, judge_report
from amygdala.intervene._readout import ReadoutStats, score_tokens
from amygdala.intervene._steer import circuit_ablations, steered_generate
from amygdala.vectors._files import CIRCUITS_DIR, STEERING_FILE
from amygdala.vectors._set import SteeringVectorSet

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_FACTORS",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_PROMPTS",
    "DEFAULT_RANDOM_DRAWS",
    "DISTINCT_BUDGET",
    "FLUENCY_BUDGET",
    "REPETITION_BUDGET",
    "RESULT_FILE",
    "STEERING_FILE",
    "Row",
    "Sample",
    "SteerEvaluation",
    "SteeringDefaults",
    "choose_defaults",
    "distinct_n",
    "evaluate_steering",
    "load_defaults",
    "random_directions",
    "readout_layer_for",
    "repetition_rate",
    "steer_prompts",
]

# Defaults sized for 2 CPU cores (see docs/steering.md for measured times).
DEFAULT_PROMPTS: Final = 6
DEFAULT_ALPHAS: Final = (0.0, 0.1, 0.2)
DEFAULT_FACTORS: Final = (2.0, 4.0)
DEFAULT_MAX_NEW_TOKENS: Final = 20
DEFAULT_RANDOM_DRAWS: Final = 3
# A strength is fluent when its median perplexity is <= this x the unsteered median...
FLUENCY_BUDGET: Final = 2.0
# ...its mean distinct-2 is >= this x the unsteered mean...
DISTINCT_BUDGET: Final = 0.8
# ...and its mean repeated-3-gram share is at most this much above the unsteered mean.
REPETITION_BUDGET: Final = 0.1
RESULT_FILE: Final = "eval_steer.json"

Mode = Literal["vector", "circuit"]


def steer_prompts() -> list[str]:
    """The shipped neutral prompts (``amygdala/data/steer_prompts.txt``)."""
    text = resources.files("amygdala.data").joinpath("steer_prompts.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def repetition_rate(ids: Sequence[int], n: int = 3) -> float:
    """Share of token n-grams that repeat an earlier one (0 = none repeated).

    >>> repetition_rate([1, 2, 3, 1, 2, 3])
    0.25
    """
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def distinct_n(ids: Sequence[int], n: int = 2) -> float:
    """Share of token n-grams that are distinct (1 = no repeats; 1.0 for fewer than n tokens).

    >>> distinct_n([1, 2, 1, 2, 1])
    0.5
    """
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return 1.0 if not grams else len(set(grams)) / len(grams)


def random_directions(vectors: SteeringVectorSet, draws: int, seed: int = 0
                      ) -> SteeringVectorSet:
    """``draws`` random unit directions per layer, as concepts ``random0``, ``random1``...

    Steering strengths are in units of ``resid_norm`` times a unit direction, so a
    random concept steered at ``alpha`` moves the residual stream exactly as far as a
    real one at ``alpha`` (the control of `evaluate_steering`).
    """
    rng = np.random.default_rng(seed)
    n_layers, d = len(vectors.layers), vectors.directions.shape[2]
    directions = rng.standard_normal((draws, n_layers, d))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return SteeringVectorSet(
        concepts=[f"random{i}" for i in range(draws)], layers=vectors.layers,
        directions=directions.astype(np.float32),
        raw_norm=np.ones((draws, n_layers), np.float32),
        resid_norm=np.asarray(vectors.resid_norm, np.float32),
        mean=np.asarray(vectors.mean, np.float32), std=np.ones((n_layers, d), np.float32),
        method=vectors.method, normalisation="raw",
        provenance={"random_directions": {"draws": draws, "seed": seed}})


def readout_layer_for(vectors: SteeringVectorSet, steer_layer: int, n_layers: int) -> int:
    """A later layer to read at: about a sixth of the depth past the steering layer."""
    target = min(n_layers - 1, steer_layer + max(2, n_layers // 6))
    later = [x for x in vectors.layers if x > steer_layer] or [steer_layer]
    return min(later, key=lambda x: abs(x - target))


def _nan_key(value: float) -> float | None:
    """Equality key: nan compares equal to nan (a missing measurement, not a number)."""
    return None if isinstance(value, float) and math.isnan(value) else value


@attrs.frozen(kw_only=True)
class Sample:
    """One scored continuation."""

    concept: str
    mode: str  # "vector", "circuit" or "none" (unsteered)
    strength: float
    prompt: int
    text: str
    proba: float  # judge probability of the concept
    top: str  # judge's top concept, neutral aside (informative only)
    readout: float  # mean z of the concept at the readout layer
    perplexity: float
    repetition: float
    argmax: str = ""  # judge's argmax over all classes, neutral included
    distinct2: float = attrs.field(default=math.nan, eq=_nan_key)


@attrs.frozen(kw_only=True)
class Row:
    """Aggregates over prompts for one concept, mode and strength.

    Attributes:
        success: share of prompts whose judge argmax (all classes, neutral included)
            is the concept.
        control: the same share when steering along random directions of equal norm
            at this strength (all draws pooled; nan where not measured).
        rise: share whose judge P(concept) rose over the unsteered text (informative).
        top: share whose top non-neutral class is the concept (the old, lenient verdict).
        fluent: perplexity, distinct-2 and repetition all within budget (module docs).
        mode: ``vector``, ``circuit``, or ``random`` (the control's own rows).
    """

    concept: str
    mode: str
    strength: float
    success: float
    rise: float
    top: float
    d_proba: float
    d_readout: float
    perplexity: float
    repetition: float
    fluent: bool
    control: float = attrs.field(default=math.nan, eq=_nan_key)
    distinct2: float = attrs.field(default=math.nan, eq=_nan_key)

    @property
    def lift(self) -> float:
        """``success - control`` (``success`` where no control was measured)."""
        return self.success - (0.0 if math.isnan(self.control) else self.control)


@attrs.frozen(kw_only=True)
class SteerEvaluation:
    """Everything `evaluate_steering` measured."""

    rows: tuple[Row, ...]
    samples: tuple[Sample, ...]
    baseline: tuple[Sample, ...]
    settings: dict[str, Any]

    def best(self, concept: str, mode: str) -> Row | None:
        """The fluent row with the highest lift over the random control, if any.

        Ties go to the higher success, then to the smaller strength.
        """
        rows = [r for r in self.rows if r.concept == concept and r.mode == mode
                and r.strength != 0 and r.fluent]
        return max(rows, key=lambda r: (r.lift, r.success, -abs(r.strength)), default=None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SteerEvaluation:
        """Inverse of `to_json` (non-finite numbers come back as NaN)."""
        return from_data(cls, data)

    @property
    def concepts(self) -> list[str]:
        """Concepts evaluated, in order."""
        return list(dict.fromkeys(r.concept for r in self.rows))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (rows, best per concept and mode, samples)."""
        def best(c: str, m: str) -> dict[str, Any] | None:
            row = self.best(c, m)
            return None if row is None else {"strength": row.strength, "success": row.success,
                                             "control": row.control}

        data = to_data(self)
        return {"settings": data["settings"], "rows": data["rows"],
                "best": {c: {m: best(c, m) for m in ("vector", "circuit")} for c in self.concepts},
                "baseline": data["baseline"], "samples": data["samples"]}

    def save(self, run_dir: Path | str, *, path: Path | str | None = None) -> Path:
        """Write ``RUN_DIR/eval_steer.json`` (or ``path``) atomically; return where."""
        path = Path(path) if path is not None else Path(run_dir) / RESULT_FILE
        return write_json(path, json_finite(self.to_json()), indent=1)

    def render(self) -> str:
        """The per-concept table: best fluent strength for vectors and circuits."""
        s = self.settings
        band = s.get("steer_layers", [s["layer"]])
        where = (f"steering layer {s['layer']}" if band == [s["layer"]]
                 else f"steering layers {band} (each at alpha x its residual norm)")
        lines = [
            f"{where}, readout layer {s['readout_layer']}, "
            f"{s['n_prompts']} prompts x {s['max_new_tokens']} tokens, "
            f"judge {s['judge']['embedder']}",
            f"unsteered median perplexity {s['baseline_perplexity']:.1f}; fluent = median "
            f"<= {FLUENCY_BUDGET:g}x that, distinct-2 >= {DISTINCT_BUDGET:g}x and repeated "
            f"3-grams <= +{REPETITION_BUDGET:g} of the unsteered text",
            "best fluent strength per concept; succ = judge argmax (neutral included) is the "
            f"concept, ctrl = the same under {s.get('random_draws', 0)} random directions of "
            "equal norm, dZ = readout change",
            f"{'':<15} {'vector':^32} | {'circuit':^32}",
            f"{'concept':<15} " + " | ".join(
                [f"{'alpha':>6} {'succ':>5} {'ctrl':>5} {'dZ':>6} {'ppl':>6}",
                 f"{'factor':>6} {'succ':>5} {'ctrl':>5} {'dZ':>6} {'ppl':>6}"]),
        ]
        for concept in self.concepts:
            cells = []
            for mode in ("vector", "circuit"):
                row = self.best(concept, mode)
                has_rows = any(r.concept == concept and r.mode == mode and r.strength != 0
                               for r in self.rows)
                if row is None:
                    cells.append(f"{'none fluent' if has_rows else '-':>32}")
                else:
                    ctrl = "-" if math.isnan(row.control) else f"{row.control:.0%}"
                    cells.append(f"{row.strength:>6g} {row.success:>5.0%} {ctrl:>5} "
                                 f"{row.d_readout:>+6.2f} {row.perplexity:>6.1f}")
            lines.append(f"{concept:<15} " + " | ".join(cells))
        if not any(r.mode == "circuit" for r in self.rows):
            lines.append("circuit modulation: no RUN_DIR/circuits/<concept>.json found; "
                         "vector steering only")
        return "\n".join(lines)

    def render_rows(self) -> str:
        """Every row: success, control, judge rise/top, readout change and fluency."""
        head = (f"{'concept':<15} {'mode':<7} {'str':>5} {'succ':>5} {'ctrl':>5} {'rise':>5} "
                f"{'top':>5} {'dP':>6} {'dZ':>6} {'ppl':>7} {'dist2':>5} {'rep':>5} fluent")
        lines = [head]
        for r in self.rows:
            ctrl = "-" if math.isnan(r.control) else f"{r.control:.0%}"
            lines.append(f"{r.concept:<15} {r.mode:<7} {r.strength:>5g} {r.success:>5.0%} "
                         f"{ctrl:>5} {r.rise:>5.0%} {r.top:>5.0%} {r.d_proba:>+6.2f} "
                         f"{r.d_readout:>+6.2f} {r.perplexity:>7.1f} {r.distinct2:>5.2f} "
                         f"{r.repetition:>5.2f} {'yes' if r.fluent else 'no'}")
        return "\n".join(lines)

    def plot(self, directory: Path | str) -> list[Path]:
        """Write ``success_vs_strength.png`` (one panel per mode) into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        modes = [m for m in ("vector", "circuit") if any(r.mode == m for r in self.rows)]
        fig = figure(figsize=(6 * len(modes), 4))
        axes = fig.subplots(1, len(modes), squeeze=False)
        for ax, mode in zip(axes[0], modes, strict=True):
            for concept in self.concepts:
                rows = sorted((r for r in self.rows if r.concept == concept and r.mode == mode),
                              key=lambda r: r.strength)
                if rows:
                    ax.plot([r.strength for r in rows], [r.success for r in rows], marker="o",
                            label=concept, alpha=0.7)
            ax.set_xlabel("alpha (x residual norm)" if mode == "vector" else "circuit factor")
            ax.set_ylabel("success rate")
            ax.set_title(f"{mode} steering")
        axes[0][-1].legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        return [write_figure(fig, out / "success_vs_strength.png", dpi=110, tight=False)]




@attrs.frozen(kw_only=True)
class _Scored:
    readout: np.ndarray  # [concepts] mean z over generated tokens
    perplexity: float
    repetition: float
    text: str
    distinct2: float = 1.0


def _score(backend: Backend, vectors: SteeringVectorSet, stats: ReadoutStats, layer: int,
           generation: Generation) -> _Scored:
    """Score one continuation with the unsteered model (one forward pass).

    The pass runs on the generated token ids themselves (prompt and continuation), so
    exactly the continuation's tokens are scored.
    """
    ids = list(generation.token_ids)
    new_ids = ids[generation.prompt_len:]
    site = Site(layer=layer)
    with backend.tracing([site]) as trace:
        logits = backend.logits([ids])[0]
    acts = trace.stacked(site)[0]
    n = len(logits)
    k = min(len(new_ids), n - 1)
    perplexity = float("nan")
    readout = np.zeros(len(vectors.concepts), np.float32)
    if k > 0:
        targets = torch.tensor(ids[n - k:])
        logp = torch.log_softmax(logits[n - k - 1:n - 1].float(), dim=-1)
        nll = -logp[torch.arange(k), targets].mean()
        perplexity = float(torch.exp(nll))
        z = stats.zscore(layer, score_tokens(vectors, layer, acts[n - k:]))
        readout = z.mean(axis=0)
    return _Scored(readout=readout, perplexity=perplexity, repetition=repetition_rate(new_ids),
                   text=generation.text, distinct2=distinct_n(new_ids))


def evaluate_steering(
    backend: Backend, vectors: SteeringVectorSet, judge: Judge, stats: ReadoutStats, *,
    layer: int, readout_layer: int, run_dir: Path | str | None = None,
    steer_layers: Sequence[int] | None = None,
    concepts: Sequence[str] | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS,
    factors: Sequence[float] = DEFAULT_FACTORS, prompts: Sequence[str] | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, chat: bool = True,
    circuits: Callable[[str, float], list[Ablation]] | None = None,
    random_draws: int = DEFAULT_RANDOM_DRAWS, seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> SteerEvaluation:
    """Steer each concept at each strength on each prompt and score the continuations.

    Args:
        backend: the model's backend.
        vectors: its steering vectors.
        judge: the independent classifier (`amygdala.intervene._judge.fit_judge`).
        stats: neutral readout statistics (`amygdala.intervene._readout.load_or_compute_stats`).
        layer: the steering layer.
        readout_layer: the later layer read by (a).
        run_dir: where circuits are looked up (``circuits/<concept>.json``).
        steer_layers: add the vectors at each of these layers at once, each at
            ``alpha x`` its own residual norm (default ``[layer]``); a band of layers
            is what a llama.cpp control vector applies (`amygdala.vectors._gguf`).
            The random control is steered at the same layers.
        concepts: concepts to test (default: all of ``vectors``).
        alphas: vector strengths (0 = unsteered, always measured once per prompt).
        factors: circuit scale factors (used where a circuit file exists).
        prompts: neutral prompts (default: the first `DEFAULT_PROMPTS` shipped ones).
        max_new_tokens: tokens per continuation.
        chat: wrap prompts in the model's chat template.
        circuits: ``(concept, factor) -> ablations``; default reads run_dir's files.
        random_draws: random directions of equal norm steered at every non-zero alpha
            (the control; 0 skips it). Their continuations are shared by all concepts.
        seed: seeds the random directions.
        log: progress callback (a line per concept).

    Returns:
        A `SteerEvaluation`.

    Raises:
        UnknownConceptError: a concept is not in ``vectors``.
        ValueError: ``random_draws`` is negative, or ``steer_layers`` is empty.
        UnknownSiteError: a steering layer has no vectors.
    """
    say = log or (lambda _line: None)
    if random_draws < 0:
        raise ValueError(f"random_draws must be >= 0, got {random_draws}")
    steered = [layer] if steer_layers is None else [int(x) for x in steer_layers]
    if not steered:
        raise ValueError("steer_layers is empty; pass at least one layer, or None for [layer]")
    for x in steered:
        vectors.layer_index(x)  # raises UnknownSiteError with the set's layers
    chosen = list(concepts) if concepts is not None else list(vectors.concepts)
    for concept in chosen:
        vectors.concept_index(concept)  # raises UnknownConceptError with the list
    prompt_list = list(prompts) if prompts is not None else steer_prompts()[:DEFAULT_PROMPTS]
    class_index = {c: i for i, c in enumerate(judge.classes)}
    concept_col = {c: i for i, c in enumerate(vectors.concepts)}
    randoms = random_directions(vectors, random_draws, seed) if random_draws else None

    def run(mode: str, concept: str, strength: float, ablations: Sequence[Ablation] = (),
            source: SteeringVectorSet = vectors) -> list[tuple[_Scored, np.ndarray]]:
        out = []
        for prompt in prompt_list:
            alphas_map = {concept: strength} if mode in ("vector", "random") else None
            generation = steered_generate(
                backend, prompt, vectors=source, alphas=alphas_map, layers=steered,
                ablations=ablations, max_new_tokens=max_new_tokens, chat=chat)
            out.append((_score(backend, vectors, stats, readout_layer, generation), np.zeros(0)))
        probas = judge.proba([s.text for s, _ in out])
        return [(s, p) for (s, _), p in zip(out, probas, strict=True)]

    def sample(concept: str, mode: str, strength: float, i: int, scored: _Scored,
               proba: np.ndarray) -> Sample:
        ci = class_index.get(concept)
        return Sample(concept=concept, mode=mode, strength=float(strength), prompt=i,
                      text=scored.text, proba=float(proba[ci]) if ci is not None else 0.0,
                      top=judge.top_concept(proba),
                      readout=float(scored.readout[concept_col[concept]]),
                      perplexity=scored.perplexity, repetition=scored.repetition,
                      argmax=str(judge.classes[int(np.argmax(proba))]),
                      distinct2=scored.distinct2)

    start = time.perf_counter()
    base = run("none", "", 0.0)
    base_ppl = float(np.nanmedian([s.perplexity for s, _ in base]))
    say(f"unsteered: {len(prompt_list)} prompts in {time.perf_counter() - start:.0f}s, "
        f"median perplexity {base_ppl:.1f}")
    control_runs: dict[float, list[tuple[_Scored, np.ndarray]]] = {}
    if randoms is not None:
        t0 = time.perf_counter()
        for alpha in sorted({float(a) for a in alphas if a != 0.0}):
            control_runs[alpha] = [pair for name in randoms.concepts
                                   for pair in run("random", name, alpha, source=randoms)]
        say(f"random control: {random_draws} directions x {len(control_runs)} strengths in "
            f"{time.perf_counter() - t0:.0f}s")
    rows: list[Row] = []
    samples: list[Sample] = []
    baseline_samples: list[Sample] = []
    circuit_source = circuits or (
        (lambda c, f: circuit_ablations(run_dir, c, f)) if run_dir is not None else None)
    for concept in chosen:
        t0 = time.perf_counter()
        base_samples = [sample(concept, "none", 0.0, i, s, p) for i, (s, p) in enumerate(base)]
        baseline_samples += base_samples
        controls: dict[float, list[Sample]] = {}
        for alpha, scored_runs in control_runs.items():
            group = [sample(concept, "random", alpha, i % len(prompt_list), s, p)
                     for i, (s, p) in enumerate(scored_runs)]
            controls[alpha] = group
            rows.append(_aggregate(concept, "random", alpha, group,
                                   base_samples * random_draws, base_ppl))
        plans: list[tuple[Mode, float, Sequence[Ablation]]] = [
            ("vector", float(a), ()) for a in alphas]
        has_circuit = run_dir is not None and (
            Path(run_dir) / CIRCUITS_DIR / f"{concept}.json").is_file()
        if (has_circuit or circuits is not None) and circuit_source is not None:
            plans += [("circuit", float(f), circuit_source(concept, float(f))) for f in factors]
        for mode, strength, ablations in plans:
            scored = (list(base) if mode == "vector" and strength == 0.0
                      else run(mode, concept, strength, ablations))
            group = [sample(concept, mode, strength, i, s, p) for i, (s, p) in enumerate(scored)]
            samples += group
            control = controls.get(strength) if mode == "vector" else None
            rows.append(_aggregate(concept, mode, strength, group, base_samples, base_ppl,
                                   control=control))
        say(f"{concept}: {len(plans)} strengths in {time.perf_counter() - t0:.0f}s")
    settings = {
        "layer": layer, "steer_layers": steered, "readout_layer": readout_layer,
        "alphas": [float(a) for a in alphas],
        "factors": [float(f) for f in factors], "n_prompts": len(prompt_list),
        "prompts": prompt_list, "max_new_tokens": max_new_tokens, "chat": chat,
        "positions": "all", "fluency_budget": FLUENCY_BUDGET,
        "distinct_budget": DISTINCT_BUDGET, "repetition_budget": REPETITION_BUDGET,
        "baseline_perplexity": base_ppl,
        "baseline_distinct2": float(np.mean([s.distinct2 for s, _ in base])),
        "baseline_repetition": float(np.mean([s.repetition for s, _ in base])),
        "random_draws": random_draws, "seed": seed,
        "judge": judge_report(judge), "seconds": round(time.perf_counter() - start, 1),
        "model_id": vectors.provenance.get("model_id"),
        "success": "the judge's argmax over all classes, neutral included, is the concept",
        "control": "success rate of the concept when steering along random unit directions "
                   "(same alpha x resid_norm) instead of the concept's",
    }
    return SteerEvaluation(rows=tuple(rows), samples=tuple(samples),
                           baseline=tuple(baseline_samples), settings=settings)


def _aggregate(concept: str, mode: str, strength: float, group: Sequence[Sample],
               base: Sequence[Sample], base_ppl: float, *,
               control: Sequence[Sample] | None = None) -> Row:
    """One row: the strict verdict (argmax incl. neutral), control, and the fluency gate."""
    rise = [s.proba > b.proba for s, b in zip(group, base, strict=True)]
    top = [s.top == concept for s in group]
    success = [s.argmax == concept for s in group]
    ppl = float(np.nanmedian([s.perplexity for s in group]))
    distinct2 = float(np.mean([s.distinct2 for s in group]))
    repetition = float(np.mean([s.repetition for s in group]))
    base_distinct2 = float(np.mean([b.distinct2 for b in base]))
    base_repetition = float(np.mean([b.repetition for b in base]))
    # 1e-9: a mean of shares such as (0.1 + 0.2 + 0) / 3 must not fail by rounding.
    fluent = (ppl <= FLUENCY_BUDGET * base_ppl
              and distinct2 >= DISTINCT_BUDGET * base_distinct2 - 1e-9
              and repetition <= base_repetition + REPETITION_BUDGET + 1e-9)
    return Row(
        concept=concept, mode=mode, strength=strength,
        success=float(np.mean(success)), rise=float(np.mean(rise)), top=float(np.mean(top)),
        d_proba=float(np.mean([s.proba - b.proba for s, b in zip(group, base, strict=True)])),
        d_readout=float(np.mean([s.readout - b.readout for s, b in zip(group, base,
                                                                        strict=True)])),
        perplexity=ppl, repetition=repetition, fluent=bool(fluent),
        control=(float(np.mean([c.argmax == concept for c in control]))
                 if control else math.nan),
        distinct2=distinct2,
    )


@attrs.frozen(kw_only=True)
class SteeringDefaults:
    """The steering layer(s) and strength a run recommends, and how they were chosen.

    Attributes:
        layers: steering layers (`amygdala steer` default).
        alpha: strength in units of the residual norm.
        lift: mean over concepts of (fluent success - random control) at that cell.
        success: mean success there; ``control``: mean random-direction control.
        table: every (layer, alpha) cell of the sweep with its numbers.
        settings: how the sweep was run (prompts, tokens, concepts...).
    """

    layers: tuple[int, ...]
    alpha: float
    lift: float
    success: float
    control: float
    table: tuple[dict[str, Any], ...] = ()
    settings: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``steering.json``)."""
        data: dict[str, Any] = to_data(self, finite=True)
        tail = {key: data.pop(key) for key in ("table", "settings")}
        return {"format_version": 1, **data, "rule": CHOICE_RULE, **tail}

    def save(self, run_dir: Path | str) -> Path:
        """Write ``RUN_DIR/steering.json`` atomically."""
        path = Path(run_dir) / STEERING_FILE
        return write_json(path, self.to_json(), indent=1)


CHOICE_RULE: Final = ("the (layer, alpha) with the highest mean over concepts of "
                      "success x fluent - random-direction control; ties: smaller alpha, then "
                      "earlier layer")


def choose_defaults(evaluations: Sequence[SteerEvaluation]) -> SteeringDefaults:
    """Pick the steering layer and strength from evaluations at several layers.

    A non-fluent row counts as no success: steering that breaks the text fails.

    Raises:
        ValueError: no evaluation has a non-zero vector strength.
    """
    table = []
    for ev in evaluations:
        layer = int(ev.settings["layer"])
        strengths = sorted({r.strength for r in ev.rows if r.mode == "vector" and r.strength})
        for alpha in strengths:
            rows = [r for r in ev.rows if r.mode == "vector" and r.strength == alpha]
            success = [r.success if r.fluent else 0.0 for r in rows]
            control = [0.0 if math.isnan(r.control) else r.control for r in rows]
            table.append({"layer": layer, "alpha": alpha,
                          "lift": float(np.mean(success) - np.mean(control)),
                          "success": float(np.mean(success)),
                          "raw_success": float(np.mean([r.success for r in rows])),
                          "control": float(np.mean(control)),
                          "fluent": float(np.mean([r.fluent for r in rows])),
                          "concepts": len(rows)})
    if not table:
        raise ValueError("no non-zero vector strength was evaluated; pass --alphas with at "
                         "least one alpha other than 0")
    best = max(table, key=lambda c: (c["lift"], -c["alpha"], -c["layer"]))
    first = evaluations[0].settings
    settings = {k: first.get(k) for k in ("n_prompts", "max_new_tokens", "chat", "random_draws",
                                          "seed", "model_id")}
    settings["concepts"] = evaluations[0].concepts
    settings["layers"] = [int(ev.settings["layer"]) for ev in evaluations]
    return SteeringDefaults(layers=(int(best["layer"]),), alpha=float(best["alpha"]),
                            lift=best["lift"], success=best["success"],
                            control=best["control"], table=tuple(table), settings=settings)


def load_defaults(run_dir: Path | str) -> SteeringDefaults | None:
    """``RUN_DIR/steering.json`` if it exists and parses, else None."""
    path = Path(run_dir) / STEERING_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return from_data(SteeringDefaults, data)
    except (OSError, KeyError, TypeError, ValueError):
        return None


def progress_printer(line: str) -> None:
    """Print a progress line to stderr."""
    print(line, file=sys.stderr, flush=True)
