"""`compare_reports` must name the cleaner of two genuinely different runs.

Two planted runs share everything but the noise on each paired difference; the
low-noise run must win every concept on most metrics, whichever side it is on.
Concept names avoid words such as "clean" that the rendered table also prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amygdala import Corpus, ExtractionInput, Scenario, SteeringVectorSet, Text
from amygdala.diagnose import compute_quality
from amygdala.diagnose._quality_render import compare_reports, render_comparison
from amygdala.vectors import extract
from amygdala.vectors._extract import reference_stats

CONCEPTS = ("alpha", "beta", "gamma", "delta")
D, LAYERS = 24, (2, 5)


def planted_run(noise: float, seed: int = 0) -> Any:
    """Quality report of a paired run whose differences are planted direction + noise."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(D, len(CONCEPTS))))[0].T
    noise_rng = np.random.default_rng(1000 + seed)
    ids, rows, scenarios, neutral = [], [], [], []

    def add(text: Text, vec: np.ndarray) -> Text:
        ids.append(text.id)
        rows.append(vec)
        return text

    for s in range(12):
        slug = f"s{s:02d}"
        base_x = rng.normal(size=(len(LAYERS), D))
        base = add(Text(id=f"paired/{slug}/baseline.txt", text=f"b {slug}", role="baseline",
                        scenario=slug), base_x)
        variants = {}
        for c, concept in enumerate(CONCEPTS):
            diff = 3.0 * directions[c] + noise * noise_rng.normal(size=(len(LAYERS), D))
            variants[concept] = add(Text(id=f"paired/{slug}/{concept}.txt",
                                         text=f"{concept} {slug}", role="variant",
                                         concept=concept, scenario=slug), base_x + diff)
        scenarios.append(Scenario(slug=slug, baseline=base, variants=variants))
    for i in range(30):
        neutral.append(add(Text(id=f"neutral/{i:02d}.txt", text=f"n {i}", role="neutral"),
                           rng.normal(size=(len(LAYERS), D))))
    corpus = Corpus(root=Path("planted"), scenarios=scenarios, stories=(), neutral=neutral)
    data = ExtractionInput(x=np.stack(rows).astype(np.float32), ids=tuple(ids), layers=LAYERS)
    raw = extract(data, corpus, method="paired")
    mean, std = reference_stats(data, corpus)
    vectors = SteeringVectorSet(
        concepts=raw.concepts, layers=LAYERS, directions=raw.directions,
        raw_norm=raw.raw_norm, resid_norm=np.ones(len(LAYERS)), mean=mean, std=std,
        method="paired", normalisation="standardise")
    return compute_quality(vectors, data, corpus)


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    return {"quiet": planted_run(noise=0.2), "noisy": planted_run(noise=2.5)}


def test_the_noisy_run_is_measurably_less_clean(runs: dict[str, Any]) -> None:
    # Independent of compare_reports: the split-half cosine of each concept drops.
    for concept in CONCEPTS:
        quiet = runs["quiet"].concept(concept).at(runs["quiet"].best_layer)
        noisy = runs["noisy"].concept(concept).at(runs["noisy"].best_layer)
        assert quiet.split_half_cosine > noisy.split_half_cosine + 0.05, concept


@pytest.mark.parametrize("quiet_side", ["A", "B"])
def test_compare_names_the_quieter_run(runs: dict[str, Any], quiet_side: str) -> None:
    a, b = ((runs["quiet"], runs["noisy"]) if quiet_side == "A"
            else (runs["noisy"], runs["quiet"]))
    rows = compare_reports(a, b)
    assert sorted(r.concept for r in rows) == sorted(CONCEPTS)
    for row in rows:
        assert row.winner == quiet_side, (row.concept, row.wins_a, row.wins_b, row.cells)
        wins_quiet, wins_noisy = ((row.wins_a, row.wins_b) if quiet_side == "A"
                                  else (row.wins_b, row.wins_a))
        assert wins_quiet > wins_noisy
    # The rendered table names the same winner on each concept's line.
    text = render_comparison(a, b, "first", "second")
    for concept in CONCEPTS:
        line = next(x for x in text.splitlines() if x.startswith(concept))
        assert f"  {quiet_side:^7}  " in line, line


def test_a_run_against_itself_is_a_tie(runs: dict[str, Any]) -> None:
    rows = compare_reports(runs["noisy"], runs["noisy"])
    assert all(r.winner == "=" and r.wins_a == r.wins_b == 0 for r in rows)
