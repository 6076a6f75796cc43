"""The training pipeline end to end on the real default model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import attrs
import numpy as np
import pytest

from amygdala._types import Pooling
from amygdala.backends._registry import Backend
from amygdala.cli import main
from amygdala.corpus._model import Corpus
from amygdala.store._store import ActivationStore
from amygdala.vectors import import_gguf
from amygdala.vectors._set import SteeringVectorSet
from amygdala.vectors._train import Session, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.smollm


def tiny_corpus() -> Corpus:
    """Four scenarios carrying 'afraid', no stories, baselines as reference texts."""
    corpus = Corpus.load(ROOT / "paired").select(["afraid", "calm"])
    return attrs.evolve(corpus, scenarios=corpus.scenarios[:4], stories=(), neutral=())


def test_small_run_writes_a_complete_run_dir(small_run: SimpleNamespace) -> None:
    run_dir = small_run.run_dir
    vectors = SteeringVectorSet.load(run_dir)
    assert vectors.layers == tuple(range(30))
    assert set(vectors.concepts) == {"afraid", "joyful", "sad", "calm", "angry", "curious"}
    record = json.loads((run_dir / "run.json").read_text())
    assert record["model"]["fingerprint"] == vectors.provenance["model_fingerprint"]
    assert record["corpus"]["hash"] == small_run.corpus.content_hash
    assert (vectors.resid_norm > 0).all()
    # Different concepts get different directions at a middle layer.
    cos = vectors.cosine_matrix(15)
    assert np.abs(cos[~np.eye(len(cos), dtype=bool)]).max() < 0.99


def test_both_backends_give_the_same_vectors(smollm_factory: Callable[[str], Backend],
                                             tmp_path: Path) -> None:
    corpus = tiny_corpus()
    results = []
    for name in ("torch", "transformer_lens"):
        backend = smollm_factory(name)
        store = ActivationStore(tmp_path / name, fingerprint=backend.loaded.fingerprint,  # type: ignore[attr-defined]
                                pooling=Pooling())
        session = Session(loaded=backend.loaded, backend=backend, store=store)  # type: ignore[attr-defined]
        results.append(train(corpus, config=TrainConfig(backend=name, layers=(6, 20)),
                             session=session).vectors)
    np.testing.assert_allclose(results[0].directions, results[1].directions, atol=1e-4)


def test_cli_train_then_warm_rerun_captures_nothing(
        smollm_factory: Callable[[str], Backend], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    smollm_factory("torch")  # make sure the model cache exists
    corpus_dir = tmp_path / "corpus" / "paired"
    for scenario in tiny_corpus().scenarios:
        shutil.copytree(ROOT / "paired" / scenario.slug, corpus_dir / scenario.slug)
    args = ["train", str(corpus_dir), "--out", str(tmp_path / "run"), "--layers", "10,20",
            "--store", str(tmp_path / "store"), "--export-readout", "--export-gguf", "afraid",
            "--quiet"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "held-out accuracy" in first and "bag-of-words" in first
    # The control vector covers the steering band (both layers here) at the default strength.
    control = import_gguf(tmp_path / "run" / "afraid.gguf")
    trained = SteeringVectorSet.load(tmp_path / "run")
    assert control.layers == (10, 20) and control.concepts == ("afraid",)
    np.testing.assert_allclose(control.directions[0], trained.select(
        concepts=["afraid"]).directions[0], atol=1e-6)
    assert (tmp_path / "run" / "readout.safetensors").is_file()
    assert main(args) == 0
    assert "captured 0 new texts" in capsys.readouterr().out


def test_cli_reports_bad_input_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "amygdala train: error:" in err and "nope" in err
    assert main(["train", str(ROOT / "paired"), "--out", str(tmp_path / "r"),
                 "--layers", "7-x"]) == 1
    assert "cannot parse layers" in capsys.readouterr().err
