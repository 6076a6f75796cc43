"""Tests of the corpus-wide cue checks: length-bias, cue-word, cue-phrase, event-drift, meta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amygdala.corpus import lint_path
from amygdala.corpus._cues import lemma
from tests.corpus_helpers import prose, write

CONCEPTS = ("sad", "calm", "proud")


def _corpus(root: Path, *, scenarios: int = 8, variant=None) -> Path:  # type: ignore[no-untyped-def]
    """Write ``scenarios`` scenarios; ``variant(s, concept, baseline)`` gives each variant."""
    for s in range(scenarios):
        folder = root / "paired" / f"scene_{s}"
        write(folder / "anchors.txt", "Mo\nbox\n")
        base = prose(90, 1000 + s)
        write(folder / "baseline.txt", base)
        for c in CONCEPTS:
            text = variant(s, c, base) if variant else _swap(base, s, c)
            write(folder / f"{c}.txt", text)
    return root


def _swap(base: str, s: int, concept: str) -> str:
    """The baseline with a few words changed, half a word shorter or longer per concept."""
    words = base.split()
    k = CONCEPTS.index(concept)
    words[5 + k] = "lamp"
    if (s + k) % 2:
        words = words[:-2]
    else:
        words.extend(["near", "the"])
    return " ".join(words) + "\n"


def _codes(root: Path, code: str) -> list[str]:
    return [f.message for f in lint_path(root).findings if f.code == code]


def test_balanced_corpus_has_no_cue_findings(tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    for code in ("length-bias", "cue-word", "cue-phrase", "event-drift"):
        assert _codes(root, code) == [], code


def test_length_bias_counts_longer_variants_per_concept_and_corpus(tmp_path: Path) -> None:
    def longer(s: int, c: str, base: str) -> str:
        words = base.split()
        words[7] = "lamp"
        return " ".join(words + (["near", "the", "door"] if c == "sad" or s % 4 else [])) + "\n"

    messages = _codes(_corpus(tmp_path, variant=longer), "length-bias")
    # sad: 8 of 8 longer; calm and proud: 6 of 8 (every s not divisible by 4); corpus 20/24.
    assert any("8 of 8 'sad'" in m for m in messages), messages
    assert any("6 of 8 'calm'" in m for m in messages), messages
    assert any("20 of 24 variants (83%)" in m for m in messages), messages
    assert any("median variant/baseline word ratio is 1.033" in m for m in messages), messages


def test_cue_word_flags_a_word_marking_one_concept(tmp_path: Path) -> None:
    def thanks(s: int, c: str, base: str) -> str:
        text = _swap(base, s, c)
        if c == "proud" and s < 3:  # 3 of 8 proud variants: 38% >= 25%, no baseline, no other
            return text.replace("Mo took", "Mo thanked the box and took", 1)
        return text

    messages = _codes(_corpus(tmp_path, variant=thanks), "cue-word")
    assert any(m.startswith("thank: proud 3/8, baselines 0/8, other concepts' variants 0/16")
               for m in messages), messages
    assert not any(m.startswith(("thank: sad", "thank: calm")) for m in messages)


def test_cue_word_ignores_words_common_in_baselines(tmp_path: Path) -> None:
    # "box" is in every baseline (the lead of `prose`), so it is never a cue.
    messages = _codes(_corpus(tmp_path), "cue-word")
    assert not any(m.startswith("box:") for m in messages)


def test_cue_phrase_flags_a_stock_turn(tmp_path: Path) -> None:
    def turn(s: int, c: str, base: str) -> str:
        text = _swap(base, s, c)
        if c == "calm" and s in (1, 4, 6):
            return text.replace("Mo took", "Mo let the quiet settle and took", 1)
        return text

    messages = _codes(_corpus(tmp_path, variant=turn), "cue-phrase")
    assert any(m.startswith("'let the quiet': in 3/8 calm variants") for m in messages), messages


def test_event_drift_flags_a_variant_that_tells_another_event(tmp_path: Path) -> None:
    def drift(s: int, c: str, base: str) -> str:
        if s == 2 and c == "sad":
            return prose(88, 77, lead="Mo took the box") .replace("Mo", "Mo", 1)
        return _swap(base, s, c)

    found = [f for f in lint_path(_corpus(tmp_path, variant=drift)).findings
             if f.code == "event-drift"]
    assert [f.path for f in found] == ["paired/scene_2/sad.txt"]


def test_meta_json_forms_are_counted_and_checked(tmp_path: Path) -> None:
    root = _corpus(tmp_path, scenarios=3)
    write(root / "paired/scene_0/meta.json", json.dumps({"form": "diary", "setting": "home"}))
    write(root / "paired/scene_1/meta.json", json.dumps({"form": "diary", "setting": "home"}))
    write(root / "paired/scene_2/meta.json", json.dumps({"form": "haiku", "setting": "moon"}))
    report = lint_path(root)
    assert dict(report.forms) == {"diary": 2}
    bad = [f.message for f in report.findings if f.code == "meta"]
    assert len(bad) == 2
    assert "'haiku' is not one of" in bad[0] and "'moon' is not one of" in bad[1]
    assert not [f for f in report.findings if f.code == "stray-file"]
    assert "diary" in report.render()


@pytest.mark.parametrize(("word", "stem"), [("thanks", "thank"), ("thanked", "thank"),
                                            ("thanking", "thank"), ("hurries", "hurry"),
                                            ("stopped", "stop"), ("falling", "fall"),
                                            ("glass", "glass"), ("bus", "bus"), ("cat", "cat")])
def test_lemma(word: str, stem: str) -> None:
    assert lemma(word) == stem


def test_cue_phrase_ignores_turns_the_baselines_use(tmp_path: Path) -> None:
    def turn(s: int, c: str, base: str) -> str:
        text = _swap(base, s, c)
        if c == "calm" and s in (1, 4, 6):
            return text.replace("Mo took", "Mo let the quiet settle and took", 1)
        return text

    root = _corpus(tmp_path, variant=turn)
    base = root / "paired/scene_7/baseline.txt"
    base.write_text(base.read_text().replace("Mo took", "Mo let the quiet settle and took", 1))
    messages = _codes(root, "cue-phrase")
    assert not any(m.startswith("'let the quiet'") for m in messages), messages
