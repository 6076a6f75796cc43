"""`amygdala read RUN_DIR TEXT`: per-token concept scores at one layer."""

from __future__ import annotations

import argparse
import json
from typing import Any

from amygdala.cli._common import add_device_options

NAME = "read"
HELP = "Show per-token concept z-scores of a text (terminal view, --html or --png heat map)."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the read options to ``parser``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory from `amygdala train`")
    add_device_options(parser)
    parser.add_argument("text", metavar="TEXT", help="the text to read")
    parser.add_argument("--layer", type=int, default=None,
                        help="read this one layer (default: the read-out's recommended layer "
                             "or band in evaluation.json, chosen on inner folds; else the "
                             "middle layer)")
    parser.add_argument("--band", metavar="A-B", default=None,
                        help="average the z-scores over a band of layers, e.g. 12-18, or "
                             "'auto' for the band recommended in evaluation.json")
    parser.add_argument("--view", type=_view_option, default="auto",
                        metavar="{auto,z,relative}",
                        help="z (against neutral text), or relative (z minus the mean over "
                             "concepts, removing the component all concepts share); auto "
                             "(default): the view evaluation.json recommends by detection AUC")
    parser.add_argument("--relative", action="store_true",
                        help="the same as --view relative")
    parser.add_argument("--top", type=int, default=3, help="concepts shown per token (default 3)")
    parser.add_argument("--html", metavar="FILE", help="also write an HTML heat map")
    parser.add_argument("--png", metavar="FILE", help="also write a PNG heat map (matplotlib)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the view")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="ANSI colours (default: when stdout is a terminal)")
    parser.add_argument("--corpus", metavar="PATH", default=None,
                        help="corpus root for neutral statistics when the run's is not found")


def _view_option(value: str) -> str:
    """``auto`` or a view; anything else (the old name ``raw`` included) is refused with
    the valid names, so one vocabulary holds (`amygdala._views`)."""
    from amygdala._views import LEGACY_VIEWS, VIEWS

    if value == "auto" or value in VIEWS:
        return value
    new = LEGACY_VIEWS.get(value)
    hint = f" ({value!r} is the old name of {new!r}: pass --view {new})" if new else ""
    raise argparse.ArgumentTypeError(f"expected auto, {', '.join(VIEWS)}; got {value!r}{hint}")


def run(args: argparse.Namespace) -> int:
    """Read ``args.text`` and print or write the readout."""
    import sys

    from amygdala.intervene._readout import load_or_compute_stats, read, recommended_read
    from amygdala.intervene._steer import default_layer, open_run

    ctx = open_run(args.run_dir, device=args.device, dtype=args.dtype)
    rec = recommended_read(ctx.run_dir, ctx.vectors.method)
    band = _band(args.band, ctx)
    if args.layer is not None:
        layer = args.layer
    elif rec.layer is not None and rec.layer in ctx.vectors.layers:
        layer = rec.layer
        if args.band is None and rec.band and all(x in ctx.vectors.layers for x in rec.band):
            band = list(rec.band)
    else:
        layer = default_layer(ctx.vectors, ctx.run_dir)
    ctx.vectors.layer_index(layer)
    view = "relative" if args.relative else (rec.view if args.view == "auto" else args.view)
    where = f"layers {band[0]}-{band[-1]} (mean z)" if band else f"layer {layer}"
    print(f"reading {where}, {view} view"
          + (f" (from {rec.source})" if args.layer is None and args.view == "auto" else ""),
          file=sys.stderr)
    stats = load_or_compute_stats(ctx.run_dir, ctx.backend, ctx.vectors, corpus=args.corpus)
    readout = read(ctx.backend, ctx.vectors, args.text, layer=layer, stats=stats, band=band,
                   relative=view == "relative")
    if args.json:
        print(json.dumps(readout.to_json()))
    else:
        color = None if args.color == "auto" else args.color == "always"
        print(readout.render(top=args.top, color=color))
    if args.html:
        print(f"wrote {readout.save_html(args.html)}")
    if args.png:
        print(f"wrote {readout.save_png(args.png)}")
    return 0


def _band(value: str | None, ctx: Any) -> list[int] | None:
    """``None``, ``auto`` (evaluation.json's band) or ``A-B`` / ``a,b,c``."""
    from amygdala.cli._common import parse_layers
    from amygdala.intervene._readout import recommended_from_evaluation

    if value is None:
        return None
    if value == "auto":
        band = recommended_from_evaluation(ctx.run_dir, ctx.vectors.method)[1]
        if not band:
            raise SystemExit(f"{ctx.run_dir}/evaluation.json names no recommended band; "
                             "pass one, e.g. --band 12-18")
        return band
    layers = parse_layers(value)
    if not layers:
        raise SystemExit(f"--band {value!r}: expected a range such as 12-18")
    for x in layers:
        ctx.vectors.layer_index(x)
    return list(layers)
