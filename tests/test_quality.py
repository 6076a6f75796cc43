"""Quality report: synthetic activations with a planted answer, JSON, CLI, and SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amygdala.cli import main
from amygdala.corpus._model import Corpus, Scenario, Text
from amygdala.diagnose._evaluate import Evaluation
from amygdala.diagnose._quality import (
    QUALITY_FILE,
    QualityFileError,
    QualityReport,
    build_quality_report,
    compute_quality,
)
from amygdala.diagnose._quality_render import compare_reports, render_comparison
from amygdala.vectors._extract import ExtractionInput, extract, reference_stats
from amygdala.vectors._set import SteeringVectorSet
from tests.conftest import tiny_llama

D, D_MLP, HEADS = 64, 128, 4
LAYERS = (3, 7)
N_SCENARIOS = 8
NEURON = 17
MISLABELLED = 4  # scenario index whose "mislabel" variant carries another concept
CONCEPTS = ("clean", "mislabel", "neuron", "scattered", "twin_a", "twin_b")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)  # type: ignore[no-any-return]


def _text(id_: str, role: str, concept: str | None = None, scenario: str | None = None) -> Text:
    return Text(id=id_, text=f"text of {id_}", role=role,  # type: ignore[arg-type]
                concept=concept, scenario=scenario)


def _synthetic(seed: int = 0, method: str = "paired") -> dict[str, Any]:
    """A corpus and activations where each concept's answer is planted.

    clean: one direction, varying strength, little noise; twin_a/twin_b: the same
    direction; neuron: a W_down column; scattered: a new random direction per
    scenario; mislabel: like clean except one scenario that carries another direction.
    """
    rng = np.random.default_rng(seed)
    w_down = {layer: rng.normal(size=(D_MLP, D)) for layer in LAYERS}
    planted = {c: _unit(rng.normal(size=D)) for c in ("clean", "twin", "mislabel", "other")}
    scenarios, rows, ids = [], [], []

    def add(id_: str, vec: np.ndarray) -> None:
        ids.append(id_)
        rows.append(vec)

    for s in range(N_SCENARIOS):
        slug = f"s{s}"
        base = _text(f"paired/{slug}/baseline.txt", "baseline", scenario=slug)
        base_x = rng.normal(size=(len(LAYERS), D))
        add(base.id, base_x)
        variants = {}
        for concept in CONCEPTS:
            strength = rng.uniform(2.5, 3.5)
            if concept in ("twin_a", "twin_b"):
                diff = strength * planted["twin"]
            elif concept == "neuron":
                diff = strength * np.stack([_unit(w_down[x][NEURON]) for x in LAYERS])
            elif concept == "scattered":
                diff = 3.0 * _unit(rng.normal(size=(len(LAYERS), D)))
            elif concept == "mislabel" and s == MISLABELLED:
                diff = strength * planted["other"]
            else:
                diff = strength * planted[concept]
            diff = diff + 0.15 * rng.normal(size=(len(LAYERS), D))
            text = _text(f"paired/{slug}/{concept}.txt", "variant", concept, slug)
            variants[concept] = text
            add(text.id, base_x + diff)
        scenarios.append(Scenario(slug=slug, baseline=base, variants=variants))
    stories = []
    for concept in ("clean", "twin_a"):
        for i in range(6):
            story = _text(f"stories/{concept}/{i}.txt", "story", concept)
            stories.append(story)
            direction = planted["twin" if concept == "twin_a" else concept]
            add(story.id, rng.normal(size=(len(LAYERS), D)) * 0.3 + 3.0 * direction)
    neutral = []
    for i in range(30):
        text = _text(f"neutral/{i}.txt", "neutral")
        neutral.append(text)
        add(text.id, rng.normal(size=(len(LAYERS), D)))
    corpus = Corpus(root="/nonexistent", scenarios=scenarios, stories=stories, neutral=neutral)
    data = ExtractionInput(x=np.stack(rows).astype(np.float32), ids=tuple(ids), layers=LAYERS)
    raw = extract(data, corpus, method=method)  # type: ignore[arg-type]
    mean, std = reference_stats(data, corpus)
    vectors = SteeringVectorSet(
        concepts=raw.concepts, layers=LAYERS, directions=raw.directions, raw_norm=raw.raw_norm,
        resid_norm=np.ones(len(LAYERS)), mean=mean, std=std, method=method,
        normalisation="standardise", provenance={"model_id": "synthetic"})
    return {"corpus": corpus, "data": data, "vectors": vectors, "w_down": w_down,
            "planted": planted}


@pytest.fixture(scope="module")
def synthetic() -> dict[str, Any]:
    return _synthetic()


@pytest.fixture(scope="module")
def report(synthetic: dict[str, Any]) -> QualityReport:
    return compute_quality(synthetic["vectors"], synthetic["data"], synthetic["corpus"],
                           w_down=synthetic["w_down"])


def test_planted_direction_is_clean(report: QualityReport) -> None:
    clean = report.concept("clean")
    q = clean.at(report.best_layer)
    assert q.first_pc_variance_ratio > 0.8
    assert q.alignment_min > 0.8
    assert q.split_half_cosine is not None
    assert q.split_half_cosine > 0.95
    assert clean.labels == ("clean",)
    assert clean.n_scenarios == N_SCENARIOS
    assert clean.n_stories == 6
    assert len(q.alignments) == N_SCENARIOS
    assert len(q.nearest) == 5


def test_two_concepts_on_one_direction_are_contaminated(report: QualityReport) -> None:
    for name, other in (("twin_a", "twin_b"), ("twin_b", "twin_a")):
        entry = report.concept(name)
        assert "contaminated" in entry.labels
        assert entry.at(report.best_layer).nearest[0][0] == other
        assert any(r.startswith("contaminated:") and other in r for r in entry.reasons)
    assert "contaminated" not in report.concept("clean").labels


def test_direction_on_one_w_down_column_is_single_neuron(report: QualityReport) -> None:
    entry = report.concept("neuron")
    q = entry.at(report.best_layer)
    assert "single_neuron" in entry.labels
    assert q.neuron_index == NEURON
    assert q.neuron_cosine is not None
    assert abs(q.neuron_cosine) > 0.9
    assert "single_neuron" not in report.concept("clean").labels


def test_scattered_positives_are_fragmented(report: QualityReport) -> None:
    entry = report.concept("scattered")
    q = entry.at(report.best_layer)
    assert "fragmented" in entry.labels
    assert "clean" not in entry.labels
    assert q.first_pc_variance_ratio < 0.4
    assert q.effective_dimension > 3


def test_mislabelled_story_is_top_outlier(report: QualityReport) -> None:
    q = report.concept("mislabel").at(report.best_layer)
    assert q.outliers[0][0] == f"paired/s{MISLABELLED}/mislabel.txt"
    assert q.outliers[0][1] < 0.5 < q.outliers[1][1]


def test_redundancy_and_worst_first(report: QualityReport) -> None:
    assert report.concept("twin_a").at(report.best_layer).redundancy_r2 > 0.9  # type: ignore[operator]
    assert report.concept("clean").at(report.best_layer).redundancy_r2 < 0.5  # type: ignore[operator]
    order = [c.concept for c in report.worst_first()]
    assert order.index("scattered") < order.index("clean")
    assert order[-1] in ("clean", "mislabel")


def test_head_concentration(synthetic: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    vectors = synthetic["vectors"]
    writes = {}
    for li, layer in enumerate(LAYERS):
        w = rng.normal(size=(len(vectors.concepts), HEADS, D)) * 0.01
        w[vectors.concepts.index("clean"), 2] += 5 * vectors.directions[0, li]
        writes[layer] = w
    report = compute_quality(vectors, synthetic["data"], synthetic["corpus"],
                             head_writes=writes)
    q = report.concept("clean").at(LAYERS[1])
    assert q.head_index == 2
    assert q.head_share is not None
    assert q.head_share > 0.9
    assert report.concept("clean").at(LAYERS[0]).neuron_index is None


def test_evaluation_picks_best_layer_and_loso(synthetic: dict[str, Any]) -> None:
    evaluation = Evaluation(methods=("paired",), layers=LAYERS, accuracy=np.array([[0.9, 0.5]]),
                            recommended={"paired": LAYERS[0]},
                            per_concept={"paired": {"clean": 1.0, "scattered": 0.25}},
                            n_items=48, chance=0.2, bag_of_words=0.3)
    report = compute_quality(synthetic["vectors"], synthetic["data"], synthetic["corpus"],
                             evaluation=evaluation)
    assert (report.best_layer, report.best_layer_source) == (LAYERS[0], "evaluation")
    assert report.loso_layer == LAYERS[0]
    assert report.concept("clean").loso_accuracy == 1.0
    assert report.concept("twin_a").loso_accuracy is None


def test_without_evaluation_the_layer_is_the_runs_middle_layer(report: QualityReport,
                                                                synthetic: dict[str, Any]) -> None:
    # The run's one rule (RunDir.best_layer): no evaluation -> layers[len // 2].
    assert (report.best_layer, report.best_layer_source) == (LAYERS[1], "middle")
    assert report.loso_layer is None
    # An evaluation whose layer the vectors lack falls back to the middle layer too.
    evaluation = Evaluation(methods=("paired",), layers=(0, 1), accuracy=np.array([[0.9, 0.5]]),
                            recommended={"paired": 0}, per_concept={"paired": {}},
                            n_items=48, chance=0.2, bag_of_words=0.3)
    other = compute_quality(synthetic["vectors"], synthetic["data"], synthetic["corpus"],
                            evaluation=evaluation)
    assert (other.best_layer, other.best_layer_source) == (LAYERS[1], "middle")


def test_layers_subset_and_missing_layer(synthetic: dict[str, Any]) -> None:
    report = compute_quality(synthetic["vectors"], synthetic["data"], synthetic["corpus"],
                             layers=[LAYERS[1]])
    assert report.layers == (LAYERS[1],)
    assert [q.layer for q in report.concept("clean").layers] == [LAYERS[1]]
    with pytest.raises(LookupError, match="layer 5"):
        report.concept("clean").at(5)


def test_unpaired_uses_stories() -> None:
    synthetic = _synthetic(method="unpaired")
    report = compute_quality(synthetic["vectors"], synthetic["data"], synthetic["corpus"])
    entry = report.concept("clean")
    assert entry.positives == tuple(f"stories/clean/{i}.txt" for i in range(6))
    assert entry.at(report.best_layer).alignment_mean > 0.5
    assert report.method == "unpaired"


def test_json_round_trip_is_exact(report: QualityReport, tmp_path: Path) -> None:
    text = json.dumps(report.to_json())
    assert QualityReport.from_json(json.loads(text)) == report
    path = report.save(tmp_path)
    assert path == tmp_path / QUALITY_FILE
    assert QualityReport.load(tmp_path) == report
    assert not [p for p in tmp_path.iterdir() if p.name != QUALITY_FILE]  # no temp left
    data = json.loads(path.read_text())
    assert data["schema_version"] == 2
    assert data["concept_names"] == list(CONCEPTS)
    assert data["thresholds"]["clean_first_pc"] == 0.7


def test_newer_schema_is_refused(report: QualityReport) -> None:
    data = report.to_json()
    data["schema_version"] = 99
    with pytest.raises(QualityFileError, match="schema_version 99"):
        QualityReport.from_json(data)
    del data["schema_version"]
    with pytest.raises(QualityFileError):
        QualityReport.load("/nonexistent/run")


def test_render_lists_every_concept_with_reasons(report: QualityReport) -> None:
    text = report.render()
    for concept in CONCEPTS:
        assert concept in text
    assert "fragmented: first PC carries" in text
    assert "contaminated: cosine" in text
    assert text.index("scattered") < text.index("\nclean ")


def test_compare_prefers_cleaner_run(report: QualityReport, synthetic: dict[str, Any]) -> None:
    noisy = _synthetic(seed=3)
    worse = compute_quality(noisy["vectors"], noisy["data"], noisy["corpus"])
    rows = {r.concept: r for r in compare_reports(report, report)}
    assert all(r.winner == "=" for r in rows.values())
    text = render_comparison(report, worse, "paired", "other")
    assert "cleaner" in text
    assert "clean" in text


def test_cli_report_compare_and_plot(report: QualityReport, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    report.save(run_a)
    report.save(run_b)
    assert main(["report", str(run_a)]) == 0
    assert "worst first" in capsys.readouterr().out
    assert main(["report", "--compare", str(run_a), str(run_b)]) == 0
    assert "tie 6" in capsys.readouterr().out
    assert main(["report", str(run_a), "--json"]) == 0
    assert QualityReport.from_json(json.loads(capsys.readouterr().out)) == report
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "vectors.json" in capsys.readouterr().err
    pytest.importorskip("matplotlib")
    evaluation = Evaluation(methods=("paired",), layers=LAYERS, accuracy=np.array([[0.9, 0.5]]),
                            recommended={"paired": LAYERS[0]},
                            per_concept={"paired": {}}, n_items=48, chance=0.2,
                            bag_of_words=0.3)
    (run_a / "evaluation.json").write_text(json.dumps(evaluation.to_json()))
    plots = tmp_path / "plots"
    assert main(["report", str(run_a), "--plot", str(plots)]) == 0
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["accuracy_by_layer.png", "alignment.png", "cosine_heatmap.png"]
    assert all((plots / n).read_bytes()[:4] == b"\x89PNG" for n in names)


@pytest.mark.smollm
def test_smollm_quality_report(small_run: Any, tmp_path: Path) -> None:
    result, session = small_run.result, small_run.session
    layers = [8, 20]
    report = build_quality_report(session, result.vectors, result.data, small_run.corpus,
                                  layers=layers)
    dims = session.backend.dims
    assert report.layers == tuple(layers)
    assert len(report.concepts) == 6
    for entry in report.concepts:
        assert entry.n_scenarios == len(small_run.corpus.scenarios_with(entry.concept))
        for q in entry.layers:
            assert 0 < q.first_pc_variance_ratio <= 1
            assert q.neuron_index is not None
            assert 0 <= q.neuron_index < dims.d_mlp
            assert q.head_index is not None
            assert 0 <= q.head_index < dims.n_heads
            assert q.head_share is not None
            assert 1 / dims.n_heads <= q.head_share <= 1
            assert q.split_half_cosine is not None
            assert -1 <= q.split_half_cosine <= 1
            assert len(q.alignments) == entry.n_scenarios
    # Store-backed: the per-head activations are now cached, a rerun captures nothing.
    from amygdala._types import Site

    texts = [t.text for s in small_run.corpus.scenarios for t in (s.baseline,
                                                                  *s.variants.values())]
    assert not session.store.missing(texts, [Site(layer=x, point="attn_heads") for x in layers])
    report.save(tmp_path)
    assert QualityReport.load(tmp_path) == report
    assert "worst first" in report.render()


def test_build_quality_report_on_tiny_model(tmp_path: Path) -> None:
    from amygdala._types import Pooling, Site
    from amygdala.backends._registry import get_backend
    from amygdala.store._store import ActivationStore
    from amygdala.vectors._train import Session, TrainConfig, train

    scenarios = []
    for s in range(6):
        slug = f"s{s}"
        variants = {c: Text(id=f"paired/{slug}/{c}.txt", role="variant", concept=c,
                            scenario=slug, text=f"Mo {word} walked to the shop number {s}.")
                    for c, word in (("sad", "slowly"), ("joyful", "happily"))}
        base = Text(id=f"paired/{slug}/baseline.txt", role="baseline", scenario=slug,
                    text=f"Mo walked to the shop number {s}.")
        scenarios.append(Scenario(slug=slug, baseline=base, variants=variants))
    neutral = [Text(id=f"neutral/{i}.txt", role="neutral", text=f"The bus came at {i}.")
               for i in range(8)]
    corpus = Corpus(root=tmp_path, scenarios=scenarios, neutral=neutral)
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    store = ActivationStore(tmp_path / "store", fingerprint=loaded.fingerprint, pooling=Pooling())
    session = Session(loaded=loaded, backend=backend, store=store)
    result = train(corpus, config=TrainConfig(), session=session)
    report = build_quality_report(session, result.vectors, result.data, corpus)
    dims = backend.dims
    assert report.layers == tuple(range(dims.n_layers))
    for entry in report.concepts:
        for q in entry.layers:
            assert q.neuron_index is not None
            assert 0 <= q.neuron_index < dims.d_mlp
            assert q.head_index is not None
            assert 0 <= q.head_index < dims.n_heads
            assert q.head_share is not None
            assert 1 / dims.n_heads - 1e-6 <= q.head_share <= 1
    texts = [t.text for s in scenarios for t in (s.baseline, *s.variants.values())]
    sites = [Site(layer=x, point="attn_heads") for x in report.layers]
    assert not store.missing(texts, sites)
    assert build_quality_report(session, result.vectors, result.data, corpus) == report


def _flat(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _flat(value[k])]
    if isinstance(value, list):
        return [x for item in value for x in _flat(item)]
    return [value]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 10.0))
def test_report_ignores_offsets_shared_by_each_pair(seed: int, scale: float) -> None:
    """Adding one vector to a scenario's baseline and all its variants changes nothing."""
    syn = _synthetic(seed=seed % 4)
    data, corpus = syn["data"], syn["corpus"]
    rng = np.random.default_rng(seed)
    x = data.x.copy()
    for scenario in corpus.scenarios:
        rows = [data.ids.index(t.id) for t in (scenario.baseline, *scenario.variants.values())]
        x[rows] += (scale * rng.normal(size=x.shape[1:])).astype(np.float32)
    moved = ExtractionInput(x=x, ids=data.ids, layers=data.layers)
    a = compute_quality(syn["vectors"], data, corpus, w_down=syn["w_down"]).to_json()
    b = compute_quality(syn["vectors"], moved, corpus, w_down=syn["w_down"]).to_json()
    fa, fb = _flat(a), _flat(b)
    assert [type(v) for v in fa] == [type(v) for v in fb]
    for va, vb in zip(fa, fb, strict=True):
        if isinstance(va, float):
            assert va == pytest.approx(vb, abs=1e-3)
        else:
            assert va == vb
    for entry in a["concepts"]:
        for q in entry["layers"]:
            n = len(q["alignment"]["values"])
            assert 1 / n - 1e-6 <= q["first_pc_variance_ratio"] <= 1 + 1e-6
            assert 1 - 1e-6 <= q["effective_dimension"] <= n + 1e-6
            assert all(-1 - 1e-6 <= v <= 1 + 1e-6 for v in q["alignment"]["values"])
