"""The `amygdala` command line: one program, one subcommand module per job."""

from amygdala.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
