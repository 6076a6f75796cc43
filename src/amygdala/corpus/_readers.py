"""Readers for corpora laid out the way other projects lay them out.

- Flat story files: ``stories/<concept>.txt`` holding several stories, separated by a
  line that holds only ``---`` (or, when the file has no such line, by blank lines:
  one story per paragraph). Text ids are ``stories/<concept>.txt#<n>`` (n from 1).
- A directory of concept folders or files without a ``stories/`` level
  (``<dir>/<concept>/*.txt`` and ``<dir>/<concept>.txt``): `Corpus.from_stories`.
- Wang et al.'s SEV records (arXiv 2510.11328): JSON lines with a scenario id, an
  emotion and a text, one record per (scenario, emotion), the scenario's baseline
  being its ``neutral`` record: `Corpus.from_sev`. Emotion nouns are mapped to this
  project's adjectives (``anger`` -> ``angry``...) unless told otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from amygdala.errors import CorpusError

__all__ = ["SEV_CONCEPTS", "read_flat_stories", "read_sev_records", "slug", "split_stories"]

# Wang et al. name emotions by noun; this project by adjective.
SEV_CONCEPTS: Final[Mapping[str, str]] = {
    "anger": "angry", "sadness": "sad", "happiness": "joyful", "joy": "joyful",
    "fear": "afraid", "surprise": "surprised", "disgust": "disgusted",
}
_SCENARIO_KEYS = ("scenario_id", "scenario", "event_id", "id")
_EMOTION_KEYS = ("emotion", "label", "concept")
_TEXT_KEYS = ("text", "story", "content", "event")
_SEPARATOR = re.compile(r"^\s*---\s*$", re.M)


def split_stories(text: str) -> list[str]:
    """Split a flat story file into stories: on ``---`` lines if any, else on blank lines.

    >>> split_stories("One.\\n---\\nTwo,\\nstill two.\\n")
    ['One.', 'Two,\\nstill two.']
    >>> split_stories("One.\\n\\nTwo.")
    ['One.', 'Two.']
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    parts = _SEPARATOR.split(text) if _SEPARATOR.search(text) else re.split(r"\n\s*\n", text)
    return [p.strip() for p in parts if p.strip()]


def slug(name: object) -> str:
    """A directory-safe name: lower case, runs of other characters as ``_``.

    >>> slug("Scenario 12/b")
    'scenario_12_b'
    """
    out = re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")
    if not out:
        raise CorpusError(f"cannot make a name out of {name!r}; expected letters or digits")
    return out


def read_flat_stories(file: Path, concept: str) -> list[tuple[str, str]]:
    """Read ``<concept>.txt`` into ``[(text id, story)]`` with ids ``stories/<concept>.txt#n``.

    Raises:
        CorpusError: the file cannot be read as UTF-8 or holds no story.
    """
    try:
        raw = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"cannot read stories file {file} ({exc}); expected UTF-8 text with "
                          "stories separated by '---' lines or blank lines") from exc
    stories = split_stories(raw)
    if not stories:
        raise CorpusError(f"stories file {file} holds no story; expected stories separated "
                          "by '---' lines or blank lines. Fix: write them or remove the file.")
    return [(f"stories/{concept}.txt#{i}", story) for i, story in enumerate(stories, start=1)]


def _field(record: Mapping[str, Any], keys: tuple[str, ...], what: str, where: str) -> Any:
    for key in keys:
        if key in record and record[key] not in (None, ""):
            return record[key]
    raise CorpusError(f"{where}: no {what} field; expected one of {', '.join(keys)}, got keys "
                      f"{', '.join(sorted(record)) or '(none)'}")


def read_sev_records(
    path: Path, *, concepts: Mapping[str, str] | None = None, baseline: str = "neutral",
) -> dict[str, dict[str, str]]:
    """Read SEV JSON lines into ``{scenario slug: {"baseline" | concept: text}}``.

    Args:
        path: the ``.jsonl`` file (one JSON object per line; blank lines ignored).
        concepts: emotion label -> concept name (default `SEV_CONCEPTS`; labels not in
            it are kept, as slugs). Pass ``{}`` to keep every label as it is.
        baseline: the label of the baseline record (default ``neutral``).

    Raises:
        CorpusError: unreadable file, a line that is not a JSON object, a missing
            field, a repeated (scenario, emotion), or a scenario without a baseline or
            without any emotion record.
    """
    mapping = SEV_CONCEPTS if concepts is None else concepts
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(
            f"cannot read SEV file {path} ({exc}); expected UTF-8 JSON lines") from exc
    scenarios: dict[str, dict[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not JSON ({exc.msg}); expected one JSON object per "
                              "line") from exc
        if not isinstance(record, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
        scenario = slug(_field(record, _SCENARIO_KEYS, "scenario id", where))
        label = str(_field(record, _EMOTION_KEYS, "emotion", where)).strip().lower()
        text = str(_field(record, _TEXT_KEYS, "text", where)).strip()
        key = "baseline" if label == baseline else slug(mapping.get(label, label))
        group = scenarios.setdefault(scenario, {})
        if key in group:
            raise CorpusError(f"{where}: scenario {scenario!r} already has a {label!r} record; "
                              "expected one record per (scenario, emotion)")
        group[key] = text
    if not scenarios:
        raise CorpusError(f"SEV file {path} holds no records; expected JSON lines with a "
                          "scenario id, an emotion and a text")
    lacking = sorted(s for s, g in scenarios.items() if "baseline" not in g)
    if lacking:
        raise CorpusError(
            f"{len(lacking)} SEV scenarios have no {baseline!r} record, e.g. {lacking[0]!r}; "
            f"each scenario needs one as its baseline. Fix: add them, or pass baseline= the "
            "label your file uses for the neutral telling")
    alone = sorted(s for s, g in scenarios.items() if len(g) == 1)
    if alone:
        raise CorpusError(f"{len(alone)} SEV scenarios have only their baseline, e.g. "
                          f"{alone[0]!r}; expected at least one emotion record each")
    return scenarios
