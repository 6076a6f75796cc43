"""Corpora in other layouts (unpaired-only, flat story files, SEV JSON lines) and training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amygdala._types import Pooling, Site
from amygdala.backends._registry import get_backend
from amygdala.corpus._lint import lint_path
from amygdala.corpus._model import Corpus
from amygdala.corpus._readers import split_stories
from amygdala.errors import CorpusError
from amygdala.store._store import ActivationStore
from amygdala.vectors._extract import METHODS
from amygdala.vectors._train import Session, TrainConfig, train
from tests.conftest import tiny_llama
from tests.corpus_helpers import prose, write

STORIES = {
    "afraid": ["Mo heard the stairs creak and froze.", "The lights went out and Ana held her "
               "breath in the dark hall.", "Something scratched at the door again."],
    "joyful": ["Mo laughed and spun round the kitchen.", "Ana read the letter and jumped up "
               "cheering.", "The whole table sang along, grinning."],
}
NEUTRAL = ["The bus left the depot at six.", "The form has three pages and a box for a date.",
           "Tiles were stacked by the door."]


def _unpaired_root(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for concept, texts in STORIES.items():
        for i, text in enumerate(texts):
            write(root / "stories" / concept / f"{i}.txt", text + "\n")
    for i, text in enumerate(NEUTRAL):
        write(root / "neutral" / f"n{i}.txt", text + "\n")
    return root


def _session(tmp_path: Path) -> Session:
    loaded = tiny_llama()
    store = ActivationStore(tmp_path / "store", fingerprint=loaded.fingerprint, pooling=Pooling())
    return Session(loaded=loaded, backend=get_backend("torch", loaded), store=store)


def test_an_unpaired_only_corpus_loads(tmp_path: Path) -> None:
    corpus = Corpus.load(_unpaired_root(tmp_path))
    assert corpus.scenarios == () and corpus.concepts == ("afraid", "joyful")
    assert len(corpus.stories) == 6 and len(corpus.neutral) == 3
    assert not [f for f in lint_path(tmp_path / "corpus").findings if f.code == "no-scenarios"]


def test_an_empty_corpus_is_still_refused(tmp_path: Path) -> None:
    write(tmp_path / "c" / "neutral" / "a.txt", "The bus left.\n")
    with pytest.raises(CorpusError, match=r"no scenario folders .* and no stories"):
        Corpus.load(tmp_path / "c")


@pytest.mark.parametrize("method", [m for m in ("unpaired", "combined") if m in METHODS])
def test_an_unpaired_only_corpus_trains(tmp_path: Path, method: str) -> None:
    corpus = Corpus.load(_unpaired_root(tmp_path))
    session = _session(tmp_path)
    result = train(corpus, config=TrainConfig(method=method, layers=(1, 2), normalisation="raw"),
                   session=session)
    vectors = result.vectors
    assert vectors.concepts == ("afraid", "joyful")
    norms = np.linalg.norm(vectors.directions, axis=-1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    # Independent check: with no neutral projection at play, the raw direction of a
    # concept at a layer is parallel to its story mean minus the other concept's.
    acts = session.backend.capture([t.text for t in corpus.stories], [Site(layer=2)],
                                   Pooling())[Site(layer=2)].numpy()
    by = {c: acts[[i for i, t in enumerate(corpus.stories) if t.concept == c]].mean(0)
          for c in STORIES}
    diff = by["afraid"] - by["joyful"]
    cos = float(vectors.vector("afraid", 2).direction @ diff / np.linalg.norm(diff))
    assert cos > 0.5  # the neutral-PC projection moves it off exact parallel


def test_paired_methods_on_an_unpaired_corpus_say_what_is_missing(tmp_path: Path) -> None:
    corpus = Corpus.load(_unpaired_root(tmp_path))
    with pytest.raises(CorpusError):
        train(corpus, config=TrainConfig(method="paired", layers=(1,)), session=_session(tmp_path))


def test_flat_story_files(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write(root / "stories" / "afraid.txt", "\n---\n".join(STORIES["afraid"]) + "\n")
    write(root / "stories" / "joyful.txt", "\n\n".join(STORIES["joyful"]) + "\n")
    write(root / "stories" / "calm" / "one.txt", "Mo sat by the still lake.\n")
    corpus = Corpus.load(root)
    afraid = corpus.stories_for("afraid")
    assert [t.id for t in afraid] == [f"stories/afraid.txt#{i}" for i in (1, 2, 3)]
    assert [t.text for t in afraid] == STORIES["afraid"]
    assert [t.text for t in corpus.stories_for("joyful")] == STORIES["joyful"]
    assert [t.id for t in corpus.stories_for("calm")] == ["stories/calm/one.txt"]


def test_split_stories_prefers_separator_lines_over_paragraphs() -> None:
    text = "First para.\n\nStill the first story.\n---\nSecond story.\n"
    assert split_stories(text) == ["First para.\n\nStill the first story.", "Second story."]
    assert split_stories("A.\n\n\nB.\n") == ["A.", "B."]


def test_from_stories_reads_a_directory_of_concepts(tmp_path: Path) -> None:
    folder = tmp_path / "emotions"
    write(folder / "afraid.txt", "\n---\n".join(STORIES["afraid"]))
    for i, text in enumerate(STORIES["joyful"]):
        write(folder / "joyful" / f"{i}.txt", text)
    write(folder / "neutral.txt", "\n\n".join(NEUTRAL))
    corpus = Corpus.from_stories(folder)
    assert corpus.concepts == ("afraid", "joyful")
    assert [t.text for t in corpus.neutral] == NEUTRAL
    assert all(t.role == "neutral" and t.concept is None for t in corpus.neutral)
    result = train(corpus, config=TrainConfig(method="unpaired", layers=(1,)),
                   session=_session(tmp_path))
    assert result.vectors.concepts == ("afraid", "joyful")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no stories"):
        Corpus.from_stories(tmp_path / "empty")


def _sev(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    return write(tmp_path / "sev.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")


SEV_ROWS: list[dict[str, object]] = [
    {"scenario_id": s, "emotion": e, "text": prose(20, seed, lead=f"{lead} {e}")}
    for s, lead in ((1, "Mo opened the letter"), (2, "Ana climbed the stairs"),
                    (3, "Tom parked the van"))
    for seed, e in enumerate(("neutral", "fear", "happiness", "anger"))
]


def test_from_sev_builds_paired_scenarios(tmp_path: Path) -> None:
    corpus = Corpus.from_sev(_sev(tmp_path, SEV_ROWS))
    assert [s.slug for s in corpus.scenarios] == ["1", "2", "3"]
    assert corpus.concepts == ("afraid", "angry", "joyful")
    first = corpus.scenarios[0]
    assert first.baseline.text == SEV_ROWS[0]["text"].strip()  # type: ignore[union-attr]
    assert first.variants["afraid"].text == SEV_ROWS[1]["text"].strip()  # type: ignore[union-attr]
    kept = Corpus.from_sev(tmp_path / "sev.jsonl", concepts={})
    assert kept.concepts == ("anger", "fear", "happiness")


def test_an_sev_file_trains(tmp_path: Path) -> None:
    corpus = Corpus.from_sev(_sev(tmp_path, SEV_ROWS))
    session = _session(tmp_path)
    result = train(corpus, config=TrainConfig(method="paired", layers=(2,), normalisation="raw"),
                   session=session)
    # Independent check: paired raw direction = unit mean over scenarios of variant - baseline.
    texts = {t.id: t.text for t in corpus.texts}
    ids = [f"paired/{s}/{c}.txt" for s in ("1", "2", "3") for c in ("baseline", "afraid")]
    acts = session.backend.capture([texts[i] for i in ids], [Site(layer=2)],
                                   Pooling())[Site(layer=2)].numpy()
    diff = (acts[1::2] - acts[0::2]).mean(0)
    np.testing.assert_allclose(result.vectors.vector("afraid", 2).direction,
                               diff / np.linalg.norm(diff), atol=1e-4)


@pytest.mark.parametrize(("rows", "message"), [
    ([{"scenario_id": 1, "emotion": "fear", "text": "x"}], "no 'neutral' record"),
    ([{"scenario_id": 1, "emotion": "neutral", "text": "x"}], "only their baseline"),
    ([{"scenario_id": 1, "text": "x"}], "no emotion field; expected one of emotion"),
    ([{"scenario_id": 1, "emotion": "neutral", "text": "x"},
      {"scenario_id": 1, "emotion": "neutral", "text": "y"}], "one record per"),
])
def test_bad_sev_records_are_named(tmp_path: Path, rows: list[dict[str, object]],
                                   message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        Corpus.from_sev(_sev(tmp_path, rows))


def test_sev_line_that_is_not_json_names_its_line(tmp_path: Path) -> None:
    write(tmp_path / "bad.jsonl", '{"scenario_id": 1, "emotion": "neutral", "text": "x"}\n{oops\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: not JSON"):
        Corpus.from_sev(tmp_path / "bad.jsonl")


def test_cli_trains_an_unpaired_only_corpus_on_a_local_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from amygdala.cli import main

    lm = tiny_llama()
    model_dir = tmp_path / "model"
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    code = main(["train", str(_unpaired_root(tmp_path)), "--out", str(out), "--model",
                 str(model_dir), "--method", "unpaired", "--layers", "1-2", "--device", "cpu",
                 "--dtype", "float32", "--store", str(tmp_path / "store"), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "evaluation (leave one scenario out) is skipped" in printed
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["device"] == "cpu" and record["config"]["dtype"] == "float32"
    assert (out / "vectors.safetensors").is_file()
