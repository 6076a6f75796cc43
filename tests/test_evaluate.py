"""Nested evaluation, intervals, baseline-free read-out, transfer and learning curve.

Everything runs on synthetic activations with planted concept directions, built here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import pytest

from amygdala.corpus._model import Corpus, Scenario, Text
from amygdala.diagnose._evaluate import Evaluation, evaluate
from amygdala.diagnose._folds import make_fitter, method_readers
from amygdala.diagnose._intervals import accuracy_with_interval
from amygdala.diagnose._nested import Items, run_nested
from amygdala.vectors._extract import ExtractionInput, extract

D = 12


def planted(*, n_scenarios: int, signal: Sequence[float], noise: float = 0.5,
            n_concepts: int = 4, per_scenario: int | None = None, seed: int = 0,
            stories: int = 3, poison: int | None = None,
            ) -> tuple[Corpus, ExtractionInput, np.ndarray]:
    """Variants = baseline + signal[layer] * planted[concept] + noise, at each layer.

    Args:
        n_scenarios: scenarios.
        signal: planted strength per layer (the number of layers).
        noise: per-dimension noise of every text.
        n_concepts: concepts.
        per_scenario: concepts per scenario (default all), rotating.
        seed: random seed.
        stories: stories per concept (each neutral-like text + its direction).
        poison: a scenario index whose variants carry the *next* concept's direction, 10x
            stronger, at layer 0, and their own, 10x stronger, at the last layer.
    """
    rng = np.random.default_rng(seed)
    layers = len(signal)
    names = [f"c{i}" for i in range(n_concepts)]
    direction = np.linalg.qr(rng.normal(size=(D, n_concepts)))[0].T * 3.0  # [C, D]
    rows: list[np.ndarray] = []
    ids: list[str] = []

    def add(text: Text, vec: np.ndarray) -> Text:
        ids.append(text.id)
        rows.append(vec)
        return text

    def text(kind: str, **kw: str) -> Text:
        return Text(id=kind, text=kind.replace("/", " "), **kw)  # type: ignore[arg-type]

    k = per_scenario or n_concepts
    scenarios = []
    for s in range(n_scenarios):
        base_vec = rng.normal(size=(layers, D))
        base = add(text(f"paired/s{s}/baseline.txt", role="baseline", scenario=f"s{s}"),
                   base_vec)
        variants = {}
        for j in range(k):
            c = (s + j) % n_concepts
            shift = np.stack([signal[li] * direction[c] for li in range(layers)])
            if s == poison:
                shift[0] = 10 * signal[0] * direction[(c + 1) % n_concepts]
                shift[-1] = 10 * signal[-1] * direction[c]
            vec = base_vec + shift + noise * rng.normal(size=(layers, D))
            variants[names[c]] = add(text(f"paired/s{s}/{names[c]}.txt", role="variant",
                                          concept=names[c], scenario=f"s{s}"), vec)
        scenarios.append(Scenario(slug=f"s{s}", baseline=base, variants=variants))
    story_texts = [add(text(f"stories/{names[c]}/{i}.txt", role="story", concept=names[c]),
                       rng.normal(size=(layers, D)) + np.stack(
                           [signal[li] * direction[c] for li in range(layers)]))
                   for c in range(n_concepts) for i in range(stories)]
    neutral = [add(text(f"neutral/{i}.txt", role="neutral"), rng.normal(size=(layers, D)))
               for i in range(30)]
    corpus = Corpus(root=Path("planted"), scenarios=scenarios, stories=story_texts,
                    neutral=neutral)
    data = ExtractionInput(x=np.asarray(rows, np.float32), ids=tuple(ids),
                           layers=tuple(range(layers)))
    return corpus, data, direction


@pytest.mark.parametrize("method", ["paired", "paired_centred", "pca", "probe", "combined",
                                    "subspace"])
@pytest.mark.parametrize("held", [[1, 4], [0, 1, 2, 3, 5, 6]])
def test_fast_fitters_equal_extract_on_the_training_scenarios(method: str,
                                                              held: list[int]) -> None:
    corpus, data, _ = planted(n_scenarios=8, signal=(1.0, 0.5), per_scenario=3, seed=1)
    train = np.ones(8, bool)
    train[held] = False
    fit = make_fitter(data, corpus, method)(train)
    sub = attrs.evolve(corpus, scenarios=[s for s, t in zip(corpus.scenarios, train,
                                                            strict=True) if t])
    readers, offsets = method_readers(extract(data, sub, method=method))  # type: ignore[arg-type]
    index = [corpus.concepts.index(c) for c in sub.paired_concepts]
    assert fit.fitted.tolist() == [c in sub.paired_concepts for c in corpus.concepts]
    # float32 solves: a reader of norm ~1 agrees to a few float32 ulps in every element,
    # the relative tolerance alone is too tight for elements near zero (CI saw 1.5e-7).
    np.testing.assert_allclose(fit.readers[index], readers, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(fit.offsets[index], offsets, rtol=1e-5, atol=1e-6)


def test_nested_selection_never_sees_the_held_out_scenario() -> None:
    # Layer 0 carries the stronger signal; scenario 0 is poisoned: wrong concepts at layer 0
    # and a huge right one at layer 1, so any selection that sees it moves to layer 1.
    corpus, data, _ = planted(n_scenarios=8, signal=(1.0, 0.6), noise=0.6, seed=3, poison=0)
    items = Items(data, corpus, corpus.concepts)
    fitter = make_fitter(data, corpus, "paired")
    run = run_nested(fitter, items, folds=4, seed=0)
    assert run.recommended[0] == 1  # the whole corpus, poison included, is pulled to layer 1
    assert run.chosen[0, 0] == 0  # the poisoned scenario's own choice never saw it
    clean, clean_data, _ = planted(n_scenarios=8, signal=(1.0, 0.6), noise=0.6, seed=3)
    clean_run = run_nested(make_fitter(clean_data, clean, "paired"),
                           Items(clean_data, clean, clean.concepts), folds=4, seed=0)
    # Replacing the held-out scenario's texts changes nothing about its own layer choice.
    assert run.chosen[:, 0].tolist() == clean_run.chosen[:, 0].tolist()


def test_interval_contains_the_estimate_and_shrinks_with_more_scenarios() -> None:
    widths = []
    for n in (8, 64):
        corpus, data, _ = planted(n_scenarios=n, signal=(0.35,), noise=0.8, seed=5)
        acc = evaluate(data, corpus, methods=["paired"]).results["paired"].accuracy
        for a in acc.values():
            assert a.low <= a.value <= a.high
            assert a.n_groups == n
        widths.append(acc["paired"].high - acc["paired"].low)
    assert widths[1] < 0.75 * widths[0]


def test_bootstrap_resamples_whole_groups() -> None:
    # Two groups, one all right, one all wrong: replicates are 0, 0.5 or 1 (never 0.25).
    correct = np.array([True] * 4 + [False] * 4)
    acc = accuracy_with_interval(correct, np.array([0] * 4 + [1] * 4), chance=0.5)
    assert (acc.value, acc.low, acc.high) == (0.5, 0.0, 1.0)


def _hand_paired_guesses(corpus: Corpus, data: ExtractionInput,
                         layer: int) -> list[tuple[str, str]]:
    """Leave one scenario out by hand: mean standardised difference, read with unit(v)/std."""
    rows = {i: data.x[k, layer].astype(np.float64) for k, i in enumerate(data.ids)}
    neutral = np.stack([rows[t.id] for t in corpus.neutral])
    std = neutral.std(axis=0)
    out = []
    for held in corpus.scenarios:
        readers = {}
        for c in corpus.paired_concepts:
            diffs = [(rows[s.variants[c].id] - rows[s.baseline.id]) / std
                     for s in corpus.scenarios if s is not held and c in s.variants]
            if diffs:
                v = np.mean(diffs, axis=0)
                readers[c] = v / np.linalg.norm(v) / std
        cands = [c for c in held.concepts if c in readers]
        for c in held.concepts:
            diff = rows[held.variants[c].id] - rows[held.baseline.id]
            guess = max(cands, key=lambda k: float(readers[k] @ diff))
            out.append((c, guess))
    return out


def test_confusion_matrix_equals_a_hand_computation() -> None:
    corpus, data, _ = planted(n_scenarios=7, signal=(0.5, 0.2), noise=0.9, per_scenario=3,
                              seed=7)
    ev = evaluate(data, corpus, methods=["paired"], layer=1)
    conf = ev.results["paired"].confusion["paired"]
    expected = np.zeros((4, 4), int)
    for truth, guess in _hand_paired_guesses(corpus, data, layer=1):
        expected[corpus.concepts.index(truth), corpus.concepts.index(guess)] += 1
    assert 0 < np.trace(expected) < expected.sum()  # the case is not trivial
    np.testing.assert_array_equal(conf.matrix, expected)
    assert ev.results["paired"].accuracy["paired"].value == pytest.approx(
        np.trace(expected) / expected.sum())
    recall = conf.recall()
    assert recall["c0"] == pytest.approx(expected[0, 0] / expected[0].sum())


def test_baseline_free_and_cross_format_give_the_planted_answers() -> None:
    corpus, data, _ = planted(n_scenarios=10, signal=(0.0, 2.5), noise=0.3, seed=11,
                              stories=4)
    ev = evaluate(data, corpus, methods=["paired", "unpaired"])
    paired = ev.results["paired"]
    assert paired.recommended == {"paired": 1, "readout": 1}
    assert paired.accuracy["readout"].value == 1.0
    assert paired.accuracy["readout"].chance == 0.25
    assert paired.transfer["paired_to_stories"].accuracy.value == 1.0
    assert paired.transfer["paired_to_stories"].layer == 1
    assert "stories_to_paired" not in paired.transfer  # paired vectors need scenarios
    story = ev.results["unpaired"].transfer["stories_to_paired"]
    assert (story.accuracy.value, story.layer) == (1.0, 1)
    per = paired.confusion["readout"].per_concept()
    assert all(v["precision"] == v["recall"] == 1.0 for v in per.values())
    # Layer 0 carries nothing: reading there is near chance (a wrong layer is visible).
    assert paired.per_layer["readout"][0] < 0.6


def test_learning_curve_rises_with_training_scenarios() -> None:
    corpus, data, _ = planted(n_scenarios=40, signal=(0.25, 0.1), noise=0.9, seed=13)
    ev = evaluate(data, corpus, methods=["paired"], curve=True, curve_sizes=(2, 4, 8),
                  curve_draws=4)
    curve = ev.results["paired"].curve
    assert [p.size for p in curve] == [2, 4, 8, None]
    means = [p.summary("paired")["mean"] for p in curve]
    assert means[0] < means[2] < means[3]
    assert len(curve[0].draws["paired"]) == 4 and len(curve[-1].draws["paired"]) == 1


def test_evaluation_json_round_trip_keeps_the_recommended_layer(tmp_path: Path) -> None:
    corpus, data, _ = planted(n_scenarios=6, signal=(0.2, 1.5), seed=2)
    ev = evaluate(data, corpus, methods=["paired", "probe"], curve=True, curve_sizes=(2,))
    data_json = json.loads(json.dumps(ev.to_json()))
    again = Evaluation.from_json(data_json)
    assert again.to_json() == data_json
    assert data_json["best"]["paired"]["layer"] == data_json["recommended_layer"]["paired"]
    assert again.best_layer("probe") == ev.best_layer("probe")
    legacy = {"methods": ["paired"], "layers": [0, 1], "accuracy": {"paired": [0.2, 0.9]},
              "best": {"paired": {"layer": 1, "accuracy": 0.9}},
              "per_concept_at_best_layer": {"paired": {}}, "n_items": 4, "chance": 0.5,
              "bag_of_words": 0.5}
    assert Evaluation.from_json(legacy).best_layer("paired") == (1, 0.9)
    assert "DIAGNOSTIC" in ev.render() and "learning curve" in ev.render()


def test_read_alone_ranks_concepts_by_neutral_z_scores_not_raw_scores() -> None:
    from amygdala.diagnose._folds import FoldFit
    from amygdala.diagnose._nested import readout_guesses

    # Two concepts on two axes; neutral text scores concept a around 5 +- 2, b around 0 +- 0.5.
    rng = np.random.default_rng(0)
    neutral = np.stack([rng.normal(5, 2, 400), rng.normal(0, 0.5, 400)], axis=1)
    fit = FoldFit(readers=np.eye(2)[:, None, :], offsets=np.zeros((2, 1)),
                  fitted=np.array([True, True]))
    text = np.array([[[7.0, 1.0]]])  # raw: a 7 > b 1; z: a ~1 < b ~2
    z = (text[0, 0] - neutral.mean(axis=0)) / neutral.std(axis=0)
    assert z.argmax() == 1
    assert readout_guesses(fit, text, neutral[None]).tolist() == [[1]]


def test_cli_refuses_bad_options_before_loading_a_model(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    from amygdala.cli import main

    assert main(["evaluate", "paired", "--methods", "paired,magic"]) == 2
    assert "magic" in capsys.readouterr().err
    assert main(["evaluate", "paired", "--plot", str(tmp_path / "c.png")]) == 2
    assert "--learning-curve" in capsys.readouterr().err


def test_learning_curve_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from amygdala.diagnose._render_eval import write_curve_png

    corpus, data, _ = planted(n_scenarios=8, signal=(0.5,), seed=4)
    ev = evaluate(data, corpus, methods=["paired"], curve=True, curve_sizes=(2, 4))
    path = write_curve_png(ev, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----- bands, tuned shrinkage, detection (issue 15) ----------------------------------------


def test_band_columns_are_the_mean_of_their_layers() -> None:
    from amygdala.diagnose._nested import Readings

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 6, 3))  # [items, layers, concepts]
    readings = Readings(n_layers=6, widths=(3, 5))
    out = readings.expand(scores)
    assert out.shape == (5, 6 + 4 + 2, 3)
    np.testing.assert_array_equal(out[:, :6], scores)
    expected = [scores[:, s:s + w].mean(axis=1) for w in (3, 5) for s in range(6 - w + 1)]
    np.testing.assert_allclose(out[:, 6:], np.stack(expected, axis=1), rtol=1e-12)
    assert readings.members(6) == (0, 1, 2) and readings.members(11) == (1, 2, 3, 4, 5)
    assert readings.label(11, [10, 11, 12, 13, 14, 15]) == "11-15"
    assert readings.label(2, [10, 11, 12, 13, 14, 15]) == "12"


def _spread_signal(n_scenarios: int, seed: int, poison: int | None = None,
                   ) -> tuple[Corpus, ExtractionInput]:
    """Nine layers, each carrying a weak, independently noisy copy of the signal: averaging
    a band beats any single layer. ``poison``: that scenario's variants carry the *wrong*
    concept at layers 0-2 and a huge right one at layer 8."""
    corpus, data, direction = planted(n_scenarios=n_scenarios, signal=(0.45,) * 9, noise=1.2,
                                      seed=seed)
    if poison is not None:
        x = data.x.copy()
        for c, t in corpus.scenarios[poison].variants.items():
            row = data.ids.index(t.id)
            ci = corpus.concepts.index(c)
            x[row, :3] += 6 * direction[(ci + 1) % len(direction)]
            x[row, 8] += 40 * direction[ci]
        data = attrs.evolve(data, x=x)
    return corpus, data


def test_the_read_out_chooses_a_band_when_averaging_layers_helps() -> None:
    corpus, data = _spread_signal(24, seed=7)
    ev = evaluate(data, corpus, methods=["paired"], bands=(3, 9))
    result = ev.results["paired"]
    assert len(result.recommended_band["readout"]) >= 3  # a band, not a single layer
    assert result.recommended_band["paired"] == ()  # the paired task reads one layer
    single = evaluate(data, corpus, methods=["paired"], bands=())
    assert single.results["paired"].recommended_band["readout"] == ()
    assert result.accuracy["readout"].value > single.results["paired"].accuracy["readout"].value
    rec = ev.to_json()["recommended_read"]["paired"]
    assert rec["band"] == list(result.recommended_band["readout"])
    assert any("-" in label for label in result.chosen_layers["readout"])


def test_nested_band_choice_never_sees_the_held_out_scenario() -> None:
    corpus, data = _spread_signal(12, seed=8, poison=0)
    clean_corpus, clean = _spread_signal(12, seed=8)
    items = Items(data, corpus, corpus.concepts)
    run = run_nested(make_fitter(data, corpus, "paired"), items, folds=4, seed=0,
                     bands=(3, 9))
    clean_run = run_nested(make_fitter(clean, clean_corpus, "paired"),
                           Items(clean, clean_corpus, clean_corpus.concepts), folds=4, seed=0,
                           bands=(3, 9))
    # The poison moves whole-corpus choices, never the poisoned scenario's own choice.
    assert run.chosen[:, 0].tolist() == clean_run.chosen[:, 0].tolist()
    held_group = run.chosen[1] == run.chosen[1, 0]
    assert held_group.any()


def test_fast_probe_with_any_shrinkage_equals_extract() -> None:
    from amygdala.diagnose._folds import make_fitters

    corpus, data, _ = planted(n_scenarios=8, signal=(1.0, 0.5), per_scenario=3, seed=1)
    train = np.ones(8, bool)
    train[[2, 5]] = False
    sub = attrs.evolve(corpus, scenarios=[s for s, t in zip(corpus.scenarios, train,
                                                            strict=True) if t])
    fits = make_fitters(data, corpus, "probe", shrinkages=(0.5, 0.1, 0.9))
    for a, fitter in zip((0.5, 0.1, 0.9), fits, strict=True):
        readers, _ = method_readers(extract(data, sub, method="probe", shrinkage=a))
        np.testing.assert_allclose(fitter(train).readers, readers, rtol=1e-4, atol=1e-6)
    low = method_readers(extract(data, sub, method="probe", shrinkage=0.1))[0]
    high = method_readers(extract(data, sub, method="probe", shrinkage=0.9))[0]
    assert not np.allclose(low, high)  # the setting matters, so choosing it means something
    assert len(make_fitters(data, corpus, "paired", shrinkages=(0.5, 0.1))) == 1


def test_the_chosen_shrinkage_is_recorded_and_one_value_means_no_choice() -> None:
    corpus, data, _ = planted(n_scenarios=10, signal=(0.4, 0.8), noise=0.8, seed=12)
    ev = evaluate(data, corpus, methods=["probe", "paired"])
    probe = ev.results["probe"]
    assert probe.settings["readout"]["shrinkage"] in (0.5, 0.1, 0.9)
    assert sum(probe.chosen_settings["readout"].values()) == 10  # one per held-out scenario
    assert ev.results["paired"].settings["readout"] == {}
    fixed = evaluate(data, corpus, methods=["probe"], shrinkages=(0.3,))
    assert fixed.results["probe"].settings["readout"] == {}
    assert ev.to_json()["recommended_settings"]["probe"] == probe.settings["readout"]


def test_weighted_auc_equals_counting_pairs() -> None:
    from amygdala.diagnose._detection import weighted_auc

    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=40), 1)  # rounding makes ties
    positive = rng.random(40) < 0.3
    weights = rng.integers(0, 3, size=(4, 40)).astype(float)
    got = weighted_auc(scores, positive, weights)
    for r in range(4):
        num = den = 0.0
        for i in np.flatnonzero(positive):
            for j in np.flatnonzero(~positive):
                w = weights[r, i] * weights[r, j]
                num += w * (1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j]
                            else 0.0)
                den += w
        assert got[r] == pytest.approx(num / den)


def test_relative_view_detects_better_when_a_shared_component_dominates() -> None:
    from amygdala.diagnose._detection import detection_auc

    rng = np.random.default_rng(4)
    truth = np.repeat(np.arange(4), 25)
    own = np.eye(4)[truth] * 1.0
    shared = rng.normal(0, 3.0, size=(100, 1))  # every concept rises and falls together
    z = own + shared + rng.normal(0, 0.3, size=(100, 4))
    groups = np.arange(100) // 4
    names = ("a", "b", "c", "d")
    raw = detection_auc(z, truth, groups, names)
    rel = detection_auc(z - z.mean(axis=1, keepdims=True), truth, groups, names)
    assert rel.value > 0.95 > raw.value
    assert raw.low <= raw.value <= raw.high
    assert set(raw.per_concept) == set(names)


def test_evaluation_records_detection_and_the_better_view() -> None:
    corpus, data, _ = planted(n_scenarios=10, signal=(0.3, 1.2), noise=0.6, seed=6)
    ev = evaluate(data, corpus, methods=["paired"])
    result = ev.results["paired"]
    assert set(result.detection) == {"z", "relative"}
    best = max(("z", "relative"), key=lambda v: result.detection[v].value)
    assert result.recommended_view == best
    again = Evaluation.from_json(json.loads(json.dumps(ev.to_json())))
    assert again.results["paired"].detection["relative"].value == pytest.approx(
        result.detection["relative"].value, abs=1e-4)
    assert "detection" in ev.render()


def test_recommended_read_prefers_the_read_out_task(tmp_path: Path) -> None:
    from amygdala.intervene._readout import recommended_read

    assert recommended_read(tmp_path, "paired").layer is None
    (tmp_path / "evaluation.json").write_text(json.dumps({
        "recommended_layer": {"paired": 14},
        "recommended_read": {"paired": {"layer": 17, "band": [16, 17, 18],
                                        "view": "relative"}}}))
    rec = recommended_read(tmp_path, "paired")
    assert (rec.layer, rec.band, rec.view, rec.layers) == (17, (16, 17, 18), "relative",
                                                          [16, 17, 18])
    (tmp_path / "evaluation.json").write_text(json.dumps({"recommended_layer": {"paired": 14}}))
    old = recommended_read(tmp_path, "paired")
    assert (old.layer, old.band, old.view, old.view_named) == (14, (), "z", False)
