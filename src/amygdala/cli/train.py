"""`amygdala train CORPUS --out RUN_DIR`: the main job."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from amygdala.cli._common import add_model_options, parse_layers
from amygdala.vectors._extract import METHODS, NORMALISATIONS
from amygdala.vectors._gguf import DEFAULT_GGUF_BAND, DEFAULT_GGUF_STRENGTH

NAME = "train"
HELP = "train steering vectors on a corpus and report held-out accuracy (and quality)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments."""
    parser.add_argument("corpus", type=Path, help="corpus root or paired/ directory")
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    add_model_options(parser)
    parser.add_argument("--method", default="probe", choices=METHODS)
    parser.add_argument("--normalisation", default="standardise", choices=NORMALISATIONS)
    parser.add_argument("--layers", default=None, help="'all' (default), '10-20' or '5,10,15'")
    parser.add_argument("--shrinkage", type=float, default=None, metavar="A",
                        help="probe covariance shrinkage in (0, 1) (default: chosen on inner "
                             "folds of the evaluation among 0.5, 0.1, 0.9; 0.5 with --no-eval)")
    parser.add_argument("--float16", action="store_true", help="store activations as float16")
    parser.add_argument("--quality-report", action="store_true",
                        help="write quality.json and print the triage summary")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the nested leave-one-scenario-out evaluation")
    parser.add_argument("--export-readout", action="store_true",
                        help="also write readout.safetensors + readout.json")
    parser.add_argument("--export-gguf", metavar="CONCEPT", action="append", default=[],
                        help="also write a llama.cpp control vector for CONCEPT (repeatable)")
    parser.add_argument("--gguf-layers", default=None, metavar="LAYERS",
                        help="layers of the control vector, '10-20' or '13,15' (default: the "
                             f"{DEFAULT_GGUF_BAND} layers around the steering layer; never 0)")
    parser.add_argument("--gguf-strength", type=float, default=DEFAULT_GGUF_STRENGTH,
                        metavar="ALPHA",
                        help="per-layer strength in units of the layer's residual norm "
                             f"(default {DEFAULT_GGUF_STRENGTH})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, export, report (`amygdala.pipeline.train`)."""
    from amygdala._types import Pooling
    from amygdala.corpus._model import Corpus
    from amygdala.pipeline import RunOptions, train
    from amygdala.vectors._run import RunDir
    from amygdala.vectors._train import TrainConfig, open_session

    start = time.perf_counter()
    corpus = Corpus.load(args.corpus)
    config = TrainConfig(
        model=args.model, backend=args.backend, method=args.method,
        normalisation=args.normalisation, layers=parse_layers(args.layers), pooling=Pooling(),
        batch_size=args.batch_size, store=args.store, device=args.device,
        dtype=args.dtype or "float32",
        store_dtype="float16" if args.float16 else "float32", shrinkage=args.shrinkage,
    )
    options = RunOptions(evaluate=not args.no_eval, quality=args.quality_report,
                         export_readout=args.export_readout, gguf=args.export_gguf,
                         gguf_layers=parse_layers(args.gguf_layers),
                         gguf_strength=args.gguf_strength)
    print(f"corpus {corpus.root}: {len(corpus.scenarios)} scenarios, {len(corpus.stories)} "
          f"stories, {len(corpus.neutral)} neutral texts, {len(corpus.concepts)} concepts")
    session = open_session(config)
    dims = session.backend.dims
    print(f"model {session.loaded.model_id} ({session.loaded.fingerprint}): {dims.n_layers} "
          f"layers, d_model {dims.d_model}; backend {config.backend}; store {session.store.path}")
    result = train(corpus, config=config, out=args.out, options=options, session=session,
                   progress=not args.quiet and sys.stderr.isatty())
    run = RunDir(args.out)
    vectors = result.vectors
    print(f"captured {result.captured} new texts; {len(vectors.concepts)} concepts x "
          f"{len(vectors.layers)} layers, method {vectors.method} ({vectors.normalisation}); "
          f"wrote {run.vectors_arrays}")
    for note in result.notes:
        print(note)
    if result.evaluation is not None:
        evaluation = result.evaluation
        detail = evaluation.results[config.method]
        paired, read = detail.accuracy["paired"], detail.accuracy["readout"]
        bow = evaluation.baselines
        print(f"held-out accuracy (nested leave one scenario out, {paired.n_items} variants, "
              f"95% interval over scenarios): paired {paired.text()} (bag-of-words "
              f"{bow['paired'].value:.3f}, chance {paired.chance:.3f}); read alone "
              f"{read.text()} (bag-of-words {bow['readout'].value:.3f}, chance "
              f"{read.chance:.3f}); recommended layer {evaluation.best_layer(config.method)[0]}")
    for path in result.gguf.values():
        print(f"wrote {path}: direction.L for layers {[x for x in result.gguf_layers if x]}, "
              f"strength {args.gguf_strength} x residual norm per layer")
    if result.readout is not None:
        print(f"wrote {run.readout_arrays} and {run.readout_meta.name} (neutral statistics, "
              "recommended layer, shared component)")
    if result.quality is not None:
        print()
        print(result.quality.render())
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
