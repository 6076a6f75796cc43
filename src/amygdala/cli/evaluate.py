"""`amygdala evaluate CORPUS`: nested held-out accuracy, baseline-free read-out, transfer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from amygdala.cli._common import add_model_options, parse_layers
from amygdala.vectors._extract import METHODS, NORMALISATIONS

NAME = "evaluate"
HELP = ("nested leave-one-scenario-out accuracy with intervals, the baseline-free read-out "
        "and cross-format transfer for each method, next to bag-of-words")


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments."""
    parser.add_argument("corpus", type=Path, help="corpus root or paired/ directory")
    add_model_options(parser)
    parser.add_argument("--methods", default="paired,paired_centred,unpaired,pca,probe",
                        help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--normalisation", default="standardise", choices=NORMALISATIONS)
    parser.add_argument("--layers", default=None,
                        help="layers to choose among: 'all' (default), '10-20' or '5,10,15'")
    parser.add_argument("--layer", type=int, default=None,
                        help="evaluate this one layer (no layer selection)")
    parser.add_argument("--folds", type=int, default=5,
                        help="scenario groups for the inner layer selection (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of groups, bootstrap, draws")
    parser.add_argument("--bands", default="3,5,9", metavar="WIDTHS",
                        help="widths of the layer bands the read-out may choose on inner "
                             "folds besides single layers (default 3,5,9; 'none': single "
                             "layers only)")
    parser.add_argument("--shrinkage", default=None, metavar="A[,B...]",
                        help="probe shrinkage(s) to choose among on inner folds (default "
                             "0.5,0.1,0.9; one value: fixed)")
    parser.add_argument("--learning-curve", action="store_true",
                        help="also measure accuracy against the number of training scenarios "
                        "(k = 4, 8, 16, 32, 64, all)")
    parser.add_argument("--curve-draws", type=int, default=3,
                        help="random draws per learning-curve size (default 3)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="write the learning curve here (needs `pip install "
                        "'amygdala[plot]'`)")
    parser.add_argument("--transfer", type=Path, default=None, metavar="CORPUS",
                        help="also fit on the whole corpus (layer chosen on it alone) and score "
                        "this independently written corpus, e.g. heldout/")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")


def run(args: argparse.Namespace) -> int:
    """Capture (store-backed) and evaluate."""
    from amygdala.corpus._model import Corpus
    from amygdala.diagnose._evaluate import evaluate
    from amygdala.diagnose._render_eval import write_curve_png
    from amygdala.store._store import write_atomic
    from amygdala.vectors._train import TrainConfig, capture_corpus, open_session

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}",
              file=sys.stderr)
        return 2
    if args.plot is not None and not args.learning_curve:
        print("--plot draws the learning curve: add --learning-curve", file=sys.stderr)
        return 2
    corpus = Corpus.load(args.corpus)
    if "unpaired" in methods and not corpus.stories:
        methods.remove("unpaired")
        print("no stories/ next to the corpus: skipping 'unpaired'", file=sys.stderr)
    config = TrainConfig(model=args.model, backend=args.backend, store=args.store,
                         batch_size=args.batch_size, device=args.device,
                         dtype=args.dtype or "float32")
    session = open_session(config)
    layers = parse_layers(args.layers) or tuple(range(session.backend.dims.n_layers))
    if args.layer is not None and args.layer not in layers:
        layers = tuple(sorted({*layers, args.layer}))
    data, _ = capture_corpus(session, corpus, layers, batch_size=args.batch_size,
                             progress=sys.stderr.isatty())
    tuning: dict[str, Any] = {"bands": _numbers(args.bands, int, "--bands")}
    if args.shrinkage is not None:
        tuning["shrinkages"] = _numbers(args.shrinkage, float, "--shrinkage")
    result = evaluate(data, corpus, methods=methods, normalisation=args.normalisation,
                      layer=args.layer, folds=args.folds, seed=args.seed,
                      curve=args.learning_curve, curve_draws=args.curve_draws, **tuning)
    print(result.render())
    payload = result.to_json()
    if args.transfer is not None:
        payload["transfer"] = _transfer(args, session, corpus, data, methods, layers)
    if args.json is not None:
        write_atomic(args.json, (json.dumps(payload, indent=2) + "\n").encode())
    if args.plot is not None:
        print(f"wrote {write_curve_png(result, args.plot)}", file=sys.stderr)
    return 0


def _numbers(text: str, kind: type[int] | type[float], option: str) -> tuple[Any, ...]:
    """``"3,5,9"`` -> ``(3, 5, 9)``; ``none`` -> ``()``; a clear exit on anything else."""
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"{option} {text!r}: expected comma-separated numbers, e.g. "
                         f"{'3,5,9' if kind is int else '0.5,0.1'}, or 'none'") from None
    if kind is float and not all(0.0 < v < 1.0 for v in values):
        raise SystemExit(f"{option} {text!r}: shrinkages must lie strictly between 0 and 1")
    if kind is int and not all(v >= 2 for v in values):
        raise SystemExit(f"{option} {text!r}: band widths must be at least 2")
    return values


def _transfer(args: argparse.Namespace, session: Any, corpus: Any, data: Any,
              methods: list[str], layers: tuple[int, ...]) -> dict[str, Any]:
    """Score an independent corpus with each method fitted on the whole training corpus."""
    from amygdala.corpus._model import Corpus
    from amygdala.diagnose._heldout import heldout_transfer
    from amygdala.vectors._train import capture_corpus

    test = Corpus.load(args.transfer)
    test_data, _ = capture_corpus(session, test, layers, batch_size=args.batch_size,
                                  progress=sys.stderr.isatty())
    print(f"\ntransfer to {args.transfer} ({len(test.scenarios)} scenarios, "
          f"{sum(len(s.concepts) for s in test.scenarios)} variants, {len(test.stories)} "
          "stories): fitted on the whole training corpus, layer chosen on it alone")
    out: dict[str, Any] = {"corpus": str(args.transfer), "methods": {}}
    for method in methods:
        result = heldout_transfer(data, corpus, test_data, test, method,
                                  normalisation=args.normalisation, folds=args.folds,
                                  seed=args.seed)
        print(result.render())
        out["methods"][method] = result.to_json()
    return out
