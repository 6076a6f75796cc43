"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from amygdala._views import VIEWS
from amygdala.errors import UnknownSiteError

if TYPE_CHECKING:
    from amygdala.intervene._events import EventRule
    from amygdala.intervene._monitor import Monitor

__all__ = ["add_device_options", "add_model_options", "add_monitor_options", "event_rule",
           "open_monitor", "parse_layers"]


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """Parse ``all``, ``12``, ``10-20`` or ``5,10,15`` (ranges inclusive); None means all."""
    if text is None or text == "all":
        return None
    layers: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise UnknownSiteError(
                f"cannot parse layers {text!r}; expected 'all', '12', '10-20' or '5,10,15'"
            )
        layers.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return tuple(sorted(set(layers)))


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """Add --device and --dtype (every command that loads a model has them)."""
    from amygdala.backends._device import DEVICE_HELP, DTYPES

    parser.add_argument("--device", default="auto",
                        help=f"where the model runs: {DEVICE_HELP} (default auto)")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES),
                        help="model parameter dtype (default float32, or the run's own for "
                        "commands that open a run); bfloat16 halves GPU memory, pooled "
                        "statistics stay float32")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Add --model, --backend, --store, --batch-size, --device, --dtype."""
    from amygdala.backends._loading import DEFAULT_MODEL
    from amygdala.backends._registry import BACKENDS

    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model name, HF id or local dir (default {DEFAULT_MODEL})")
    parser.add_argument("--backend", default="torch", choices=sorted(BACKENDS),
                        help="capture backend (default torch)")
    parser.add_argument("--store", type=Path, default=None,
                        help="activation store directory (default: <cache>/activations)")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per forward pass")
    add_device_options(parser)


def add_monitor_options(parser: argparse.ArgumentParser) -> None:
    """Add what builds a `Monitor` (``watch`` and ``serve``): layers, concepts, smoothing,
    event thresholds, the view events run on, the neutral-statistics corpus."""
    parser.add_argument("--layer", type=int, action="append", default=None,
                        help="read-out layer(s) (repeat; default: the layer or band "
                        "evaluation.json recommends for the read-out, else the run's best "
                        "layer)")
    parser.add_argument("--concepts", default=None,
                        help="comma-separated concepts to report (default: all)")
    parser.add_argument("--window", type=float, default=4.0,
                        help="moving-average span in tokens (default 4)")
    parser.add_argument("--on", type=float, default=2.0, help="event enter threshold (z)")
    parser.add_argument("--off", type=float, default=1.0, help="event leave threshold (z)")
    parser.add_argument("--min-tokens", type=int, default=2,
                        help="tokens a condition must hold before an event (default 2)")
    parser.add_argument("--events-on", choices=VIEWS, default=None,
                        help="view the moving average and events run on: z or relative "
                        "(each concept minus the mean over concepts, so a token that lifts "
                        "every concept does not make all of them enter); default: the view "
                        "evaluation.json recommends, else z")
    parser.add_argument("--corpus", metavar="PATH", default=None,
                        help="corpus root for neutral statistics when the run's is not found")


def event_rule(args: argparse.Namespace) -> EventRule:
    """The `EventRule` of ``--on``, ``--off`` and ``--min-tokens``.

    Raises:
        ValueError: the thresholds are inconsistent (the message says how to fix them).
    """
    from amygdala.intervene._events import EventRule

    return EventRule(on=args.on, off=args.off, min_tokens=args.min_tokens)


def open_monitor(args: argparse.Namespace, rule: EventRule) -> Monitor:
    """Load ``args.run_dir``'s model and build the `Monitor` the options ask for.

    Layers, ``--events-on`` and (for ``watch``) ``--view`` not given follow the run's
    ``evaluation.json`` (`amygdala.intervene._monitor.live_defaults`); flags win.
    """
    from amygdala.intervene._monitor import Monitor

    concepts = [c.strip() for c in args.concepts.split(",")] if args.concepts else None
    monitor = Monitor.from_run(args.run_dir, device=args.device, dtype=args.dtype,
                               layers=args.layer, concepts=concepts, corpus=args.corpus,
                               window=args.window, rule=rule, events_on=args.events_on,
                               view=getattr(args, "view", None))
    if args.layer:
        monitor.layers_from = "--layer"
    if args.events_on is not None:
        monitor.events_on_from = "--events-on"
    return monitor
