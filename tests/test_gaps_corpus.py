"""Corpus-model gaps found by mutation testing (benchmarks/mutants.py): repeated slugs and
ids are named in full, and a loaded corpus lints exactly as its files do (anchors kept).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from amygdala.corpus._lint import lint_path
from amygdala.corpus._model import Corpus, Scenario, Text
from amygdala.errors import CorpusError
from tests.corpus_helpers import prose, write


def _scenario(slug: str) -> Scenario:
    base = Text(id=f"paired/{slug}/baseline.txt", text="Mo walked home.", role="baseline",
                scenario=slug)
    sad = Text(id=f"paired/{slug}/sad.txt", text="Mo walked home slowly.", role="variant",
               concept="sad", scenario=slug)
    return Scenario(slug=slug, baseline=base, variants={"sad": sad})


def test_repeated_slugs_and_ids_are_listed() -> None:
    with pytest.raises(CorpusError, match=r"^scenario slugs must be unique; repeated: a, b$"):
        Corpus(root=Path("c"), scenarios=[_scenario(s) for s in ("b", "a", "a", "b", "c")])
    neutral = [Text(id=f"neutral/{n}.txt", text="The bus left.", role="neutral")
               for n in ("x", "y", "x", "y")]
    with pytest.raises(CorpusError, match=r"^text ids must be unique; repeated: "
                                          r"neutral/x\.txt, neutral/y\.txt$"):
        Corpus(root=Path("c"), scenarios=[_scenario("a")], neutral=neutral)


def test_a_loaded_corpus_lints_as_its_files_do(tmp_path: Path) -> None:
    for name in ("baseline", "sad", "calm"):
        write(tmp_path / "paired" / "s0" / f"{name}.txt", prose(90, 3 + len(name)))
    # One anchor that every file has ("box", in the lead) and one that none has.
    write(tmp_path / "paired" / "s0" / "anchors.txt", "box\nzeppelin\n")
    findings = [(f.code, f.path, f.message) for f in lint_path(tmp_path).findings]
    loaded = [(f.code, f.path, f.message) for f in Corpus.load(tmp_path).lint().findings]
    assert any("zeppelin" in m for _, _, m in findings)
    assert sorted(loaded) == sorted(findings)
