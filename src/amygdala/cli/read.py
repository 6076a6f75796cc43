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
                        help="layer to read (default: best layer in evaluation.json, else middle)")
    parser.add_argument("--band", metavar="A-B", default=None,
                        help="average the z-scores over a band of layers, e.g. 12-18, or "
                             "'auto' for the band recommended in evaluation.json")
    parser.add_argument("--relative", action="store_true",
                        help="subtract each token's mean z over concepts (removes the "
                             "component all concepts share)")
    parser.add_argument("--top", type=int, default=3, help="concepts shown per token (default 3)")
    parser.add_argument("--html", metavar="FILE", help="also write an HTML heat map")
    parser.add_argument("--png", metavar="FILE", help="also write a PNG heat map (matplotlib)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the view")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="ANSI colours (default: when stdout is a terminal)")
    parser.add_argument("--corpus", metavar="PATH", default=None,
                        help="corpus root for neutral statistics when the run's is not found")


def run(args: argparse.Namespace) -> int:
    """Read ``args.text`` and print or write the readout."""
    from amygdala.intervene._readout import load_or_compute_stats, read
    from amygdala.intervene._steer import default_layer, open_run

    ctx = open_run(args.run_dir, device=args.device, dtype=args.dtype)
    layer = args.layer if args.layer is not None else default_layer(ctx.vectors, ctx.run_dir)
    ctx.vectors.layer_index(layer)
    stats = load_or_compute_stats(ctx.run_dir, ctx.backend, ctx.vectors, corpus=args.corpus)
    band = _band(args.band, ctx)
    readout = read(ctx.backend, ctx.vectors, args.text, layer=layer, stats=stats, band=band,
                   relative=args.relative)
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
