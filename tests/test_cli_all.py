"""Every registered command: --help works, a missing command module fails loudly, and
train, evaluate, steer, circuits and report --recompute run end to end on a tiny model.

The tiny random Llama is saved to disk so that each command loads it by path, as a
user's model would be (the `tiny_run` fixture of tests/conftest.py, shared with
test_eval_steer_options); each test that writes works on its own copy of the run directory.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from amygdala.cli import _main, build_parser, main
from amygdala.errors import MissingDependencyError
from tests.conftest import TINY_RUN_CONCEPTS

CONCEPTS = TINY_RUN_CONCEPTS


@pytest.mark.parametrize("module_name", _main._COMMAND_MODULES)
def test_every_registered_command_has_help(module_name: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"amygdala.cli.{module_name}")
    with pytest.raises(SystemExit) as info:
        main([module.NAME, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: amygdala {module.NAME}")
    # The top-level help lists it too.
    with pytest.raises(SystemExit):
        main(["--help"])
    assert module.NAME in capsys.readouterr().out


def test_a_missing_command_module_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_main, "_COMMAND_MODULES", (*_main._COMMAND_MODULES, "no_such_cmd"))
    with pytest.raises(MissingDependencyError, match=r"amygdala\.cli\.no_such_cmd is missing"):
        build_parser()


def test_a_broken_import_inside_a_command_is_not_hidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *args: Any) -> Any:
        if name == "amygdala.cli.info":
            raise ModuleNotFoundError("No module named 'some_dependency'",
                                      name="some_dependency")
        return real(name, *args)

    monkeypatch.setattr(_main.importlib, "import_module", fake)
    with pytest.raises(ModuleNotFoundError, match="some_dependency"):
        build_parser()


# ----- end to end on a tiny model ----------------------------------------------------------


def test_train_wrote_a_complete_run(tiny_run: dict[str, Path]) -> None:
    names = {p.name for p in tiny_run["run"].iterdir()}
    assert {"vectors.json", "vectors.safetensors", "run.json", "evaluation.json"} <= names
    meta = json.loads((tiny_run["run"] / "vectors.json").read_text())
    assert meta["concepts"] == list(CONCEPTS)
    assert meta["layers"] == [0, 1, 2]


def test_evaluate_command(tiny_run: dict[str, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "evaluation.json"
    code = main(["evaluate", str(tiny_run["corpus"]), "--model", str(tiny_run["model"]),
                 "--store", str(tiny_run["store"]), "--methods", "paired,pca", "--folds", "2",
                 "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data["methods"]) == {"paired", "pca"}
    text = capsys.readouterr().out
    assert "paired" in text and "pca" in text


def test_evaluate_refuses_unknown_methods(tiny_run: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", str(tiny_run["corpus"]), "--model", str(tiny_run["model"]),
                 "--methods", "paired,magic"])
    assert code == 2
    assert "magic" in capsys.readouterr().err


def _steer_lines(out: str) -> tuple[str, str]:
    lines = out.splitlines()
    plain = next(x for x in lines if x.startswith("unsteered:")).split(":", 1)[1].strip()
    steered = lines[lines.index(next(x for x in lines if x.startswith("steered ("))) + 1]
    return plain, steered.strip()


def test_steer_command_changes_the_text(tiny_run_copy: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["steer", str(tiny_run_copy), "The cat sat", "--concept", "joyful", "--alpha",
                 "8", "--layer", "1", "--max-new-tokens", "8", "--no-chat"])
    assert code == 0
    out = capsys.readouterr().out
    assert "joyful +8 at layer 1 (all positions)" in out
    plain, steered = _steer_lines(out)
    assert steered != plain


def test_steer_command_rejects_mismatched_alphas(tiny_run_copy: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["steer", str(tiny_run_copy), "x", "--concept", "joyful", "--concept", "sad",
                 "--alpha", "1", "--alpha", "2", "--alpha", "3"])
    assert code == 2
    assert "2 --concept but 3 --alpha" in capsys.readouterr().out


def test_circuits_then_circuit_steering(tiny_run_copy: Path, tiny_run: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["circuits", str(tiny_run_copy), "--concept", "joyful", "--layer", "2",
                 "--k", "2,4", "--k-heads", "1", "--draws", "1", "--scales", "2",
                 "--heads", "direct", "--corpus", str(tiny_run["corpus"]),
                 "--batch-size", "4"])
    assert code == 0
    circuit = json.loads((tiny_run_copy / "circuits" / "joyful.json").read_text())
    assert circuit["concept"] == "joyful"
    assert "joyful" in capsys.readouterr().out
    code = main(["steer", str(tiny_run_copy), "The cat sat", "--concept", "joyful",
                 "--circuit-factor", "6", "--max-new-tokens", "6", "--no-chat"])
    assert code == 0
    assert "circuit x6: joyful" in capsys.readouterr().out


def test_circuit_steering_without_circuits_is_an_error(tiny_run_copy: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       ) -> None:
    code = main(["steer", str(tiny_run_copy), "x", "--concept", "joyful", "--circuit-factor", "2",
                 "--no-chat", "--max-new-tokens", "2"])
    assert code == 1
    assert "amygdala circuits" in capsys.readouterr().err


def test_report_recompute_writes_quality(tiny_run_copy: Path, tiny_run: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # run.json records the corpus root as given to train (absolute here).
    monkeypatch.chdir(tiny_run["corpus"].parent)
    assert not (tiny_run_copy / "quality.json").exists()
    code = main(["report", str(tiny_run_copy), "--recompute", "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads((tiny_run_copy / "quality.json").read_text())
    assert printed == on_disk
    assert sorted(c["concept"] for c in on_disk["concepts"]) == list(CONCEPTS)
    # The shared run is untouched.
    assert not (tiny_run["run"] / "quality.json").exists()
