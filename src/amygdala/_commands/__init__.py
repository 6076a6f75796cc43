"""Subcommands of the `amygdala` program (see `amygdala.cli`)."""
