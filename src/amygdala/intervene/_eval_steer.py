"""Does steering work? Generate from neutral prompts at several strengths and score.

For every concept and strength (vector alpha, or circuit factor when
``RUN_DIR/circuits/<concept>.json`` exists), each neutral prompt is continued
greedily and the continuation is scored by:

(a) readout: mean z of the concept at a later layer of the *unsteered* model,
    over the generated tokens, minus the same for the unsteered continuation;
(b) judge: an independent classifier (`amygdala.intervene._judge`) on the continuation's
    text: does the concept's probability rise over the unsteered continuation,
    and is the concept the judge's top concept?
(c) fluency: perplexity of the continuation under the unsteered model, and the
    share of repeated token 3-grams.

A sample *succeeds* when the judge's probability for the concept rises over the
unsteered continuation of the same prompt and the concept is the judge's top
concept. A strength is *fluent* when its median perplexity is at most
`FLUENCY_BUDGET` times the unsteered median. The best strength of a concept is
the fluent one with the highest success rate (ties: the smaller strength).
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

from amygdala._types import Site
from amygdala.backends._registry import Ablation, Backend, Generation
from amygdala.intervene._judge import Judge, judge_report
from amygdala.intervene._readout import ReadoutStats, score_tokens
from amygdala.intervene._steer import circuit_ablations, steered_generate
from amygdala.store._store import write_atomic
from amygdala.vectors._set import SteeringVectorSet

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_FACTORS",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_PROMPTS",
    "FLUENCY_BUDGET",
    "RESULT_FILE",
    "Row",
    "Sample",
    "SteerEvaluation",
    "evaluate_steering",
    "readout_layer_for",
    "repetition_rate",
    "steer_prompts",
]

# Defaults sized for 2 CPU cores (see docs/steering.md for measured times).
DEFAULT_PROMPTS: Final = 6
DEFAULT_ALPHAS: Final = (0.0, 0.1, 0.2)
DEFAULT_FACTORS: Final = (2.0, 4.0)
DEFAULT_MAX_NEW_TOKENS: Final = 20
# A strength is fluent when its median perplexity is <= this x the unsteered median.
FLUENCY_BUDGET: Final = 2.0
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


def readout_layer_for(vectors: SteeringVectorSet, steer_layer: int, n_layers: int) -> int:
    """A later layer to read at: about a sixth of the depth past the steering layer."""
    target = min(n_layers - 1, steer_layer + max(2, n_layers // 6))
    later = [x for x in vectors.layers if x > steer_layer] or [steer_layer]
    return min(later, key=lambda x: abs(x - target))


@attrs.frozen(kw_only=True)
class Sample:
    """One scored continuation."""

    concept: str
    mode: str  # "vector", "circuit" or "none" (unsteered)
    strength: float
    prompt: int
    text: str
    proba: float  # judge probability of the concept
    top: str  # judge's top concept
    readout: float  # mean z of the concept at the readout layer
    perplexity: float
    repetition: float


@attrs.frozen(kw_only=True)
class Row:
    """Aggregates over prompts for one concept, mode and strength."""

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


@attrs.frozen(kw_only=True)
class SteerEvaluation:
    """Everything `evaluate_steering` measured."""

    rows: tuple[Row, ...]
    samples: tuple[Sample, ...]
    baseline: tuple[Sample, ...]
    settings: dict[str, Any]

    def best(self, concept: str, mode: str) -> Row | None:
        """The fluent row with the highest success, if any.

        Ties go to the higher judge rise rate, then to the smaller strength.
        """
        rows = [r for r in self.rows if r.concept == concept and r.mode == mode
                and r.strength != 0 and r.fluent]
        return max(rows, key=lambda r: (r.success, r.rise, -abs(r.strength)), default=None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SteerEvaluation:
        """Inverse of `to_json` (non-finite numbers come back as NaN)."""
        def num(x: Any) -> Any:
            return float("nan") if x is None else x

        def row(d: dict[str, Any]) -> Row:
            return Row(**{k: num(v) for k, v in d.items()})

        def sample(d: dict[str, Any]) -> Sample:
            return Sample(**{k: num(v) for k, v in d.items()})

        return cls(rows=tuple(row(r) for r in data["rows"]),
                   samples=tuple(sample(x) for x in data["samples"]),
                   baseline=tuple(sample(x) for x in data["baseline"]),
                   settings=dict(data["settings"]))

    @property
    def concepts(self) -> list[str]:
        """Concepts evaluated, in order."""
        return list(dict.fromkeys(r.concept for r in self.rows))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (rows, best per concept and mode, samples)."""
        def best(c: str, m: str) -> dict[str, Any] | None:
            row = self.best(c, m)
            return None if row is None else {"strength": row.strength, "success": row.success}

        return {
            "settings": self.settings,
            "rows": [attrs.asdict(r) for r in self.rows],
            "best": {c: {m: best(c, m) for m in ("vector", "circuit")} for c in self.concepts},
            "baseline": [attrs.asdict(s) for s in self.baseline],
            "samples": [attrs.asdict(s) for s in self.samples],
        }

    def save(self, run_dir: Path | str, *, path: Path | str | None = None) -> Path:
        """Write ``RUN_DIR/eval_steer.json`` (or ``path``) atomically; return where."""
        path = Path(path) if path is not None else Path(run_dir) / RESULT_FILE
        write_atomic(path, (json.dumps(_finite(self.to_json()), indent=1) + "\n").encode())
        return path

    def render(self) -> str:
        """The per-concept table: best fluent strength for vectors and circuits."""
        s = self.settings
        lines = [
            f"steering layer {s['layer']}, readout layer {s['readout_layer']}, "
            f"{s['n_prompts']} prompts x {s['max_new_tokens']} tokens, "
            f"judge {s['judge']['embedder']}",
            f"unsteered median perplexity {s['baseline_perplexity']:.1f}; fluent = median "
            f"<= {FLUENCY_BUDGET:g}x that",
            "best fluent strength per concept; succ = judge rise and top, rise = judge "
            "P(concept) rises, dZ = readout change",
            f"{'':<15} {'vector':^32} | {'circuit':^32}",
            f"{'concept':<15} " + " | ".join(
                [f"{'alpha':>6} {'succ':>5} {'rise':>5} {'dZ':>6} {'ppl':>6}",
                 f"{'factor':>6} {'succ':>5} {'rise':>5} {'dZ':>6} {'ppl':>6}"]),
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
                    cells.append(f"{row.strength:>6g} {row.success:>5.0%} {row.rise:>5.0%} "
                                 f"{row.d_readout:>+6.2f} {row.perplexity:>6.1f}")
            lines.append(f"{concept:<15} " + " | ".join(cells))
        if not any(r.mode == "circuit" for r in self.rows):
            lines.append("circuit modulation: no RUN_DIR/circuits/<concept>.json found; "
                         "vector steering only")
        return "\n".join(lines)

    def render_rows(self) -> str:
        """Every row: success, judge rise/top, readout change and fluency per strength."""
        head = (f"{'concept':<15} {'mode':<7} {'str':>5} {'succ':>5} {'rise':>5} {'top':>5} "
                f"{'dP':>6} {'dZ':>6} {'ppl':>7} {'rep':>5} fluent")
        lines = [head]
        for r in self.rows:
            lines.append(f"{r.concept:<15} {r.mode:<7} {r.strength:>5g} {r.success:>5.0%} "
                         f"{r.rise:>5.0%} {r.top:>5.0%} {r.d_proba:>+6.2f} {r.d_readout:>+6.2f} "
                         f"{r.perplexity:>7.1f} {r.repetition:>5.2f} {'yes' if r.fluent else 'no'}")
        return "\n".join(lines)

    def plot(self, directory: Path | str) -> list[Path]:
        """Write ``success_vs_strength.png`` (one panel per mode) into ``directory``."""
        from amygdala.intervene._readout import _pyplot

        plt = _pyplot()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        modes = [m for m in ("vector", "circuit") if any(r.mode == m for r in self.rows)]
        fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
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
        path = out / "success_vs_strength.png"
        tmp = out / ".success_vs_strength.tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        return [path]


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@attrs.frozen(kw_only=True)
class _Scored:
    readout: np.ndarray  # [concepts] mean z over generated tokens
    perplexity: float
    repetition: float
    text: str


def _score(backend: Backend, vectors: SteeringVectorSet, stats: ReadoutStats, layer: int,
           generation: Generation) -> _Scored:
    """Score one continuation with the unsteered model (one forward pass)."""
    tok: Any = backend.tokenizer
    full = tok.decode(list(generation.token_ids), skip_special_tokens=False)
    new_ids = list(generation.token_ids[generation.prompt_len:])
    site = Site(layer=layer)
    with backend.tracing([site]) as trace:
        logits = backend.logits([full])[0]
    acts = trace.stacked(site)[0]
    n = len(logits)
    # The re-tokenised text ends with the continuation's tokens (approximately, at
    # the boundary); score its last len(new_ids) positions.
    k = min(len(new_ids), n - 1)
    perplexity = float("nan")
    readout = np.zeros(len(vectors.concepts), np.float32)
    if k > 0:
        targets = torch.tensor(tok(full, add_special_tokens=True)["input_ids"][n - k:])
        logp = torch.log_softmax(logits[n - k - 1:n - 1].float(), dim=-1)
        nll = -logp[torch.arange(k), targets].mean()
        perplexity = float(torch.exp(nll))
        z = stats.zscore(layer, score_tokens(vectors, layer, acts[n - k:]))
        readout = z.mean(axis=0)
    return _Scored(readout=readout, perplexity=perplexity, repetition=repetition_rate(new_ids),
                   text=generation.text)


def evaluate_steering(
    backend: Backend, vectors: SteeringVectorSet, judge: Judge, stats: ReadoutStats, *,
    layer: int, readout_layer: int, run_dir: Path | str | None = None,
    concepts: Sequence[str] | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS,
    factors: Sequence[float] = DEFAULT_FACTORS, prompts: Sequence[str] | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, chat: bool = True,
    circuits: Callable[[str, float], list[Ablation]] | None = None,
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
        concepts: concepts to test (default: all of ``vectors``).
        alphas: vector strengths (0 = unsteered, always measured once per prompt).
        factors: circuit scale factors (used where a circuit file exists).
        prompts: neutral prompts (default: the first `DEFAULT_PROMPTS` shipped ones).
        max_new_tokens: tokens per continuation.
        chat: wrap prompts in the model's chat template.
        circuits: ``(concept, factor) -> ablations``; default reads run_dir's files.
        log: progress callback (a line per concept).
    """
    say = log or (lambda _line: None)
    chosen = list(concepts) if concepts is not None else list(vectors.concepts)
    for concept in chosen:
        vectors.concept_index(concept)  # raises UnknownConceptError with the list
    prompt_list = list(prompts) if prompts is not None else steer_prompts()[:DEFAULT_PROMPTS]
    class_index = {c: i for i, c in enumerate(judge.classes)}
    concept_col = {c: i for i, c in enumerate(vectors.concepts)}

    def run(mode: str, concept: str, strength: float,
            ablations: Sequence[Ablation] = ()) -> list[tuple[_Scored, np.ndarray]]:
        out = []
        for prompt in prompt_list:
            alphas_map = {concept: strength} if mode == "vector" else None
            generation = steered_generate(
                backend, prompt, vectors=vectors, alphas=alphas_map, layers=[layer],
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
                      perplexity=scored.perplexity, repetition=scored.repetition)

    start = time.perf_counter()
    base = run("none", "", 0.0)
    base_ppl = float(np.nanmedian([s.perplexity for s, _ in base]))
    say(f"unsteered: {len(prompt_list)} prompts in {time.perf_counter() - start:.0f}s, "
        f"median perplexity {base_ppl:.1f}")
    rows: list[Row] = []
    samples: list[Sample] = []
    baseline_samples: list[Sample] = []
    circuit_source = circuits or (
        (lambda c, f: circuit_ablations(run_dir, c, f)) if run_dir is not None else None)
    for concept in chosen:
        t0 = time.perf_counter()
        base_samples = [sample(concept, "none", 0.0, i, s, p) for i, (s, p) in enumerate(base)]
        baseline_samples += base_samples
        plans: list[tuple[Mode, float, Sequence[Ablation]]] = [
            ("vector", float(a), ()) for a in alphas]
        has_circuit = run_dir is not None and (
            Path(run_dir) / "circuits" / f"{concept}.json").is_file()
        if (has_circuit or circuits is not None) and circuit_source is not None:
            plans += [("circuit", float(f), circuit_source(concept, float(f))) for f in factors]
        for mode, strength, ablations in plans:
            scored = (list(base) if mode == "vector" and strength == 0.0
                      else run(mode, concept, strength, ablations))
            group = [sample(concept, mode, strength, i, s, p) for i, (s, p) in enumerate(scored)]
            samples += group
            rows.append(_aggregate(concept, mode, strength, group, base_samples, base_ppl))
        say(f"{concept}: {len(plans)} strengths in {time.perf_counter() - t0:.0f}s")
    settings = {
        "layer": layer, "readout_layer": readout_layer, "alphas": [float(a) for a in alphas],
        "factors": [float(f) for f in factors], "n_prompts": len(prompt_list),
        "prompts": prompt_list, "max_new_tokens": max_new_tokens, "chat": chat,
        "positions": "all", "fluency_budget": FLUENCY_BUDGET, "baseline_perplexity": base_ppl,
        "judge": judge_report(judge), "seconds": round(time.perf_counter() - start, 1),
        "model_id": vectors.provenance.get("model_id"),
        "success": "judge P(concept) rises over the unsteered continuation and the concept "
                   "is the judge's top concept",
    }
    return SteerEvaluation(rows=tuple(rows), samples=tuple(samples),
                           baseline=tuple(baseline_samples), settings=settings)


def _aggregate(concept: str, mode: str, strength: float, group: Sequence[Sample],
               base: Sequence[Sample], base_ppl: float) -> Row:
    rise = [s.proba > b.proba for s, b in zip(group, base, strict=True)]
    top = [s.top == concept for s in group]
    success = [r and t for r, t in zip(rise, top, strict=True)]
    ppl = float(np.nanmedian([s.perplexity for s in group]))
    return Row(
        concept=concept, mode=mode, strength=strength,
        success=float(np.mean(success)), rise=float(np.mean(rise)), top=float(np.mean(top)),
        d_proba=float(np.mean([s.proba - b.proba for s, b in zip(group, base, strict=True)])),
        d_readout=float(np.mean([s.readout - b.readout for s, b in zip(group, base,
                                                                        strict=True)])),
        perplexity=ppl, repetition=float(np.mean([s.repetition for s in group])),
        fluent=bool(ppl <= FLUENCY_BUDGET * base_ppl),
    )


def progress_printer(line: str) -> None:
    """Print a progress line to stderr."""
    print(line, file=sys.stderr, flush=True)
