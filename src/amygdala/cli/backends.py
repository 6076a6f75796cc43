"""`amygdala backends`: list the registered backends and whether each can be imported."""

from __future__ import annotations

import argparse
import importlib

NAME = "backends"
HELP = "List the registered backends, what each hooks into, and whether it imports here."

# The third-party library each built-in backend needs at run time. Importing the
# backend's own module is cheap (its library is imported lazily), so also try
# the library: that is what decides whether `get_backend(name, ...)` will work.
_LIBRARIES = {
    "torch": "torch",
    "transformer_lens": "transformer_lens.model_bridge",
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the backends options to ``parser`` (there are none)."""
    del parser


def _import_status(name: str, module_name: str) -> str:
    """Return ``"ok"`` or ``"cannot import: <reason>"`` for one backend."""
    for target in (module_name, _LIBRARIES.get(name)):
        if target is None:
            continue
        try:
            importlib.import_module(target)
        except ImportError as exc:
            return f"cannot import {target}: {exc}"
    return "ok"


def run(args: argparse.Namespace) -> int:
    """Print one line per backend: name, import status, description."""
    del args
    from amygdala.backends._registry import BACKENDS

    width = max(len(name) for name in BACKENDS)
    for name, (module_name, _class_name, description) in BACKENDS.items():
        status = _import_status(name, module_name)
        print(f"{name:<{width}}  [{status}]  {description}")
    return 0
