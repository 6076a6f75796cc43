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
    from amygdala.backends._registry import BACKENDS

    parser.add_argument("run_dir", type=Path, help="a run directory from `amygdala train`")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--concept", help="the concept whose circuit to find")
    which.add_argument("--all", action="store_true", help="every concept of the run")
    parser.add_argument("--layer", type=int, default=None,
                        help="read layer (default: the recommended layer of the run's own "
                             "method in RUN_DIR/evaluation.json, else the middle of the run's "
                             "layers; what was used is printed and recorded)")
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
    parser.add_argument("--backend", default=None, choices=sorted(BACKENDS),
                        help="backend (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per forward pass")


def run(args: argparse.Namespace) -> int:
    """Find, test and save circuits; print a summary table."""
    from amygdala._io import write_atomic
    from amygdala.diagnose._circuit_experiments import (
        circuit_experiments,
        crossfit_experiments,
        layer_activations,
        render_crossfit,
        render_summary,
    )
    from amygdala.diagnose._circuits import find_circuit, overlap_matrix
    from amygdala.errors import CorpusError
    from amygdala.vectors._run import RunDir

    run_dir = RunDir(args.run_dir)
    vectors = run_dir.vectors()
    found = run_dir.corpus(args.corpus)
    if not found.corpus.scenarios:
        raise CorpusError(
            f"the corpus at {str(found.root)!r} has no paired scenarios; circuits compare "
            "each scenario's variants; pass --corpus PATH, the directory holding paired/")
    if found.changed:
        print(f"amygdala circuits: warning: {found.changed}", file=sys.stderr)
    corpus = found.corpus
    session = run_dir.session(backend_name=args.backend, device=args.device, dtype=args.dtype)
    if args.layer is not None:
        layer, layer_source = args.layer, "--layer"
    else:
        choice = run_dir.best_layer(vectors)
        layer, layer_source = choice.layer, f"{choice.reason}, {run_dir.evaluation}"
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
        path = circuit.save(run_dir.circuits, extra=extra)
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
    write_atomic(run_dir.circuit_summary,
                 (json.dumps(summary, indent=1) + "\n").encode())
    if len(circuits) > 1:
        overlap = {kind: overlap_matrix(circuits, component=kind).round(4).tolist()
                   for kind in ("neurons", "heads")}
        record = {"concepts": concepts, "layer": layer, "layer_source": layer_source,
                  "jaccard": overlap}
        write_atomic(run_dir.circuit_overlap,
                     (json.dumps(record, indent=1) + "\n").encode())
    return 0
