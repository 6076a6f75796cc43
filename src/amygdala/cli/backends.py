"""`amygdala backends`: list the registered backends and whether each can be imported."""

from __future__ import annotations

import argparse

NAME = "backends"
HELP = "List the registered backends, what each hooks into, and whether it imports here."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the backends options to ``parser`` (there are none)."""
    del parser


def run(args: argparse.Namespace) -> int:
    """Print per backend: name, import status and description, then its install hint.

    The status is ``ok`` when the backend's required libraries and its own module
    import (`BackendSpec.missing`), which is what decides whether
    ``get_backend(name, ...)`` will work.
    """
    del args
    from amygdala.backends._registry import BACKENDS

    width = max(len(name) for name in BACKENDS)
    for name, spec in BACKENDS.items():
        reason = spec.missing()
        status = "ok" if reason is None else reason
        print(f"{name:<{width}}  [{status}]  {spec.description}")
        if spec.install_hint:
            print(f"{'':<{width}}  install: {spec.install_hint}")
    return 0
