"""The `amygdala` command line: one program, one subcommand per job.

Each subcommand lives in `amygdala.cli.<name>` and exposes `NAME`, `HELP`,
`configure(parser)` and `run(args) -> int`. Modules are imported only when the
command line is built, so `import amygdala` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from amygdala.errors import AmygdalaError, MissingDependencyError

# Order is the order of `amygdala --help`.
_COMMAND_MODULES = (
    "train",
    "evaluate",
    "report",
    "lint",
    "circuits",
    "read",
    "watch",
    "steer",
    "eval_steer",
    "serve",
    "import_gguf",
    "backends",
    "info",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand.

    Raises:
        MissingDependencyError: a registered command's module is missing (a broken
            install); no command is left out silently.
    """
    parser = argparse.ArgumentParser(
        prog="amygdala",
        description="Find, check and use emotion directions inside language models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"amygdala.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"amygdala.cli.{module_name}":
                # A registered command whose module is gone is a broken install, not a
                # command to leave out quietly.
                raise MissingDependencyError(
                    f"amygdala command {module_name!r} is registered but its module "
                    f"amygdala.cli.{module_name} is missing; reinstall amygdala "
                    "(`pip install --force-reinstall amygdala`)") from exc
            raise
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    try:
        return int(args._run(args))
    except AmygdalaError as exc:
        print(f"amygdala {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"amygdala {args.command}: interrupted; rerun the same command to resume.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
