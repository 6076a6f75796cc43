"""`amygdala circuits RUN_DIR --concept C`: the neurons and heads behind a concept, tested."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from amygdala.cli._common import add_device_options

NAME = "circuits"
HELP = ("find the MLP neurons and attention heads that write a concept at a read layer, "
        "then ablate/enhance them against random components")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments."""
    parser.add_argument("run_dir", type=Path, help="a run directory from `amygdala train`")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--concept", help="the concept whose circuit to find")
    which.add_argument("--all", action="store_true", help="every concept of the run")
    parser.add_argument("--layer", type=int, default=None,
                        help="read layer (default: the recommended layer of the run's own "
                             "method in RUN_DIR/evaluation.json, else the run's layer nearest "
                             "2/3 of the depth; what was used is printed and recorded)")
    parser.add_argument("--procedure", choices=("crossfit", "in-sample", "both"),
                        default="crossfit",
                        help="crossfit (default): rank on some scenarios, ablate on the others; "
                             "in-sample: the old test on the pairs the ranking was fit on; "
                             "both: run the two for comparison")
    parser.add_argument("--folds", type=int, default=2, help="cross-fitting folds (default 2)")
    parser.add_argument("--selections", type=int, default=5,
                        help="bootstrap re-selections per k and fold (default 5)")
    parser.add_argument("--k", type=_ints, default=(10, 50, 200),
                        help="neuron counts to ablate (default 10,50,200)")
    parser.add_argument("--k-heads", type=_ints, default=(1, 5, 20),
                        help="head counts to ablate (default 1,5,20)")
    parser.add_argument("--draws", type=int, default=5, help="random draws per k (default 5)")
    parser.add_argument("--scales", type=_floats, default=(2.0, 4.0),
                        help="enhancement factors for the largest k (default 2,4)")
    parser.add_argument("--heads", choices=("ablation", "direct"), default="ablation",
                        help="score heads by one-at-a-time ablation (default; one forward "
                             "pass per head and text) or by their direct path only (fast)")
    parser.add_argument("--rank-heads-by", choices=("mean", "zero"), default="mean",
                        help="with --heads ablation: rank by mean (default) or zero ablation")
    parser.add_argument("--max-scenarios", type=int, default=None,
                        help="use only the first N scenarios of each concept (faster)")
    parser.add_argument("--no-specificity", action="store_true",
                        help="skip the other concepts' projections (fewer texts)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="corpus root (default: the one recorded in the run)")
    add_device_options(parser)
    parser.add_argument("--backend", default=None, choices=("torch", "transformer_lens"),
                        help="backend (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per forward pass")


def default_layer(run_dir: Path, method: str, layers: tuple[int, ...],
                  n_layers: int) -> tuple[int, str]:
    """The read layer for ``method`` and a sentence saying where it came from.

    The run's own method only: ``recommended_layer[method]`` of
    ``run_dir/evaluation.json``, else its ``best[method]["layer"]``; another method's
    layer is never taken. Otherwise the run's layer nearest 2/3 of the depth.
    """
    path = run_dir / "evaluation.json"
    why = f"{path} is missing"
    if path.is_file():
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            data, why = {}, f"{path} is not valid JSON ({exc})"
        else:
            why = f"{path} has no layer for method {method!r}"
        candidates = [
            (data.get("recommended_layer", {}).get(method),
             f"recommended_layer[{method!r}] of {path}"),
            ((data.get("best", {}).get(method) or {}).get("layer"),
             f"best[{method!r}] of {path}"),
        ]
        for layer, source in candidates:
            if isinstance(layer, int) and layer in layers:
                return layer, source
            if isinstance(layer, int):
                why = f"{source} is layer {layer}, which the vectors lack"
    target = (2 * n_layers) // 3
    layer = min(layers, key=lambda x: abs(x - target))
    return layer, f"the run's layer nearest 2/3 of the depth ({why})"


def run(args: argparse.Namespace) -> int:
    """Find, test and save circuits; print a summary table."""
    from amygdala._types import Pooling
    from amygdala.corpus._model import Corpus
    from amygdala.diagnose._circuit_experiments import (
        circuit_experiments,
        crossfit_experiments,
        layer_activations,
        render_crossfit,
        render_summary,
    )
    from amygdala.diagnose._circuits import find_circuit, overlap_matrix
    from amygdala.errors import CorpusError, VectorFileError
    from amygdala.store._store import write_atomic
    from amygdala.vectors._set import SteeringVectorSet
    from amygdala.vectors._train import TrainConfig, open_session

    run_dir: Path = args.run_dir
    vectors = SteeringVectorSet.load(run_dir)
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise VectorFileError(f"{run_json} is missing; circuits need a run from `amygdala train`")
    config: dict[str, Any] = json.loads(run_json.read_text())["config"]
    pooling = Pooling.parse(config.get("pooling", "mean_skip2"))
    corpus_path: Path = args.corpus if args.corpus is not None else Path(
        str(vectors.provenance.get("corpus_root", "")))
    if not ((corpus_path / "paired").is_dir() or
            (corpus_path.name == "paired" and corpus_path.is_dir())):
        raise CorpusError(
            f"no corpus at {str(corpus_path)!r} (the run records "
            f"{vectors.provenance.get('corpus_root')!r}, relative to where it was trained); "
            "pass --corpus PATH, the directory holding paired/")
    corpus = Corpus.load(corpus_path)
    session = open_session(TrainConfig(
        model=config["model"], backend=args.backend or config.get("backend", "torch"),
        pooling=pooling, store=None if config.get("store") is None else Path(config["store"]),
        store_dtype=config.get("store_dtype", "float32"), device=args.device,
        dtype=args.dtype or config.get("dtype", "float32")))
    dims = session.backend.dims
    if args.layer is not None:
        layer, layer_source = args.layer, "--layer"
    else:
        layer, layer_source = default_layer(run_dir, vectors.method, vectors.layers,
                                            dims.n_layers)
    concepts = ([c for c in vectors.concepts if c in corpus.paired_concepts] if args.all
                else [args.concept])
    in_sample = args.procedure in ("in-sample", "both")
    crossfit = args.procedure in ("crossfit", "both")
    print(f"read site resid_post.{layer} (from {layer_source}); heads by {args.heads}; "
          f"k={list(args.k)}, k_heads={list(args.k_heads)}, {args.draws} random draws; "
          f"procedure {args.procedure}", file=sys.stderr)
    data = (layer_activations(session.backend, corpus, layer, store=session.store,
                              batch_size=args.batch_size) if crossfit else None)
    circuits, results, held_out = [], [], []
    for concept in concepts:
        start = time.perf_counter()
        circuit = find_circuit(session.backend, vectors, corpus, concept, layer=layer,
                               max_scenarios=args.max_scenarios, store=session.store,
                               head_method=args.heads, rank_heads_by=args.rank_heads_by,
                               batch_size=args.batch_size,
                               size_neurons=50, size_heads=5, keep_neurons=max((1000, *args.k)))
        circuit = attrs.evolve(circuit, params={**circuit.params, "layer_source": layer_source})
        extra: dict[str, Any] = {"layer_source": layer_source}
        if in_sample:
            result = circuit_experiments(
                session.backend, circuit, vectors, corpus, k_neurons=args.k,
                k_heads=args.k_heads, draws=args.draws, scales=args.scales,
                specificity=not args.no_specificity, seed=args.seed,
                pooling=session.store.pooling, batch_size=args.batch_size)
            extra["experiments"] = result.to_json()
            results.append(result)
        if crossfit:
            fitted = crossfit_experiments(
                session.backend, vectors, corpus, concept, layer=layer, k_neurons=args.k,
                k_heads=args.k_heads, draws=args.draws, selections=args.selections,
                scales=args.scales, folds=args.folds, max_scenarios=args.max_scenarios,
                head_method=args.heads, rank_heads_by=args.rank_heads_by,
                store=session.store, data=data, seed=args.seed, batch_size=args.batch_size)
            extra["crossfit"] = fitted.to_json()
            held_out.append(fitted)
        seconds = time.perf_counter() - start
        extra["seconds"] = round(seconds, 1)
        path = circuit.save(run_dir / "circuits" / f"{concept}.json", extra=extra)
        print(f"{concept}: {seconds:.0f}s -> {path}", file=sys.stderr)
        circuits.append(circuit)
    k_neuron = 50 if 50 in args.k else max(args.k, default=50)
    k_head = 5 if 5 in args.k_heads else max(args.k_heads, default=5)
    if results:
        print("in-sample (ranked and ablated on the same pairs):")
        print(render_summary(results, k_neuron=k_neuron, k_head=k_head))
    if held_out:
        print("cross-fitted (ranked on some scenarios, ablated on the others):")
        print(render_crossfit(held_out, k_neuron=k_neuron, k_head=k_head))
    total = (sum(float(r.params["seconds"]) for r in results)
             + sum(float(r.params["seconds"]) for r in held_out)
             + sum(float(c.params["seconds"]) for c in circuits))
    print(f"{len(circuits)} concepts in {total:.0f}s ({total / max(len(circuits), 1):.0f}s per "
          "concept)")
    summary: dict[str, Any] = {"concepts": concepts, "layer": layer,
                               "layer_source": layer_source, "procedure": args.procedure,
                               "k_neurons": k_neuron, "k_heads": k_head}
    for name, rows in (("in_sample", results), ("crossfit", held_out)):
        if rows:
            summary[name] = {kind: {r.concept: bool(e is not None and e.passes)
                                    for r in rows
                                    for e in [r.effect(kind, k)]}  # type: ignore[arg-type]
                             for kind, k in (("neurons", k_neuron), ("heads", k_head))}
    if results:
        summary["in_sample_ratio_rule"] = {
            kind: {r.concept: bool(e is not None and e.passes_ratio)
                   for r in results for e in [r.effect(kind, k)]}  # type: ignore[arg-type]
            for kind, k in (("neurons", k_neuron), ("heads", k_head))}
    write_atomic(run_dir / "circuits" / "summary.json",
                 (json.dumps(summary, indent=1) + "\n").encode())
    if len(circuits) > 1:
        overlap = {kind: overlap_matrix(circuits, component=kind).round(4).tolist()
                   for kind in ("neurons", "heads")}
        record = {"concepts": concepts, "layer": layer, "layer_source": layer_source,
                  "jaccard": overlap}
        write_atomic(run_dir / "circuits" / "overlap.json",
                     (json.dumps(record, indent=1) + "\n").encode())
    return 0
