"""Run amygdala's benchmarks; each writes ``benchmarks/results/<name>.json``.

Usage::

    python benchmarks/run.py                       # every benchmark
    python benchmarks/run.py --only capture_overhead --quick
    python benchmarks/run.py --list

A benchmark is a function ``(Options) -> dict`` registered in `BENCHMARKS` with
the `benchmark` decorator. It returns JSON-ready results and must include a
``"summary"`` string (one line, printed after the run); it may include
``"meets_target"`` (a bool, or a dict of bools), which ``--check`` turns into the
exit status. The runner adds the machine description, the options and a
timestamp, and writes the file atomically, so an interrupted run never leaves a
half-written result that looks complete.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class Options:
    """What every benchmark is told about the run.

    Attributes:
        quick: a short run (fewer repetitions, for CI and smoke tests).
        repeats: timed repetitions after the warm-up (5, or 2 with ``--quick``).
    """

    quick: bool
    repeats: int


Benchmark = Callable[[Options], dict[str, Any]]

# name -> function; the function's docstring's first line is its description.
BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str) -> Callable[[Benchmark], Benchmark]:
    """Register a benchmark function under ``name``."""

    def register(fn: Benchmark) -> Benchmark:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} is registered twice")
        BENCHMARKS[name] = fn
        return fn

    return register


def describe(fn: Benchmark) -> str:
    """Return the first line of a benchmark's docstring."""
    return (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""


# ----- helpers shared by benchmarks -------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Describe the machine and the library versions a result was measured with."""
    import torch

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity(0)) if affinity else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "transformer_lens": version("transformer-lens"),
        "amygdala": version("amygdala"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def log(message: str) -> None:
    """Print a progress line to stderr (results go to stdout and the JSON files)."""
    print(message, file=sys.stderr, flush=True)


def timed(fn: Callable[[], object]) -> float:
    """Return the wall-clock seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# A fixed vocabulary for synthetic text: ordinary words in simple clause
# patterns, so token statistics look like English prose without shipping data.
_WORDS: dict[str, tuple[str, ...]] = {
    "det": ("the", "a", "her", "his", "their", "one", "that", "every", "our", "this"),
    "adj": ("quiet", "old", "small", "bright", "cold", "heavy", "narrow", "warm", "late",
            "green", "empty", "careful", "open", "distant", "wet", "tired", "new", "plain"),
    "noun": ("kettle", "letter", "window", "street", "garden", "teacher", "river", "door",
             "kitchen", "train", "bicycle", "neighbour", "notebook", "bridge", "morning",
             "station", "coat", "table", "lamp", "field", "market", "brother", "sister",
             "ticket", "corner", "village", "meeting", "storm", "road", "cup", "shelf",
             "doctor", "friend", "dog", "roof", "report", "key", "bag", "bench", "song"),
    "verb": ("opened", "carried", "watched", "found", "moved", "closed", "checked",
             "painted", "crossed", "fixed", "followed", "passed", "lifted", "cleaned",
             "counted", "packed", "visited", "pushed", "read", "left", "answered", "turned"),
    "prep": ("near", "behind", "under", "across", "beside", "after", "before", "inside",
             "along", "past", "through", "around"),
    "adv": ("slowly", "again", "later", "quietly", "twice", "early", "at once", "carefully",
            "without a word", "as usual", "in the end", "by noon"),
    "conj": ("and", "but", "then", "while", "because", "so"),
}


def _noun_phrase(rng: random.Random) -> list[str]:
    words = [rng.choice(_WORDS["det"])]
    if rng.random() < 0.5:
        words.append(rng.choice(_WORDS["adj"]))
    words.append(rng.choice(_WORDS["noun"]))
    return words


def _sentence(rng: random.Random) -> str:
    words = [*_noun_phrase(rng), rng.choice(_WORDS["verb"]), *_noun_phrase(rng)]
    if rng.random() < 0.6:
        words += [rng.choice(_WORDS["prep"]), *_noun_phrase(rng)]
    if rng.random() < 0.4:
        words.append(rng.choice(_WORDS["adv"]))
    if rng.random() < 0.3:
        words += [rng.choice(_WORDS["conj"]), *_noun_phrase(rng), rng.choice(_WORDS["verb"]),
                  *_noun_phrase(rng)]
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def make_texts(tokenizer: Any, n: int, tokens: int, *, seed: int = 0) -> list[str]:
    """Build ``n`` deterministic English-like texts of about ``tokens`` tokens each.

    Lengths vary by +-10% so that length-sorted batching has something to sort.
    """
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        target = rng.randint(int(tokens * 0.9), int(tokens * 1.1))
        sentences: list[str] = []
        while not sentences or len(tokenizer(" ".join(sentences))["input_ids"]) < target:
            sentences.append(_sentence(rng))
        texts.append(" ".join(sentences))
    return texts


# ----- benchmarks -------------------------------------------------------------------------

CAPTURE_TARGETS = {"torch": 1.10, "transformer_lens": 1.5}


@benchmark("capture_overhead")
def capture_overhead(options: Options) -> dict[str, Any]:
    """Time of capturing resid_post at every layer, relative to a plain forward pass."""
    import torch

    from amygdala._types import Pooling, Site
    from amygdala.backends._loading import load_model
    from amygdala.backends._registry import get_backend

    n_texts, n_tokens, batch_size = 64, 100, 16
    # The baseline runs on its own, never-wrapped model: the TransformerLens
    # bridge replaces the modules of the model it wraps.
    plain = load_model()
    texts = make_texts(plain.tokenizer, n_texts, n_tokens, seed=0)
    sites = [Site(layer=layer) for layer in range(plain.dims.n_layers)]
    pooling = Pooling()
    results: dict[str, Any] = {}
    real_tokens = padded_tokens = 0
    for name, target in CAPTURE_TARGETS.items():
        backend = get_backend(name, load_model())
        batches = list(backend.iter_batches(texts, batch_size))
        real_tokens = sum(int(mask.sum()) for _, _, mask in batches)
        padded_tokens = sum(mask.numel() for _, _, mask in batches)

        def forward(ids: torch.Tensor, mask: torch.Tensor) -> None:
            with torch.inference_mode():
                plain.model(input_ids=ids, attention_mask=mask, use_cache=False)

        def capture(group: list[str], backend: Any = backend) -> None:
            # One batch's texts form exactly that batch again inside capture.
            backend.capture(group, sites, pooling, batch_size=batch_size)

        def one_pass(rep: int, batches: Any = batches, capture: Any = capture) -> list[float]:
            # Time plain and capture batch by batch, alternating which goes first,
            # so that load from other processes hits both sides alike.
            totals = [0.0, 0.0, 0.0, 0.0]  # plain wall, capture wall, plain cpu, capture cpu
            for b, (idx, ids, mask) in enumerate(batches):
                jobs = [(0, functools.partial(forward, ids, mask)),
                        (1, functools.partial(capture, [texts[i] for i in idx]))]
                for side, job in jobs if (rep + b) % 2 == 0 else jobs[::-1]:
                    cpu = time.process_time()
                    totals[side] += timed(job)
                    totals[side + 2] += time.process_time() - cpu
            return totals

        # Warm-up: first calls allocate and initialise lazily.
        log(f"capture_overhead: {name}: warm-up")
        forward(*batches[0][1:])
        capture([texts[i] for i in batches[0][0]])
        if not options.quick:
            one_pass(1)
        runs = []
        for rep in range(options.repeats):
            runs.append(one_pass(rep))
            p, c = runs[-1][:2]
            log(f"capture_overhead: {name}: run {rep + 1}/{options.repeats}: plain {p:.2f} s, "
                f"capture {c:.2f} s ({c / p:.3f}x)")
        plain_s, capture_s = [r[0] for r in runs], [r[1] for r in runs]
        ratios = [c / p for p, c in zip(plain_s, capture_s, strict=True)]
        cpu_ratios = [r[3] / r[2] for r in runs]
        ratio = statistics.median(ratios)
        plain_median, capture_median = statistics.median(plain_s), statistics.median(capture_s)
        results[name] = {
            "ratio": ratio,
            "ratios": ratios,
            "cpu_ratio": statistics.median(cpu_ratios),
            "target": target,
            "meets_target": ratio <= target,
            "plain_s": plain_median,
            "capture_s": capture_median,
            "plain_tokens_per_s": real_tokens / plain_median,
            "capture_tokens_per_s": real_tokens / capture_median,
            "plain_runs_s": plain_s,
            "capture_runs_s": capture_s,
            "plain_cpu_runs_s": [r[2] for r in runs],
            "capture_cpu_runs_s": [r[3] for r in runs],
        }
        del backend, capture, one_pass
        gc.collect()
    parts = [
        f"{name} {r['ratio']:.3f}x (target <= {r['target']}, "
        f"{'ok' if r['meets_target'] else 'MISSED'}; {r['capture_tokens_per_s']:.0f} tok/s)"
        for name, r in results.items()
    ]
    plain_tps = statistics.median(r["plain_tokens_per_s"] for r in results.values())
    return {
        "params": {
            "model": plain.model_id, "fingerprint": plain.fingerprint, "texts": n_texts,
            "tokens_per_text": n_tokens, "real_tokens": real_tokens,
            "padded_tokens": padded_tokens, "batch_size": batch_size,
            "sites": f"resid_post x {len(sites)} layers", "pooling": pooling.key,
            "repeats": options.repeats,
        },
        "backends": results,
        "meets_target": {name: r["meets_target"] for name, r in results.items()},
        "summary": "; ".join(parts) + f"; plain forward {plain_tps:.0f} tok/s",
    }


@benchmark("quality_report")
def quality_report(options: Options) -> dict[str, Any]:
    """Time of compute_quality on 24 concepts x 30 layers at SmolLM2 sizes (synthetic)."""
    import numpy as np

    from amygdala.corpus._model import Corpus, Scenario, Text
    from amygdala.diagnose._quality import compute_quality
    from amygdala.vectors._extract import ExtractionInput, extract, reference_stats
    from amygdala.vectors._set import SteeringVectorSet

    target_s = 5.0  # the budget for 24 concepts x 30 layers on 2 cores
    rng = np.random.default_rng(0)
    n_layers, d_model, d_mlp, n_heads, n_concepts = 30, 576, 1536, 9, 24
    concepts = [f"c{i:02d}" for i in range(n_concepts)]
    rows: list[Any] = []
    ids: list[str] = []
    scenarios = []
    for s in range(34):  # the shipped corpus: 34 scenarios, ~7 concepts each, 48 neutral
        base = Text(id=f"paired/s{s}/baseline.txt", text="b", role="baseline", scenario=f"s{s}")
        ids.append(base.id)
        rows.append(rng.normal(size=(n_layers, d_model)))
        variants = {}
        for c in rng.choice(concepts, size=7, replace=False):
            text = Text(id=f"paired/s{s}/{c}.txt", text="v", role="variant", concept=str(c),
                        scenario=f"s{s}")
            variants[str(c)] = text
            ids.append(text.id)
            rows.append(rows[-1] + rng.normal(size=(n_layers, d_model)))
        scenarios.append(Scenario(slug=f"s{s}", baseline=base, variants=variants))
    neutral = [Text(id=f"neutral/{i}.txt", text="n", role="neutral") for i in range(48)]
    ids += [t.id for t in neutral]
    rows += [rng.normal(size=(n_layers, d_model)) for _ in neutral]
    corpus = Corpus(root="synthetic", scenarios=scenarios, neutral=neutral)
    data = ExtractionInput(x=np.stack(rows).astype(np.float32), ids=tuple(ids),
                           layers=tuple(range(n_layers)))
    raw = extract(data, corpus)
    mean, std = reference_stats(data, corpus)
    vectors = SteeringVectorSet(
        concepts=raw.concepts, layers=range(n_layers), directions=raw.directions,
        raw_norm=raw.raw_norm, resid_norm=np.ones(n_layers), mean=mean, std=std,
        method="paired", normalisation="standardise")
    w_down = {x: rng.normal(size=(d_mlp, d_model)).astype(np.float32) for x in range(n_layers)}
    heads = {x: rng.normal(size=(n_concepts, n_heads, d_model)) for x in range(n_layers)}

    def run() -> None:
        compute_quality(vectors, data, corpus, w_down=w_down, head_writes=heads)

    run()  # warm-up
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(options.repeats):
        start_cpu = time.process_time()
        wall.append(timed(run))
        cpu.append(time.process_time() - start_cpu)
    median = statistics.median(wall)
    return {
        "params": {"concepts": n_concepts, "layers": n_layers, "d_model": d_model,
                   "d_mlp": d_mlp, "heads": n_heads, "scenarios": len(scenarios),
                   "repeats": options.repeats},
        "runs_s": wall, "cpu_runs_s": cpu, "median_s": median, "target_s": target_s,
        "meets_target": median <= target_s,
        "summary": f"compute_quality 24 concepts x 30 layers: {median:.2f} s median "
                   f"(target <= {target_s} s, "
                   f"{'ok' if median <= target_s else 'MISSED'}; "
                   f"{statistics.median(cpu):.2f} s CPU)",
    }


# ----- runner -----------------------------------------------------------------------------

def _run_train(args: list[str]) -> tuple[float, int, str]:
    """Run `amygdala train` in a child process; return seconds, peak RSS (bytes), stdout."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "amygdala.cli", "train", *args],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far; the first run sets it.
    return seconds, max(peak_kib, before) * 1024, done.stdout


@benchmark("train_end_to_end")
def train_end_to_end(options: Options) -> dict[str, Any]:
    """The main job on the shipped corpus: cold (empty store) and warm, time and peak memory."""
    from amygdala.backends._loading import load_model
    from amygdala.corpus._model import Corpus

    load_model()  # the de-quantised model cache is not what this measures
    root = Path(__file__).resolve().parents[1]
    corpus = Corpus.load(root / "paired")
    tokenizer = load_model().tokenizer
    n_tokens = sum(len(tokenizer(t.text)["input_ids"]) for t in corpus.texts)
    with tempfile.TemporaryDirectory() as scratch:
        store, out = Path(scratch) / "store", Path(scratch) / "run"
        args = [str(root / "paired"), "--out", str(out), "--store", str(store), "--quiet"]
        log("train_end_to_end: cold run (captures the whole corpus)")
        cold_s, cold_rss, cold_out = _run_train(args)
        store_bytes = sum(p.stat().st_size for p in store.rglob("*.safetensors"))
        log("train_end_to_end: warm run (store reused)")
        warm_s, _, warm_out = _run_train(args)
    n_texts = len(corpus.texts)
    accuracy_line = next((line for line in cold_out.splitlines() if "held-out" in line), "")
    return {
        "params": {"corpus": "paired (+ stories, neutral)", "texts": n_texts,
                   "tokens": n_tokens, "layers": 30, "sites": "resid_post", "dtype": "float32"},
        "cold_s": cold_s,
        "warm_s": warm_s,
        "cold_tokens_per_s": n_tokens / cold_s,
        "peak_rss_bytes": cold_rss,
        "store_bytes": store_bytes,
        "store_bytes_per_1000_texts": store_bytes / n_texts * 1000,
        "warm_captured_nothing": "captured 0 new texts" in warm_out,
        "held_out": accuracy_line.strip(),
        "targets": {"cold_s": 900, "warm_s": 120},
        "meets_target": {"cold": cold_s <= 900, "warm": warm_s <= 120},
        "summary": (f"cold {cold_s:.0f} s ({n_tokens / cold_s:.0f} tok/s end to end), warm "
                    f"{warm_s:.0f} s, peak RSS {cold_rss / 2**30:.2f} GiB, store "
                    f"{store_bytes / n_texts * 1000 / 2**20:.1f} MiB per 1000 texts"),
    }


@benchmark("capture_throughput")
def capture_throughput(options: Options) -> dict[str, Any]:
    """Cold main job (capture + extract + residual norm) vs the plain forward pass, tokens/s."""
    import attrs
    import torch

    from amygdala.corpus._model import Corpus
    from amygdala.store._store import ActivationStore
    from amygdala.vectors._train import TrainConfig, open_session, train

    target = 0.8
    root = Path(__file__).resolve().parents[1]
    corpus = Corpus.load(root / "paired")
    if options.quick:  # six scenarios and eight neutral texts: minutes, not tens of them
        corpus = attrs.evolve(corpus, scenarios=corpus.scenarios[:6], stories=(),
                              neutral=corpus.neutral[:8])
    texts = [t.text for t in corpus.texts]
    reps = 1 if options.quick else min(options.repeats, 3)
    with tempfile.TemporaryDirectory() as scratch:
        base = TrainConfig(store=Path(scratch) / "store-0")
        session = open_session(base)  # the model load is not what this measures
        model = session.loaded.model
        # The plain side: the same length-sorted batches of the same texts, tokenised
        # beforehand (tokenising is part of what the main job pays, not the forward pass).
        batches = list(session.backend.iter_batches(texts, base.batch_size))
        n_tokens = sum(int(mask.sum()) for _, _, mask in batches)
        calls = [0]

        def count(*_: Any) -> None:
            calls[0] += 1

        def forward_pass() -> None:
            with torch.inference_mode():
                for _, ids, mask in batches:
                    model(input_ids=ids, attention_mask=mask, use_cache=False)

        def measured(fn: Callable[[], object]) -> tuple[float, float]:
            cpu = time.process_time()
            wall = timed(fn)
            return wall, time.process_time() - cpu

        log("capture_throughput: warm-up")
        with torch.inference_mode():
            model(input_ids=batches[0][1], attention_mask=batches[0][2], use_cache=False)
        forwards = [measured(forward_pass)]
        colds: list[tuple[float, float]] = []
        for rep in range(reps):
            # A fresh, empty store on the same loaded model.
            config = TrainConfig(store=Path(scratch) / f"store-{rep}")
            session = attrs.evolve(session, store=ActivationStore(
                config.store, fingerprint=session.loaded.fingerprint, pooling=config.pooling,
                dtype=config.store_dtype))
            colds.append(measured(lambda c=config, s=session: train(corpus, config=c, session=s)))
            forwards.append(measured(forward_pass))
            log(f"capture_throughput: run {rep + 1}/{reps}: cold main job {colds[-1][0]:.1f} s, "
                f"forward {forwards[-2][0]:.1f} s / {forwards[-1][0]:.1f} s")
        # Warm: the store holds everything; count forward calls of the model.
        handle = model.register_forward_pre_hook(count)
        try:
            warm_wall, warm_cpu = measured(
                lambda c=config, s=session: train(corpus, config=c, session=s))
        finally:
            handle.remove()
    # Each cold run is compared with the mean of the forward passes just before and after.
    ratios = [(forwards[i][0] + forwards[i + 1][0]) / 2 / colds[i][0] for i in range(reps)]
    cpu_ratios = [(forwards[i][1] + forwards[i + 1][1]) / 2 / colds[i][1] for i in range(reps)]
    ratio = statistics.median(ratios)
    forward_s = statistics.median(f[0] for f in forwards)
    cold_s = statistics.median(c[0] for c in colds)
    load = os.getloadavg()
    return {
        "params": {"corpus": "shipped (paired + stories + neutral)"
                             + (", 6 scenarios + 8 neutral (--quick)" if options.quick else ""),
                   "texts": len(texts),
                   "tokens": n_tokens, "layers": session.backend.dims.n_layers,
                   "sites": "resid_post", "pooling": base.pooling.key,
                   "batch_size": base.batch_size, "store_dtype": base.store_dtype,
                   "repeats": reps},
        "ratio": ratio, "ratios": ratios, "cpu_ratio": statistics.median(cpu_ratios),
        "cpu_ratios": cpu_ratios,
        "forward_tokens_per_s": n_tokens / forward_s,
        "cold_tokens_per_s": n_tokens / cold_s,
        "forward_runs_s": [f[0] for f in forwards], "cold_runs_s": [c[0] for c in colds],
        "forward_cpu_runs_s": [f[1] for f in forwards], "cold_cpu_runs_s": [c[1] for c in colds],
        "warm_s": warm_wall, "warm_cpu_s": warm_cpu, "warm_forward_calls": calls[0],
        "load_average_after": list(load),
        "target": target, "meets_target": ratio >= target,
        "summary": (f"cold main job {n_tokens / cold_s:.0f} tok/s vs forward "
                    f"{n_tokens / forward_s:.0f} tok/s: ratio {ratio:.3f} (target >= {target}, "
                    f"{'ok' if ratio >= target else 'MISSED'}; CPU-time ratio "
                    f"{statistics.median(cpu_ratios):.3f}); warm {warm_wall:.1f} s with "
                    f"{calls[0]} forward calls; load {load[0]:.1f}"),
    }


# The live read-out benchmarks (monitor overhead, server load run) live in live.py.
from live import live_monitor_overhead, live_serve_load  # noqa: E402

benchmark("live_monitor_overhead")(live_monitor_overhead)
benchmark("live_serve_load")(live_serve_load)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; results are for everyone to read
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _all_met(flag: object) -> bool:
    if isinstance(flag, dict):
        return all(_all_met(v) for v in flag.values())
    return flag is not False


def run_one(name: str, options: Options, out_dir: Path) -> dict[str, Any]:
    """Run one benchmark, write its JSON file and return what was written."""
    fn = BENCHMARKS[name]
    started = datetime.datetime.now(datetime.UTC)
    start = time.perf_counter()
    result = fn(options)
    if not isinstance(result.get("summary"), str):
        raise TypeError(f"benchmark {name!r} returned no 'summary' string")
    payload = {
        "name": name,
        "description": describe(fn),
        "started": started.isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - start,
        "options": dataclasses.asdict(options),
        "machine": machine_info(),
        **result,
    }
    write_json_atomic(out_dir / f"{name}.json", payload)
    return payload


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run amygdala's benchmarks; results go to benchmarks/results/<name>.json.")
    parser.add_argument("--only", action="append", metavar="NAME", choices=sorted(BENCHMARKS),
                        help="run only this benchmark (repeatable); choices: %(choices)s")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions (2 instead of 5), for smoke tests")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help="timed repetitions (overrides the --quick default)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help="where the JSON files go (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a benchmark misses its target")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; return the exit status."""
    args = _parse(argv)
    if args.list:
        for name, fn in BENCHMARKS.items():
            print(f"{name:<20} {describe(fn)}")
        return 0
    if args.repeats is not None and args.repeats < 1:
        print("--repeats must be at least 1", file=sys.stderr)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    options = Options(quick=args.quick, repeats=repeats)
    names: Iterable[str] = args.only or list(BENCHMARKS)
    status = 0
    for name in names:
        try:
            payload = run_one(name, options, args.out)
        except Exception:
            traceback.print_exc()
            print(f"{name}: FAILED (no result written)")
            status = 1
            continue
        missed = not _all_met(payload.get("meets_target", True))
        print(f"{name}: {payload['summary']} [{payload['wall_s']:.0f} s"
              f"{', quick' if options.quick else ''}] -> {args.out / (name + '.json')}")
        if missed and args.check:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
