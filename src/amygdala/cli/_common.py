"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from amygdala.errors import UnknownSiteError

__all__ = ["add_device_options", "add_model_options", "parse_layers"]


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
