"""Extraction methods and vector sets on synthetic activations with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amygdala.corpus._model import Corpus, Scenario, Text
from amygdala.diagnose._evaluate import evaluate
from amygdala.errors import (
    CorpusError,
    DimensionMismatchError,
    UnknownConceptError,
    UnknownSiteError,
    VectorFileError,
)
from amygdala.vectors import export_gguf
from amygdala.vectors._extract import METHODS, ExtractionInput, extract
from amygdala.vectors._set import SteeringVector, SteeringVectorSet

CONCEPTS = ("joyful", "sad", "afraid")
D, LAYERS = 16, (0, 1)


def synthetic(seed: int = 0, n_scenarios: int = 8, noise: float = 0.3,
              spread: float = 3.0) -> tuple[Corpus, ExtractionInput, np.ndarray]:
    """Scenarios whose variants are baseline + a planted unit direction per concept + noise."""
    rng = np.random.default_rng(seed)
    planted = np.linalg.qr(rng.normal(size=(D, len(CONCEPTS))))[0].T  # orthonormal rows
    scenarios, stories, neutral, rows, ids = [], [], [], [], []

    def add(text: Text, vec: np.ndarray) -> Text:
        ids.append(text.id)
        rows.append(np.stack([vec, 2 * vec]))  # two layers, second scaled
        return text

    for s in range(n_scenarios):
        base_vec = rng.normal(size=D) * spread
        base = add(Text(id=f"paired/s{s}/baseline.txt", text=f"base {s}", role="baseline",
                        scenario=f"s{s}"), base_vec)
        variants = {}
        for c, concept in enumerate(CONCEPTS):
            vec = base_vec + 2.0 * planted[c] + noise * rng.normal(size=D)
            variants[concept] = add(Text(id=f"paired/s{s}/{concept}.txt", text=f"{concept} {s}",
                                         role="variant", concept=concept, scenario=f"s{s}"), vec)
        scenarios.append(Scenario(slug=f"s{s}", baseline=base, variants=variants))
    for c, concept in enumerate(CONCEPTS):
        for k in range(4):
            vec = rng.normal(size=D) * noise + 2.0 * planted[c]
            stories.append(add(Text(id=f"stories/{concept}/{k}.txt", text=f"story {concept} {k}",
                                    role="story", concept=concept), vec))
    for k in range(12):
        neutral.append(add(Text(id=f"neutral/{k}.txt", text=f"neutral {k}", role="neutral"),
                           rng.normal(size=D) * spread))
    corpus = Corpus(root=Path("synthetic"), scenarios=scenarios, stories=stories, neutral=neutral)
    data = ExtractionInput(x=np.asarray(rows, dtype=np.float32), ids=tuple(ids), layers=LAYERS)
    return corpus, data, planted


@pytest.mark.parametrize("method", METHODS)
def test_every_method_recovers_planted_directions(method: str) -> None:
    corpus, data, planted = synthetic()
    raw = extract(data, corpus, method=method, normalisation="raw")  # type: ignore[arg-type]
    for c, concept in enumerate(raw.concepts):
        cosine = raw.directions[c, 0] @ planted[CONCEPTS.index(concept)]
        floor = 0.5 if method in ("unpaired", "paired_centred", "probe", "combined",
                                  "subspace") else 0.9
        assert cosine > floor, f"{method}/{concept}: cosine {cosine:.2f}"
    np.testing.assert_allclose(np.linalg.norm(raw.directions, axis=-1), 1.0, rtol=1e-5)


def test_standardised_directions_are_raw_space_writing_directions() -> None:
    corpus, data, planted = synthetic()
    raw = extract(data, corpus, method="paired", normalisation="standardise")
    assert raw.directions.shape == (3, 2, D)
    for c, concept in enumerate(raw.concepts):
        assert raw.directions[c, 0] @ planted[CONCEPTS.index(concept)] > 0.8


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-5, 5))
def test_paired_direction_ignores_what_both_sides_share(seed: int, shift: float) -> None:
    # Adding the same content to a scenario's baseline and all its variants (the
    # activation analogue of adding the same sentence to both sides) changes nothing.
    corpus, data, _ = synthetic(seed=seed % 50)
    rng = np.random.default_rng(seed)
    x = data.x.copy()
    for scenario in corpus.scenarios:
        delta = shift * rng.normal(size=(len(LAYERS), D))
        for text in (scenario.baseline, *scenario.variants.values()):
            x[data.ids.index(text.id)] += delta
    moved = ExtractionInput(x=x, ids=data.ids, layers=data.layers)
    a = extract(data, corpus, method="paired", normalisation="raw").directions
    b = extract(moved, corpus, method="paired", normalisation="raw").directions
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_unpaired_needs_stories_and_unknown_concepts_fail() -> None:
    corpus, data, _ = synthetic()
    import attrs

    bare = attrs.evolve(corpus, stories=())
    with pytest.raises(CorpusError, match="stories"):
        extract(data, bare, method="unpaired")
    with pytest.raises(CorpusError, match="no data"):
        extract(data, corpus, concepts=["lonely"])
    with pytest.raises(ValueError, match="expected one of"):
        extract(data, corpus, method="magic")  # type: ignore[arg-type]


def test_evaluation_separates_planted_concepts_and_beats_chance() -> None:
    corpus, data, _ = synthetic()
    result = evaluate(data, corpus, methods=["paired", "pca"], normalisation="raw")
    layer, acc = result.best_layer("paired")
    assert acc > 0.9 > result.chance
    assert result.accuracy.shape == (2, 2)
    again = type(result).from_json(result.to_json())
    assert again.best_layer("paired")[0] == layer
    assert "bag-of-words" in result.render()


def make_set(corpus: Corpus, data: ExtractionInput, method: str = "paired") -> SteeringVectorSet:
    raw = extract(data, corpus, method=method, normalisation="standardise")  # type: ignore[arg-type]
    from amygdala.vectors._extract import reference_stats

    mean, std = reference_stats(data, corpus)
    return SteeringVectorSet(concepts=raw.concepts, layers=data.layers,
                             directions=raw.directions, raw_norm=raw.raw_norm,
                             resid_norm=np.array([10.0, 20.0], dtype=np.float32), mean=mean,
                             std=std, method=method, normalisation="standardise",
                             provenance={"model_id": "synthetic"})


def test_vector_set_round_trip_and_selection(tmp_path: Path) -> None:
    corpus, data, _ = synthetic()
    vectors = make_set(corpus, data)
    vectors.save(tmp_path)
    loaded = SteeringVectorSet.load(tmp_path)
    assert loaded == vectors
    np.testing.assert_array_equal(loaded.directions, vectors.directions)
    sub = loaded.select(concepts=["sad"], layers=[1])
    assert sub.directions.shape == (1, 1, D) and sub.concepts == ("sad",)
    assert np.allclose(np.diag(loaded.cosine_matrix(0)), 1.0)
    v = loaded.vector("sad", 1)
    assert v.resid_norm == 20.0
    np.testing.assert_allclose(np.linalg.norm(v.steering(2.0)), 40.0, rtol=1e-5)
    with pytest.raises(UnknownConceptError, match="did you mean 'sad'"):
        loaded.vector("sadd", 1)
    with pytest.raises(UnknownSiteError, match=r"layers \[0, 1\]"):
        loaded.vector("sad", 7)


def test_readers_fold_standardisation() -> None:
    corpus, data, _ = synthetic()
    vectors = make_set(corpus, data)
    readers = vectors.readers(0)
    std = vectors.std[0]
    # A reader scores raw x the way the unit standardised direction scores x / std.
    u = vectors.directions[:, 0] / std
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    xs = np.random.default_rng(1).normal(size=(2, D))
    ratios = [(readers @ x) / (u @ (x / std)) for x in xs]  # one positive constant per concept
    np.testing.assert_allclose(ratios[0], ratios[1], rtol=1e-4)
    assert (ratios[0] > 0).all()


def test_vector_files_errors(tmp_path: Path) -> None:
    with pytest.raises(VectorFileError, match="amygdala train"):
        SteeringVectorSet.load(tmp_path)
    corpus, data, _ = synthetic()
    make_set(corpus, data).save(tmp_path)
    (tmp_path / "vectors.json").write_text('{"format_version": 99}')
    with pytest.raises(VectorFileError, match="format_version 99"):
        SteeringVectorSet.load(tmp_path)


def test_vector_arithmetic_and_shape_checks() -> None:
    a = SteeringVector(concept="a", layer=0, direction=[1.0, 0.0], raw_norm=1, resid_norm=1,
                       method="paired")
    b = a.evolve_direction([0.0, 1.0], concept="b")
    assert (a + b).concept == "a+b"
    np.testing.assert_allclose((a - b).direction, np.array([1, -1]) / np.sqrt(2), rtol=1e-6)
    c = a.evolve_direction([1.0, 0.0, 0.0], concept="c")
    with pytest.raises(DimensionMismatchError):
        a.cosine(c)
    with pytest.raises(ValueError, match="zero"):
        a.evolve_direction([0.0, 0.0], concept="z")


def test_exports(tmp_path: Path) -> None:
    import gguf
    from safetensors.numpy import load_file

    corpus, data, _ = synthetic()
    vectors = make_set(corpus, data)
    # direction.L is added by llama.cpp to the output of 0-based block L; it rejects
    # direction.0, so layer 0 is not written (tests/test_gguf.py covers the rest).
    path = export_gguf(vectors, tmp_path / "sad.gguf", "sad", layers=[0, 1], strength=2.0)
    reader = gguf.GGUFReader(str(path))
    names = sorted(t.name for t in reader.tensors)
    assert names == ["direction.1"]
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "controlvector"
    tensor = next(t for t in reader.tensors if t.name == "direction.1")
    np.testing.assert_allclose(np.linalg.norm(tensor.data), 2.0 * 20.0, rtol=1e-4)
    ones = {x: np.ones(3, np.float32) for x in LAYERS}
    vectors.export_readout(tmp_path, neutral_mean=ones, neutral_std=ones, n_neutral_tokens=5)
    bundle = load_file(str(tmp_path / "readout.safetensors"))
    assert set(bundle) == {f"layer_{x}.{k}" for x in LAYERS for k in ("readers", "offsets")}
    assert bundle["layer_0.readers"].shape == (3, D)
    import json

    meta = json.loads((tmp_path / "readout.json").read_text())
    assert meta["concepts"] == list(vectors.concepts) and meta["hidden_size"] == D
    assert meta["neutral"]["1"]["std"] == [1.0, 1.0, 1.0]
