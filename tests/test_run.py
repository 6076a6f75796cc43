"""The run directory (`RunDir`): one layout, one config reader, one loader, one best-layer
rule; and `amygdala.train`, which writes a complete run from Python as the CLI does."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import pytest

import amygdala
from amygdala._types import Pooling
from amygdala.backends._registry import get_backend
from amygdala.corpus._model import Corpus
from amygdala.diagnose._evaluate import Evaluation
from amygdala.errors import UnknownSiteError, VectorFileError
from amygdala.intervene._steer import default_layer, open_run
from amygdala.pipeline import RunOptions, train
from amygdala.store._store import ActivationStore
from amygdala.vectors._extract import extract
from amygdala.vectors._run import RunDir, best_layer, config_from_json
from amygdala.vectors._set import SteeringVectorSet
from amygdala.vectors._train import Session, TrainConfig
from tests.conftest import tiny_llama

WORDS = {
    "baseline": "walked to the shop, bought bread and milk and walked home again",
    "joyful": "skipped to the shop, grinning, bought bread and milk and sang all the way home",
    "afraid": "crept to the shop, glancing back, bought bread and milk and hurried home shaking",
}
NAMES = ("Ana", "Tom", "Mei", "Raj", "Lea")


def _corpus(tmp_path: Path) -> Corpus:
    for i, name in enumerate(NAMES):
        folder = tmp_path / "corpus" / "paired" / f"scene_{i}"
        folder.mkdir(parents=True)
        for concept, text in WORDS.items():
            (folder / f"{concept}.txt").write_text(f"{name} {text} at {i + 5} o'clock.\n")
    return Corpus.load(tmp_path / "corpus")


def _session(tmp_path: Path) -> Session:
    loaded = tiny_llama()
    store = ActivationStore(tmp_path / "store", fingerprint=loaded.fingerprint,
                            pooling=Pooling())
    return Session(loaded=loaded, backend=get_backend("torch", loaded), store=store)


def _vectors(layers: tuple[int, ...], method: str = "paired") -> SteeringVectorSet:
    n = len(layers)
    return SteeringVectorSet(
        concepts=["a"], layers=layers, directions=np.ones((1, n, 2)), raw_norm=np.ones((1, n)),
        resid_norm=np.ones(n), mean=np.zeros((n, 2)), std=np.ones((n, 2)), method=method,
        normalisation="raw")


# ----- the one best-layer rule ------------------------------------------------------------

def test_best_layer_is_the_evaluations_recommended_layer_else_the_middle() -> None:
    layers = tuple(range(30))
    choice = best_layer(None, "paired", layers)
    assert (choice.layer, choice.source) == (15, "middle")
    # Format-1 files name the layer under best[method].
    assert best_layer({"best": {"paired": {"layer": 12}}}, "paired", layers).layer == 12
    # The recommended layer of the run's method wins over its best.
    both = {"best": {"paired": {"layer": 15}}, "recommended_layer": {"paired": 12}}
    assert best_layer(both, "paired", layers).layer == 12
    # A layer the vectors lack is not taken: the middle of the vectors' layers instead.
    choice = best_layer({"recommended_layer": {"paired": 15}}, "paired", (0, 5, 25))
    assert (choice.layer, choice.source) == (5, "middle") and "not among" in choice.reason
    # Another method's layer is never taken.
    choice = best_layer({"recommended_layer": {"probe": 7}}, "paired", layers)
    assert choice.layer == 15 and "no layer for method 'paired'" in choice.reason
    with pytest.raises(ValueError, match="layers"):
        best_layer(None, "paired", ())


def test_every_consumer_uses_the_run_dirs_rule(tmp_path: Path) -> None:
    vectors = _vectors((0, 1, 2))
    run = RunDir(tmp_path)
    assert default_layer(vectors, tmp_path) == run.best_layer(vectors).layer == 1
    run.evaluation.write_text(json.dumps({"recommended_layer": {"paired": 2},
                                          "best": {"paired": {"layer": 0}}}))
    assert default_layer(vectors, tmp_path) == run.best_layer(vectors).layer == 2
    run.evaluation.write_text("{not json")
    assert default_layer(vectors, tmp_path) == 1


def test_paths_are_the_files_the_stages_write(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    names = {p.relative_to(run.root).as_posix() for p in (
        run.vectors_arrays, run.vectors_meta, run.run_json, run.evaluation, run.quality,
        run.readout_arrays, run.readout_meta, run.readout_stats, run.steering,
        run.circuit("afraid"), run.circuit_summary, run.circuit_overlap, run.gguf("afraid"))}
    assert names == {
        "vectors.safetensors", "vectors.json", "run.json", "evaluation.json", "quality.json",
        "readout.safetensors", "readout.json", "readout_stats.json", "steering.json",
        "circuits/afraid.json", "circuits/summary.json", "circuits/overlap.json",
        "afraid.gguf"}
    vectors = _vectors((0, 1))
    vectors.save(run.root)
    assert run.vectors_meta.is_file() and run.vectors_arrays.is_file()


def test_config_round_trips_through_run_json(tmp_path: Path) -> None:
    config = TrainConfig(model="m", backend="transformer_lens", method="unpaired",
                         normalisation="raw", layers=(3, 4), pooling=Pooling.parse("last"),
                         batch_size=4, store=tmp_path / "s", store_dtype="float16",
                         device="cpu", dtype="bfloat16")
    run = RunDir(tmp_path)
    run.write_record({"config": config.to_json()})
    assert run.config() == config
    # Older files lack fields: they take the defaults.
    assert config_from_json({"model": "m"}) == TrainConfig(model="m")
    assert RunDir(tmp_path / "none").config() == TrainConfig()
    with pytest.raises(VectorFileError, match="amygdala train"):
        RunDir(tmp_path / "none").config(required=True)


# ----- a complete run from Python ---------------------------------------------------------

def test_train_writes_a_complete_run(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    session = _session(tmp_path)
    config = TrainConfig(layers=(0, 1, 2), normalisation="raw")
    options = RunOptions(quality=True, export_readout=True, gguf=("afraid",))
    result = train(corpus, config=config, out=tmp_path / "run", options=options,
                   session=session)
    run = RunDir(tmp_path / "run")
    for path in (run.vectors_arrays, run.vectors_meta, run.run_json, run.evaluation,
                 run.quality, run.readout_arrays, run.readout_meta, run.gguf("afraid")):
        assert path.is_file(), path
    # evaluation.json is the evaluation returned, and its recommended layer is the run's.
    assert result.evaluation is not None
    saved = Evaluation.from_json(json.loads(run.evaluation.read_text()))
    assert saved.recommended == result.evaluation.recommended
    choice = run.best_layer()
    assert choice.source == "evaluation"
    assert choice.layer == result.evaluation.recommended[config.method]
    # The probe's shrinkage was chosen on inner folds; the shipped readers use it.
    chosen = result.evaluation.results["probe"].settings["readout"]["shrinkage"]
    assert run.config() == attrs.evolve(config, shrinkage=chosen)
    expected = extract(result.data, corpus, method="probe", normalisation="raw",
                       shrinkage=chosen)
    np.testing.assert_allclose(result.vectors.readers(1), expected.readers[:, 1], rtol=1e-5,
                               atol=1e-6)
    # The one loader gives back the same vectors on the given backend.
    ctx = run.open(backend=session.backend)
    np.testing.assert_array_equal(ctx.vectors.directions, result.vectors.directions)
    assert open_run(run.root, backend=session.backend).vectors == ctx.vectors
    # The quality report judged the evaluation's layer.
    assert result.quality is not None and result.quality.best_layer == choice.layer


def test_train_in_memory_writes_nothing(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    result = train(corpus, config=TrainConfig(layers=(1,), normalisation="raw"),
                   session=_session(tmp_path))
    assert result.run_dir is None and result.evaluation is not None
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="out=RUN_DIR"):
        train(corpus, options=RunOptions(export_readout=True), session=_session(tmp_path))


def test_open_rejects_a_backend_of_another_model(tmp_path: Path) -> None:
    vectors = _vectors((0, 1))  # width 2; the tiny model has d_model 32
    vectors.save(tmp_path)
    loaded = tiny_llama()
    with pytest.raises(UnknownSiteError, match="d_model 32"):
        RunDir(tmp_path).open(backend=get_backend("torch", loaded))


def test_the_top_level_train_is_the_complete_one() -> None:
    assert amygdala.train is train
    assert amygdala.RunDir is RunDir
