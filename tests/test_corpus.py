"""Tests of `amygdala.corpus._model`: loading, validation, selection and hashing."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amygdala.corpus._model import (
    CANONICAL_COGNITIVE,
    CANONICAL_CONCEPTS,
    CANONICAL_EMOTIONS,
    Corpus,
    Scenario,
    Text,
)
from amygdala.errors import CorpusError, LintError, UnknownConceptError
from tests.corpus_helpers import prose, write


def make_corpus(root: Path, *, scenarios: int = 3, concepts: tuple[str, ...] = ("sad", "calm"),
                stories: bool = True, neutral: bool = True) -> Path:
    """Write a small well-formed corpus under ``root`` and return ``root``."""
    seed = 0
    for s in range(scenarios):
        folder = root / "paired" / f"scene_{s}"
        write(folder / "anchors.txt", "Mo\nbox\n")
        for name in ("baseline", *concepts):
            seed += 1
            write(folder / f"{name}.txt", prose(90, seed))
    if stories:
        for concept in concepts:
            for k in range(2):
                seed += 1
                write(root / "stories" / concept / f"{k}.txt", prose(90, seed))
    if neutral:
        for k in range(2):
            seed += 1
            write(root / "neutral" / f"{k}.txt", prose(90, seed))
    return root


def test_canonical_concepts() -> None:
    assert len(CANONICAL_EMOTIONS) == 20
    assert CANONICAL_COGNITIVE == ("onto_something", "stuck", "in_flow", "determined")
    assert CANONICAL_CONCEPTS == CANONICAL_EMOTIONS + CANONICAL_COGNITIVE


def test_load_root(tmp_path: Path) -> None:
    corpus = Corpus.load(make_corpus(tmp_path))
    assert corpus.root == tmp_path
    assert [s.slug for s in corpus.scenarios] == ["scene_0", "scene_1", "scene_2"]
    assert corpus.concepts == ("calm", "sad")
    assert corpus.paired_concepts == ("calm", "sad")
    scenario = corpus.scenarios[0]
    assert scenario.concepts == ("calm", "sad")
    assert scenario.anchors == ("Mo", "box")
    assert scenario.variants["sad"].id == "paired/scene_0/sad.txt"
    assert scenario.variants["sad"].role == "variant"
    assert scenario.baseline.text.endswith(".")  # stripped of its trailing newline
    assert len(corpus.stories) == 4
    assert corpus.stories_for("sad")[0].id == "stories/sad/0.txt"
    assert [t.id for t in corpus.neutral] == ["neutral/0.txt", "neutral/1.txt"]
    assert len(corpus.scenarios_with("calm")) == 3


def test_texts_order(tmp_path: Path) -> None:
    corpus = Corpus.load(make_corpus(tmp_path, scenarios=2))
    assert [t.id for t in corpus.texts] == [
        "paired/scene_0/baseline.txt", "paired/scene_0/calm.txt", "paired/scene_0/sad.txt",
        "paired/scene_1/baseline.txt", "paired/scene_1/calm.txt", "paired/scene_1/sad.txt",
        "stories/calm/0.txt", "stories/calm/1.txt", "stories/sad/0.txt", "stories/sad/1.txt",
        "neutral/0.txt", "neutral/1.txt",
    ]


def test_load_paired_dir_uses_siblings(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    from_root = Corpus.load(tmp_path)
    from_paired = Corpus.load(tmp_path / "paired")
    assert from_paired.root == tmp_path
    assert len(from_paired.stories) == 4
    assert len(from_paired.neutral) == 2
    assert from_paired.content_hash == from_root.content_hash


def test_ids_are_canonical_whatever_the_folder_names(tmp_path: Path) -> None:
    make_corpus(tmp_path / "a", stories=False, neutral=False)
    (tmp_path / "a" / "paired").rename(tmp_path / "a" / "my_scenes")
    corpus = Corpus.load(tmp_path / "a" / "my_scenes")
    assert corpus.scenarios[0].baseline.id == "paired/scene_0/baseline.txt"


def test_explicit_stories_and_neutral(tmp_path: Path) -> None:
    make_corpus(tmp_path / "one")
    make_corpus(tmp_path / "two", stories=False, neutral=False)
    corpus = Corpus.load(tmp_path / "two", stories=tmp_path / "one" / "stories",
                         neutral=tmp_path / "one" / "neutral")
    assert len(corpus.stories) == 4
    assert len(corpus.neutral) == 2
    with pytest.raises(CorpusError, match=r"stories directory .* does not exist"):
        Corpus.load(tmp_path / "two", stories=tmp_path / "nowhere")


def test_readme_lexicon_and_stray_files_do_not_stop_loading(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    write(tmp_path / "paired" / "README.md", "# rules\n")
    write(tmp_path / "paired" / "scene_0" / "README.md", "notes\n")
    write(tmp_path / "paired" / "scene_0" / "notes.docx", b"\x00\x01")
    write(tmp_path / "lexicon.json", '{"sad": ["glum"]}')
    corpus = Corpus.load(tmp_path)
    assert corpus.scenarios[0].concepts == ("calm", "sad")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"corpus path .*nope does not exist; expected a corpus "
                       r"root holding paired/"):
        Corpus.load(tmp_path / "nope")


def test_path_is_a_file(tmp_path: Path) -> None:
    file = write(tmp_path / "x.txt", "hello\n")
    with pytest.raises(CorpusError, match="is a file; expected a corpus root"):
        Corpus.load(file)


def test_no_scenarios(tmp_path: Path) -> None:
    (tmp_path / "paired").mkdir()
    with pytest.raises(CorpusError, match=r"no scenario folders in .*paired and no stories; "
                       r"expected paired/<scenario>/baseline.txt"):
        Corpus.load(tmp_path)


def test_missing_baseline(tmp_path: Path) -> None:
    make_corpus(tmp_path, stories=False, neutral=False)
    (tmp_path / "paired" / "scene_1" / "baseline.txt").unlink()
    with pytest.raises(CorpusError) as info:
        Corpus.load(tmp_path)
    message = str(info.value)
    assert "paired/scene_1: scenario has no baseline.txt" in message
    assert "expected paired/scene_1/baseline.txt" in message
    assert "found calm.txt, sad.txt" in message
    assert f"Run `amygdala lint {tmp_path}` for the full list." in message


def test_empty_file(tmp_path: Path) -> None:
    make_corpus(tmp_path, stories=False, neutral=False)
    write(tmp_path / "paired" / "scene_0" / "sad.txt", "  \n\n\t\n")
    with pytest.raises(CorpusError, match=r"paired/scene_0/sad.txt: file is empty or holds only "
                       r"whitespace; expected a passage of prose"):
        Corpus.load(tmp_path)


def test_non_utf8_file_names_the_offset(tmp_path: Path) -> None:
    make_corpus(tmp_path, stories=False, neutral=False)
    write(tmp_path / "paired" / "scene_2" / "calm.txt", b"Mo took the box caf\xe9 and left.\n")
    with pytest.raises(CorpusError, match=r"paired/scene_2/calm.txt: file is not valid UTF-8: "
                       r"byte 0xe9 at offset 19 cannot be decoded"):
        Corpus.load(tmp_path)


def test_file_over_one_mib(tmp_path: Path) -> None:
    make_corpus(tmp_path, stories=False, neutral=False)
    write(tmp_path / "neutral" / "huge.txt", "word " * 220_000)
    with pytest.raises(CorpusError, match=r"neutral/huge.txt: file is 1,100,000 bytes, over the "
                       r"1 MiB limit"):
        Corpus.load(tmp_path)


def test_scenario_without_variants(tmp_path: Path) -> None:
    make_corpus(tmp_path, stories=False, neutral=False)
    write(tmp_path / "paired" / "lonely_one" / "baseline.txt", prose(90, 99))
    with pytest.raises(CorpusError, match=r"paired/lonely_one: scenario has no variants; "
                       r"expected at least one <concept>.txt"):
        Corpus.load(tmp_path)


def test_error_counts_other_problems(tmp_path: Path) -> None:
    make_corpus(tmp_path, stories=False, neutral=False)
    write(tmp_path / "paired" / "scene_0" / "sad.txt", "")
    write(tmp_path / "paired" / "scene_1" / "sad.txt", "")
    with pytest.raises(CorpusError, match=r"\(1 more error\.\) Run `amygdala lint "):
        Corpus.load(tmp_path)


def test_text_validation() -> None:
    with pytest.raises(CorpusError, match="role 'variant', which needs a concept"):
        Text(id="paired/s/x.txt", text="a", role="variant", scenario="s")
    with pytest.raises(CorpusError, match="corpus-relative posix path"):
        Text(id="/abs/x.txt", text="a", role="neutral")
    with pytest.raises(CorpusError, match="empty or only whitespace"):
        Text(id="neutral/x.txt", text="   ", role="neutral")
    with pytest.raises(CorpusError, match="unknown text role 'poem'"):
        Text(id="neutral/x.txt", text="a", role="poem")  # type: ignore[arg-type]


def test_scenario_validation() -> None:
    base = Text(id="paired/s/baseline.txt", text="a", role="baseline", scenario="s")
    wrong = Text(id="paired/s/sad.txt", text="b", role="variant", concept="sad", scenario="s")
    with pytest.raises(CorpusError, match=r"variants\['calm'\] must be a role='variant' text "
                       r"with concept='calm'"):
        Scenario(slug="s", baseline=base, variants={"calm": wrong})
    with pytest.raises(CorpusError, match="scenario 's' has no variants"):
        Scenario(slug="s", baseline=base, variants={})
    scenario = Scenario(slug="s", baseline=base, variants={"sad": wrong}, anchors=["Mo"])
    assert scenario.anchors == ("Mo",)


def test_duplicate_slugs_rejected(tmp_path: Path) -> None:
    corpus = Corpus.load(make_corpus(tmp_path, stories=False, neutral=False))
    with pytest.raises(CorpusError, match="scenario slugs must be unique; repeated: scene_0"):
        Corpus(root=tmp_path, scenarios=[*corpus.scenarios, corpus.scenarios[0]])


def test_select(tmp_path: Path) -> None:
    make_corpus(tmp_path, concepts=("sad", "calm", "afraid"))
    corpus = Corpus.load(tmp_path)
    only = corpus.select(["sad"])
    assert only.concepts == ("sad",)
    assert all(s.concepts == ("sad",) for s in only.scenarios)
    assert {t.concept for t in only.stories} == {"sad"}
    assert only.neutral == corpus.neutral
    with pytest.raises(UnknownConceptError, match=r"concept 'sadd' is not in this corpus "
                       r"\(did you mean 'sad'\?\); expected one of: afraid, calm, sad"):
        corpus.select(["sadd"])
    with pytest.raises(KeyError):
        corpus.scenarios_with("joyful")


def test_corpus_lint_strict(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    corpus = Corpus.load(tmp_path)
    assert corpus.lint().ok
    bad = write(tmp_path / "paired" / "scene_0" / "sad.txt", prose(90, 77) + "Mo felt happy.\n")
    assert bad.exists()
    corpus = Corpus.load(tmp_path)
    assert [f.code for f in corpus.lint().errors] == ["label"]
    with pytest.raises(LintError, match="1 lint errors; expected none"):
        corpus.lint(strict=True)


# ---- content hash ----------------------------------------------------------------------------


def _memory_corpus(texts: list[str]) -> Corpus:
    """Two scenarios of two variants, two stories, one neutral text from nine strings."""
    scenarios = []
    for s in range(2):
        slug = f"s{s}"
        base = Text(id=f"paired/{slug}/baseline.txt", text=texts[3 * s], role="baseline",
                    scenario=slug)
        variants = {
            c: Text(id=f"paired/{slug}/{c}.txt", text=texts[3 * s + 1 + k], role="variant",
                    concept=c, scenario=slug)
            for k, c in enumerate(("sad", "calm"))
        }
        scenarios.append(Scenario(slug=slug, baseline=base, variants=variants))
    stories = [Text(id=f"stories/sad/{k}.txt", text=texts[6 + k], role="story", concept="sad")
               for k in range(2)]
    neutral = [Text(id="neutral/0.txt", text=texts[8], role="neutral")]
    return Corpus(root=".", scenarios=scenarios, stories=stories, neutral=neutral)


_texts = st.lists(st.text(min_size=1, max_size=20).filter(str.strip), min_size=9, max_size=9)


@settings(max_examples=50, deadline=None)
@given(texts=_texts, order=st.permutations(range(2)), story_order=st.permutations(range(2)),
       index=st.integers(0, 8), suffix=st.text(min_size=1, max_size=5))
def test_content_hash_ignores_order_and_sees_every_text(
    texts: list[str], order: list[int], story_order: list[int], index: int, suffix: str
) -> None:
    corpus = _memory_corpus(texts)
    shuffled = attrs.evolve(corpus, scenarios=[corpus.scenarios[i] for i in order],
                            stories=[corpus.stories[i] for i in story_order])
    assert shuffled.content_hash == corpus.content_hash
    changed = list(texts)
    changed[index] = changed[index] + suffix
    assert _memory_corpus(changed).content_hash != corpus.content_hash
