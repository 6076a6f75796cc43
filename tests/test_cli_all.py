"""Every registered command: --help works, a missing command module fails loudly, and
train, evaluate, steer, circuits and report --recompute run end to end on a tiny model.

The tiny random Llama is saved to disk so that each command loads it by path, as a
user's model would be; each test works on its own copy of the trained run directory.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amygdala.cli import _main, build_parser, main
from amygdala.errors import MissingDependencyError
from tests.conftest import dir_snapshot, tiny_llama
from tests.corpus_helpers import prose, write

CONCEPTS = ("joyful", "sad")


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


def _corpus(root: Path) -> Path:
    seed = 0
    for s in range(4):
        for name in ("baseline", *CONCEPTS):
            seed += 1
            write(root / "paired" / f"scene_{s}" / f"{name}.txt", prose(90, seed))
    for k in range(4):
        write(root / "neutral" / f"n{k}.txt", prose(60, 100 + k, lead="The bus left"))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A tiny model on disk, a tiny corpus, and one `amygdala train` run (read-only).

    Tests that write into the run take `run_copy`; at the end of the module the run
    directory must hold exactly the files, bytes included, it was made with.
    """
    base = tmp_path_factory.mktemp("cli")
    model_dir = base / "model"
    loaded = tiny_llama()
    loaded.model.save_pretrained(model_dir)
    loaded.tokenizer.save_pretrained(model_dir)
    corpus = _corpus(base / "corpus")
    run = base / "run"
    code = main(["train", str(corpus), "--out", str(run), "--model", str(model_dir),
                 "--store", str(base / "store"), "--batch-size", "4", "--quiet"])
    assert code == 0
    before = dir_snapshot(run)
    yield {"model": model_dir, "corpus": corpus, "run": run, "store": base / "store"}
    assert dir_snapshot(run) == before, "a test wrote into the shared run; use run_copy"


@pytest.fixture
def run_copy(trained: dict[str, Path], tmp_path: Path) -> Path:
    """This test's own copy of the trained run directory."""
    return Path(shutil.copytree(trained["run"], tmp_path / "run"))


def test_train_wrote_a_complete_run(trained: dict[str, Path]) -> None:
    names = {p.name for p in trained["run"].iterdir()}
    assert {"vectors.json", "vectors.safetensors", "run.json", "evaluation.json"} <= names
    meta = json.loads((trained["run"] / "vectors.json").read_text())
    assert meta["concepts"] == list(CONCEPTS)
    assert meta["layers"] == [0, 1, 2]


def test_evaluate_command(trained: dict[str, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "evaluation.json"
    code = main(["evaluate", str(trained["corpus"]), "--model", str(trained["model"]),
                 "--store", str(trained["store"]), "--methods", "paired,pca", "--folds", "2",
                 "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data["methods"]) == {"paired", "pca"}
    text = capsys.readouterr().out
    assert "paired" in text and "pca" in text


def test_evaluate_refuses_unknown_methods(trained: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", str(trained["corpus"]), "--model", str(trained["model"]),
                 "--methods", "paired,magic"])
    assert code == 2
    assert "magic" in capsys.readouterr().err


def _steer_lines(out: str) -> tuple[str, str]:
    lines = out.splitlines()
    plain = next(x for x in lines if x.startswith("unsteered:")).split(":", 1)[1].strip()
    steered = lines[lines.index(next(x for x in lines if x.startswith("steered ("))) + 1]
    return plain, steered.strip()


def test_steer_command_changes_the_text(run_copy: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["steer", str(run_copy), "The cat sat", "--concept", "joyful", "--alpha",
                 "8", "--layer", "1", "--max-new-tokens", "8", "--no-chat"])
    assert code == 0
    out = capsys.readouterr().out
    assert "joyful +8 at layer 1 (all positions)" in out
    plain, steered = _steer_lines(out)
    assert steered != plain


def test_steer_command_rejects_mismatched_alphas(run_copy: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["steer", str(run_copy), "x", "--concept", "joyful", "--concept", "sad",
                 "--alpha", "1", "--alpha", "2", "--alpha", "3"])
    assert code == 2
    assert "2 --concept but 3 --alpha" in capsys.readouterr().out


def test_circuits_then_circuit_steering(run_copy: Path, trained: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["circuits", str(run_copy), "--concept", "joyful", "--layer", "2",
                 "--k", "2,4", "--k-heads", "1", "--draws", "1", "--scales", "2",
                 "--heads", "direct", "--corpus", str(trained["corpus"]),
                 "--batch-size", "4"])
    assert code == 0
    circuit = json.loads((run_copy / "circuits" / "joyful.json").read_text())
    assert circuit["concept"] == "joyful"
    assert "joyful" in capsys.readouterr().out
    code = main(["steer", str(run_copy), "The cat sat", "--concept", "joyful",
                 "--circuit-factor", "6", "--max-new-tokens", "6", "--no-chat"])
    assert code == 0
    assert "circuit x6: joyful" in capsys.readouterr().out


def test_circuit_steering_without_circuits_is_an_error(run_copy: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       ) -> None:
    code = main(["steer", str(run_copy), "x", "--concept", "joyful", "--circuit-factor", "2",
                 "--no-chat", "--max-new-tokens", "2"])
    assert code == 1
    assert "amygdala circuits" in capsys.readouterr().err


def test_report_recompute_writes_quality(run_copy: Path, trained: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # run.json records the corpus root as given to train (absolute here).
    monkeypatch.chdir(trained["corpus"].parent)
    assert not (run_copy / "quality.json").exists()
    code = main(["report", str(run_copy), "--recompute", "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads((run_copy / "quality.json").read_text())
    assert printed == on_disk
    assert sorted(c["concept"] for c in on_disk["concepts"]) == list(CONCEPTS)
    # The shared run is untouched.
    assert not (trained["run"] / "quality.json").exists()
