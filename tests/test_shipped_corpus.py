"""The corpus shipped at the repository root loads, lints clean and covers every concept."""

from __future__ import annotations

from pathlib import Path

import pytest

from amygdala.corpus._lint import lint_path
from amygdala.corpus._model import (
    CANONICAL_COGNITIVE,
    CANONICAL_CONCEPTS,
    CANONICAL_EMOTIONS,
    Corpus,
)

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_SCENARIOS = (
    "finding_the_abstraction", "finishing_the_patch", "kitchen_at_3am", "letter_in_drawer",
    "park_after_rain", "reading_unfamiliar_code", "the_comment", "the_doorway",
    "the_green_build", "the_long_meeting", "the_paper", "the_undressing", "tracing_a_bug",
    "waiting_for_results",
)  # fmt: skip
ALL_COGNITIVE = ("tracing_a_bug", "reading_unfamiliar_code", "finding_the_abstraction")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.load(ROOT)


def test_lints_without_errors() -> None:
    report = lint_path(ROOT)
    assert report.ok, "\n".join(f"{f.path}: [{f.code}] {f.message}" for f in report.errors)


def test_concepts_are_canonical(corpus: Corpus) -> None:
    assert set(corpus.concepts) <= set(CANONICAL_CONCEPTS)


def test_scenarios(corpus: Corpus) -> None:
    slugs = {s.slug for s in corpus.scenarios}
    assert len(slugs) >= 30
    assert sorted(set(REQUIRED_SCENARIOS) - slugs) == []


def test_every_scenario_has_5_to_10_concepts(corpus: Corpus) -> None:
    sizes = {s.slug: len(s.variants) for s in corpus.scenarios}
    assert {slug: n for slug, n in sizes.items() if not 5 <= n <= 10} == {}


def test_every_emotion_in_5_scenarios(corpus: Corpus) -> None:
    counts = {c: sum(c in s.variants for s in corpus.scenarios) for c in CANONICAL_EMOTIONS}
    assert {c: n for c, n in counts.items() if n < 5} == {}


def test_cognitive_states(corpus: Corpus) -> None:
    by_slug = {s.slug: s for s in corpus.scenarios}
    for slug in ALL_COGNITIVE:
        assert set(CANONICAL_COGNITIVE) <= set(by_slug[slug].variants), slug
    counts = {c: sum(c in s.variants for s in corpus.scenarios) for c in CANONICAL_COGNITIVE}
    assert {c: n for c, n in counts.items() if n < 4} == {}


def test_every_concept_has_4_stories(corpus: Corpus) -> None:
    counts = {c: sum(t.concept == c for t in corpus.stories) for c in CANONICAL_CONCEPTS}
    assert {c: n for c, n in counts.items() if n < 4} == {}


def test_neutral_texts(corpus: Corpus) -> None:
    assert len(corpus.neutral) >= 40
