"""Tests of the corpus linter, lexicon and leakage check, and `amygdala lint`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amygdala.cli import main
from amygdala.corpus._leakage import bag_of_words_loso
from amygdala.corpus._lexicon import BANNED_WORDS, EMOTION_WORDS, load_lexicon
from amygdala.corpus._lint import Finding, LintReport, lint_path
from amygdala.corpus._model import Corpus
from amygdala.errors import CorpusError
from tests.corpus_helpers import prose, write


def make_corpus(root: Path, *, scenarios: int = 3, concepts: tuple[str, ...] = ("sad", "calm"),
                anchors: str = "Mo\nbox\n") -> Path:
    seed = 0
    for s in range(scenarios):
        folder = root / "paired" / f"scene_{s}"
        write(folder / "anchors.txt", anchors)
        for name in ("baseline", *concepts):
            seed += 1
            write(folder / f"{name}.txt", prose(90, seed))
    for concept in concepts:
        seed += 1
        write(root / "stories" / concept / "0.txt", prose(90, seed))
    seed += 1
    write(root / "neutral" / "0.txt", prose(90, seed))
    return root


def only(report: LintReport, code: str) -> Finding:
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, report.render()
    return found[0]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path)


def test_clean_corpus_has_no_findings(corpus: Path) -> None:
    report = lint_path(corpus)
    assert report.findings == (), report.render()
    assert report.ok
    assert dict(report.coverage) == {"calm": 3, "sad": 3}
    assert dict(report.story_counts) == {"calm": 1, "sad": 1}
    assert report.n_scenarios == 3
    assert report.n_neutral == 1


def test_label(corpus: Path) -> None:
    write(corpus / "paired" / "scene_1" / "calm.txt",
          prose(60, 5) + "\nThen she felt very happy and Mo set down the box.\n")
    finding = only(lint_path(corpus), "label")
    assert finding.severity == "error"
    assert finding.path == "paired/scene_1/calm.txt"
    assert finding.message.startswith("line 3: 'felt very happy' names an emotion; expected no "
                                      "explicit labels.")


def test_label_wave_of(corpus: Path) -> None:
    write(corpus / "paired" / "scene_1" / "calm.txt", prose(85, 5) + "A wave of relief came.\n")
    assert "'a wave of relief'" in only(lint_path(corpus), "label").message


def test_wrong_length(corpus: Path) -> None:
    write(corpus / "paired" / "scene_2" / "sad.txt", prose(120, 5))
    finding = only(lint_path(corpus), "length-ratio")
    assert finding.severity == "error"
    assert finding.message.startswith("has 120 words but its baseline has 90; expected 72-108 "
                                      "words (±20%).")


def test_baseline_length(corpus: Path) -> None:
    # Fixed seeds: str hashes change with PYTHONHASHSEED, and so would the prose.
    for seed, name in enumerate(("baseline", "sad", "calm"), start=61):
        write(corpus / "paired" / "scene_0" / f"{name}.txt", prose(50, seed))
    finding = only(lint_path(corpus), "baseline-length")
    assert finding.severity == "warning"
    assert finding.message.startswith("has 50 words; expected 70-110.")


def test_unknown_concept_did_you_mean(corpus: Path) -> None:
    write(corpus / "paired" / "scene_0" / "afriad.txt", prose(90, 55))
    finding = only(lint_path(corpus), "unknown-concept")
    assert finding.severity == "warning"
    assert finding.path == "paired/scene_0/afriad.txt"
    assert finding.message.startswith("concept 'afriad' is not a canonical concept "
                                      "(did you mean 'afraid'?); expected one of angry, sad")


def test_lexicon_json_declares_a_concept(corpus: Path) -> None:
    write(corpus / "paired" / "scene_0" / "wistful.txt", prose(90, 55) + "It was wistfully.\n")
    write(corpus / "lexicon.json", json.dumps({"wistful": ["wistfully"]}))
    report = lint_path(corpus)
    assert not [f for f in report.findings if f.code == "unknown-concept"]
    assert "'wistfully' (line 2)" in only(report, "banned-word").message


def test_non_utf8(corpus: Path) -> None:
    write(corpus / "stories" / "sad" / "1.txt", b"Mo took the box \xff\xfe.\n")
    finding = only(lint_path(corpus), "encoding")
    assert finding.severity == "error"
    assert finding.message.startswith("file is not valid UTF-8: byte 0xff at offset 16 cannot "
                                      "be decoded; expected UTF-8 text.")


def test_missing_anchor(corpus: Path) -> None:
    text = prose(90, 8, lead="Jo took the parcel")
    write(corpus / "paired" / "scene_0" / "calm.txt", text)
    finding = only(lint_path(corpus), "missing-anchor")
    assert finding.severity == "error"
    assert finding.path == "paired/scene_0/calm.txt"
    assert finding.message.startswith("lacks anchor(s) 'Mo', 'box' from anchors.txt")


def test_inferred_name_is_a_warning(corpus: Path) -> None:
    folder = corpus / "paired" / "scene_0"
    write(folder / "baseline.txt", prose(85, 1) + "Mo gave it to Lena.\n")
    write(folder / "sad.txt", prose(85, 2) + "Mo gave it to Lena.\n")
    report = lint_path(corpus)
    finding = only(report, "missing-anchor")
    assert finding.severity == "warning"
    assert finding.path == "paired/scene_0/calm.txt"
    assert "proper name(s) 'Lena'" in finding.message


def test_missing_anchors_file(corpus: Path) -> None:
    (corpus / "paired" / "scene_0" / "anchors.txt").unlink()
    finding = only(lint_path(corpus), "missing-anchor")
    assert (finding.severity, finding.path) == ("warning", "paired/scene_0")
    assert finding.message.startswith("no anchors.txt")


def test_banned_family_word(corpus: Path) -> None:
    write(corpus / "paired" / "scene_1" / "sad.txt",
          prose(45, 3) + "\nA sorrow's weight.\n" + prose(40, 4))
    finding = only(lint_path(corpus), "banned-word")
    assert finding.severity == "error"
    assert finding.message.startswith("uses 'sorrow' (line 3), a word of the 'sad' name family")


def test_banned_phrase(corpus: Path) -> None:
    make_corpus(corpus, concepts=("onto_something",))
    write(corpus / "paired" / "scene_0" / "onto_something.txt",
          prose(85, 3) + "Mo was onto\nsomething.\n")
    assert "'onto something'" in only(lint_path(corpus), "banned-word").message


def test_other_emotion_word_is_a_warning(corpus: Path) -> None:
    write(corpus / "paired" / "scene_1" / "sad.txt", prose(88, 3) + "Excited hands.\n")
    finding = only(lint_path(corpus), "emotion-word")
    assert finding.severity == "warning"
    assert "'excited' (line 2)" in finding.message
    assert "expected no other emotion words" in finding.message


def test_neutral_emotion_word_is_a_warning(corpus: Path) -> None:
    write(corpus / "neutral" / "0.txt", prose(86, 3) + "The lake was calm.\n")
    report = lint_path(corpus)
    assert report.ok
    assert only(report, "label").severity == "warning"


def test_missing_baseline_and_empty_file_are_findings(corpus: Path) -> None:
    (corpus / "paired" / "scene_0" / "baseline.txt").unlink()
    write(corpus / "paired" / "scene_1" / "sad.txt", "\n \n")
    report = lint_path(corpus)
    baseline = only(report, "missing-baseline")
    assert baseline.path == "paired/scene_0"
    assert "found anchors.txt" not in baseline.message
    assert "found calm.txt, sad.txt" in baseline.message
    empty = only(report, "empty-file")
    assert (empty.severity, empty.path) == ("error", "paired/scene_1/sad.txt")


def test_stray_files(corpus: Path) -> None:
    write(corpus / "paired" / "scene_0" / "draft.md", "x")
    write(corpus / "paired" / "notes.txt", "x")
    write(corpus / "paired" / "README.md", "rules")
    report = lint_path(corpus)
    strays = sorted(f.path for f in report.findings if f.code == "stray-file")
    assert strays == ["paired/notes.txt", "paired/scene_0/draft.md"]
    assert report.ok


def test_near_duplicates(corpus: Path) -> None:
    base = (corpus / "paired" / "scene_0" / "baseline.txt").read_text()
    write(corpus / "paired" / "scene_0" / "sad.txt", base)
    write(corpus / "paired" / "scene_0" / "calm.txt", base.replace("Mo took", "Mo held"))
    report = lint_path(corpus)
    dupes = [(f.severity, f.path, f.message) for f in report.findings
             if f.code == "near-duplicate"]
    assert dupes[0][:2] == ("error", "paired/scene_0/sad.txt")
    assert dupes[0][2].startswith("identical to paired/scene_0/baseline.txt")
    near = [d for d in dupes if d[0] == "warning"]
    assert near
    assert all("Jaccard 0.9" in d[2] for d in near)
    assert {d[1] for d in near} == {"paired/scene_0/calm.txt", "paired/scene_0/sad.txt"}


def test_low_coverage(tmp_path: Path) -> None:
    make_corpus(tmp_path, scenarios=2)
    report = lint_path(tmp_path)
    assert sorted(f.message for f in report.findings if f.code == "low-coverage") == [
        "concept 'calm' is in 2 scenario(s); expected at least 3 so its direction is not one "
        "setting's. Fix: add it to more scenarios.",
        "concept 'sad' is in 2 scenario(s); expected at least 3 so its direction is not one "
        "setting's. Fix: add it to more scenarios.",
    ]
    assert "  calm             2!       1\n" in report.render()


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        lint_path(tmp_path / "missing")


def test_report_json_and_render(corpus: Path) -> None:
    write(corpus / "paired" / "scene_2" / "sad.txt", prose(120, 5))
    report = lint_path(corpus)
    data = report.to_json()
    assert data["ok"] is False
    assert data["n_errors"] == 1
    assert data["counts_by_code"] == {"error:length-ratio": 1}
    assert json.loads(json.dumps(data)) == data
    text = report.render()
    assert text.index("Errors (1):") < text.index("Coverage")
    assert text.rstrip().endswith("1 errors, 0 warnings.")


def test_lexicon_contents(tmp_path: Path) -> None:
    assert {"afraid", "scared", "terror"} <= BANNED_WORDS["afraid"]
    assert BANNED_WORDS["onto_something"] == frozenset({"onto something"})
    assert {"flow", "flowing", "in the zone"} <= BANNED_WORDS["in_flow"]
    assert {"happy", "upset", "excited", "nervous"} <= EMOTION_WORDS
    assert "stuck" not in EMOTION_WORDS
    write(tmp_path / "bad.json", '["not", "a", "mapping"]')
    with pytest.raises(CorpusError, match=r"holds a list; expected a JSON object like"):
        load_lexicon(tmp_path / "bad.json")
    write(tmp_path / "bad2.json", '{"sad": "glum"}')
    with pytest.raises(CorpusError, match=r"entry 'sad' is 'glum', not a list of strings"):
        load_lexicon(tmp_path / "bad2.json")


def test_leakage_on_lexically_separable_corpus(tmp_path: Path) -> None:
    for s in range(4):
        folder = tmp_path / "paired" / f"s{s}"
        write(folder / "baseline.txt", prose(90, s))
        write(folder / "sad.txt", prose(80, 10 + s) + " grey rain drip grey rain drip\n")
        write(folder / "calm.txt", prose(80, 20 + s) + " sun warm still sun warm still\n")
        write(folder / "bored.txt", prose(80, 30 + s) + " clock tick yawn clock tick yawn\n")
    result = bag_of_words_loso(Corpus.load(tmp_path))
    assert result.n_items == 12
    assert result.chance == pytest.approx(1 / 3)
    assert result.accuracy == 1.0
    assert set(result.per_concept) == {"bored", "calm", "sad"}


def test_leakage_skips_concepts_without_training_data(tmp_path: Path) -> None:
    make_corpus(tmp_path, scenarios=2)
    write(tmp_path / "paired" / "scene_0" / "awed.txt", prose(90, 123))
    result = bag_of_words_loso(Corpus.load(tmp_path))
    assert result.n_items == 4  # awed has no training data when its scenario is held out
    assert result.chance == pytest.approx(0.5)


def test_leakage_needs_two_scenarios(tmp_path: Path) -> None:
    make_corpus(tmp_path, scenarios=1)
    with pytest.raises(CorpusError, match="classified no variants"):
        bag_of_words_loso(Corpus.load(tmp_path))


def test_cli(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(corpus), "--leakage"]) == 0
    out = capsys.readouterr().out
    assert "0 errors, 0 warnings." in out
    assert "bag-of-words leave-one-scenario-out accuracy" in out
    write(corpus / "paired" / "scene_0" / "notes.md", "x")
    assert main(["lint", str(corpus)]) == 0
    assert main(["lint", str(corpus), "--strict"]) == 1
    write(corpus / "paired" / "scene_0" / "sad.txt", prose(85, 3) + "She was so upset.\n")
    capsys.readouterr()
    assert main(["lint", str(corpus / "paired"), "--json", "--leakage"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["n_errors"] == 1
    assert data["exit_status"] == 1
    assert set(data["leakage"]) == {"accuracy", "chance", "n_items", "per_concept"}


def test_cli_lexicon_and_errors(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(corpus / "paired" / "scene_0" / "sad.txt", prose(88, 3) + "Glum Mo.\n")
    lexicon = write(corpus.parent / "extra.json", '{"sad": ["glum"]}')
    assert main(["lint", str(corpus), "--lexicon", str(lexicon)]) == 1
    assert "'glum' (line 2)" in capsys.readouterr().out
    assert main(["lint", str(corpus / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
