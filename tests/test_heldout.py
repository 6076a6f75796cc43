"""Transfer to an independent corpus: fit on one, choose the layer there, score the other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amygdala.corpus._model import Corpus, Scenario, Text
from amygdala.diagnose._heldout import HeldoutTransfer, heldout_transfer
from amygdala.errors import CorpusError, DimensionMismatchError
from amygdala.vectors._extract import ExtractionInput

D, C = 10, 4
DIRECTIONS = np.linalg.qr(np.random.default_rng(42).normal(size=(D, C)))[0].T * 3.0


def build(prefix: str, n: int, signal: list[float], seed: int, *, stories: int = 2,
          neutral: int = 20, concepts: int = C) -> tuple[Corpus, ExtractionInput]:
    """A corpus whose variants = baseline + signal[layer] * DIRECTIONS[concept] + noise."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    rows: list[np.ndarray] = []

    def add(id_: str, vec: np.ndarray, **kw: str) -> Text:
        ids.append(id_)
        rows.append(vec)
        return Text(id=id_, text=f"{prefix} text", **kw)  # type: ignore[arg-type]

    def shift(c: int) -> np.ndarray:
        return np.stack([s * DIRECTIONS[c] for s in signal])

    scenarios = []
    for s in range(n):
        slug = f"{prefix}{s}"
        base_vec = rng.normal(size=(len(signal), D))
        base = add(f"paired/{slug}/baseline.txt", base_vec, role="baseline", scenario=slug)
        variants = {f"c{c}": add(f"paired/{slug}/c{c}.txt",
                                 base_vec + shift(c) + 0.3 * rng.normal(size=(len(signal), D)),
                                 role="variant", concept=f"c{c}", scenario=slug)
                    for c in range(concepts)}
        scenarios.append(Scenario(slug=slug, baseline=base, variants=variants))
    story_texts = [add(f"stories/c{c}/{i}.txt", rng.normal(size=(len(signal), D)) + shift(c),
                       role="story", concept=f"c{c}")
                   for c in range(concepts) for i in range(stories)]
    neutral_texts = [add(f"neutral/{i}.txt", rng.normal(size=(len(signal), D)), role="neutral")
                     for i in range(neutral)]
    corpus = Corpus(root=Path(prefix), scenarios=scenarios, stories=story_texts,
                    neutral=neutral_texts)
    data = ExtractionInput(x=np.stack(rows).astype(np.float32), ids=tuple(ids),
                           layers=tuple(range(len(signal))))
    return corpus, data


def test_fits_on_train_chooses_its_layer_there_and_reads_the_test_corpus() -> None:
    train, train_data = build("t", 12, [0.0, 1.5, 0.2], seed=0)
    test, test_data = build("h", 6, [0.0, 1.5, 0.2], seed=1, neutral=0)
    result = heldout_transfer(train_data, train, test_data, test, "paired")
    assert result.layers == {"paired": 1, "readout": 1, "stories": 1}
    assert result.paired.value > 0.9 and result.readout.value > 0.9
    assert result.stories is not None and result.stories.value > 0.8
    assert result.paired.n_groups == 6 and result.readout.n_items == 6 * C
    assert result.readout.chance == pytest.approx(1 / C)
    assert set(result.bag_of_words) == {"paired", "readout", "stories"}
    assert HeldoutTransfer.from_json(result.to_json()) == result
    assert "readout" in result.render()


def test_the_test_corpus_never_influences_the_layer_choice() -> None:
    train, train_data = build("t", 12, [0.0, 1.5, 0.2], seed=0)
    # The test corpus carries its signal only at layer 2: were it used to choose, layer 2
    # would win; the training corpus says layer 1, so the test accuracy is poor.
    test, test_data = build("h", 6, [0.0, 0.0, 2.0], seed=1, neutral=0)
    result = heldout_transfer(train_data, train, test_data, test, "paired")
    assert result.layers["readout"] == 1 and result.layers["paired"] == 1
    assert result.readout.value < 0.6


def test_concepts_missing_from_training_and_layer_mismatch_are_typed_errors() -> None:
    train, train_data = build("t", 6, [0.0, 1.5], seed=0, concepts=3)
    test, test_data = build("h", 3, [0.0, 1.5], seed=1, concepts=4)
    with pytest.raises(CorpusError, match="c3"):
        heldout_transfer(train_data, train, test_data, test, "paired")
    test, test_data = build("h", 3, [0.0, 1.5, 0.0], seed=1, concepts=3)
    with pytest.raises(DimensionMismatchError, match="same layers"):
        heldout_transfer(train_data, train, test_data, test, "paired")


def test_probe_with_one_text_per_concept_reads_with_the_mean_difference() -> None:
    # One scenario: each concept has a single variant, so the within-concept covariance is
    # zero and the LDA solve used to be singular (the docs tutorial's corpus hit this).
    from amygdala.vectors._extract import extract

    corpus, data = build("t", 1, [0.0, 1.5], seed=3)
    raw = extract(data, corpus, method="probe", normalisation="raw")
    assert np.isfinite(raw.readers).all()
    for c in range(C):
        for layer in range(2):
            w, r = raw.directions[c, layer], raw.readers[c, layer]
            cos = float(w @ r / np.linalg.norm(w) / np.linalg.norm(r))
            assert cos == pytest.approx(1.0, abs=1e-6)
