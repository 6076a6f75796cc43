"""The corpus disk reader: walk a corpus directory, read its texts, record structural findings.

`scan` (a corpus root or a paired directory) and `scan_stories` (a directory of stories)
never raise for a bad file: every problem becomes a `Finding`, so that `amygdala lint` can
list them all and `Corpus.load` can refuse the corpus with the first errors. The linter
(`amygdala.corpus._lint`) checks the content of what was read; the model
(`amygdala.corpus._model`) builds a `Corpus` from it. This module imports neither.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import attrs

from amygdala.corpus._readers import split_stories
from amygdala.corpus._text import IGNORED_FILES, MAX_FILE_BYTES, Role, ScenarioDraft, Text
from amygdala.errors import CorpusError

__all__ = ["FORMS", "SETTINGS", "Finding", "Scan", "scan", "scan_neutral", "scan_stories"]

Severity = Literal["error", "warning"]
MIN_WORDS, MAX_WORDS = 70, 110
# The forms a scenario's meta.json may name (paired/README.md explains each).
FORMS = ("first-person past", "first-person present", "third-person past",
         "third-person present", "second person", "letter/email", "chat", "diary", "dialogue",
         "work artefact", "monologue")
SETTINGS = ("home", "work", "travel", "health", "school", "nature", "sport", "online", "city",
            "country")
_CODE = re.compile(r"[a-z]+(?:-[a-z]+)*")


def _check_severity(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in ("error", "warning"):
        raise CorpusError(f"severity must be 'error' or 'warning', got {value!r}")


def _check_code(_: object, __: attrs.Attribute[str], value: str) -> None:
    if not _CODE.fullmatch(value):
        raise CorpusError(f"finding code must be kebab-case like 'banned-word', got {value!r}")


@attrs.frozen(kw_only=True)
class Finding:
    """One problem found by the linter.

    Attributes:
        severity: ``error`` (the corpus is wrong) or ``warning`` (worth a look).
        code: a short kebab-case name of the check, e.g. ``length-ratio``.
        path: the corpus-relative path of the file or folder concerned.
        message: what was expected, what was found, and how to fix it.

    >>> Finding(severity="error", code="empty-file", path="neutral/a.txt", message="empty")
    Finding(severity='error', code='empty-file', path='neutral/a.txt', message='empty')
    """

    severity: Severity = attrs.field(validator=_check_severity)
    code: str = attrs.field(validator=_check_code)
    path: str
    message: str


@attrs.frozen(kw_only=True)
class Scan:
    """What a walk over a corpus directory found: texts, scenario drafts, structural findings."""

    root: Path
    paired_dir: Path
    scenarios: tuple[ScenarioDraft, ...]
    stories: tuple[Text, ...]
    neutral: tuple[Text, ...]
    findings: tuple[Finding, ...]


def _read(file: Path, text_id: str, out: list[Finding]) -> str | None:
    """Read one text file; on a problem, append an error finding and return None."""
    def bad(code: str, message: str) -> None:
        out.append(Finding(severity="error", code=code, path=text_id, message=message))

    try:
        size = file.stat().st_size
        data = b"" if size > MAX_FILE_BYTES else file.read_bytes()
    except OSError as exc:
        bad("unreadable", f"cannot read the file ({exc.strerror}); expected a readable text "
            "file. Fix: check its permissions.")
        return None
    if size > MAX_FILE_BYTES:
        bad("too-large", f"file is {size:,} bytes, over the 1 MiB limit; expected a short "
            f"passage ({MIN_WORDS}-{MAX_WORDS} words). Fix: shorten or split it.")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad("encoding", f"file is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start} cannot be decoded; expected UTF-8 text. Fix: re-save it as UTF-8.")
        return None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        bad("empty-file", "file is empty or holds only whitespace; expected a passage of "
            "prose. Fix: write the text or remove the file.")
        return None
    return text


def _stray(path: str, expected: str, out: list[Finding]) -> None:
    out.append(Finding(severity="warning", code="stray-file", path=path,
                       message=f"unexpected entry; expected {expected}. It is ignored: move "
                       "or remove it."))


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "__")))


def _scan_scenario(folder: Path, out: list[Finding]) -> ScenarioDraft:
    slug = folder.name
    base_id = f"paired/{slug}"
    baseline: Text | None = None
    variants: dict[str, Text] = {}
    anchors: tuple[str, ...] = ()
    seen: list[str] = []
    has_anchors = False
    form: str | None = None
    for file in _visible(folder):
        rel = f"{base_id}/{file.name}"
        if file.is_dir():
            _stray(rel, "only .txt files inside a scenario folder", out)
        elif file.name in IGNORED_FILES:
            continue
        elif file.name == "anchors.txt":
            has_anchors = True
            problems: list[Finding] = []
            raw = _read(file, rel, problems) or ""
            out.extend(p for p in problems if p.code != "empty-file")
            anchors = tuple(
                line.strip() for line in raw.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            )
        elif file.name == "meta.json":
            form = _read_meta(file, rel, out)
        elif file.suffix == ".txt":
            seen.append(file.name)
            text = _read(file, rel, out)
            if text is None:
                continue
            if file.stem == "baseline":
                baseline = Text(id=rel, text=text, role="baseline", scenario=slug)
            else:
                variants[file.stem] = Text(id=rel, text=text, role="variant",
                                           concept=file.stem, scenario=slug)
        else:
            _stray(rel, "baseline.txt, <concept>.txt, anchors.txt, meta.json or README.md", out)
    if "baseline.txt" not in seen:
        found = ", ".join(seen) or "no .txt files"
        out.append(Finding(
            severity="error", code="missing-baseline", path=base_id,
            message=f"scenario has no baseline.txt; expected {base_id}/baseline.txt telling "
            f"the event neutrally, found {found}. Fix: write the baseline or remove the folder.",
        ))
    if not [name for name in seen if name != "baseline.txt"]:
        out.append(Finding(
            severity="error", code="no-variants", path=base_id,
            message=f"scenario has no variants; expected at least one <concept>.txt (e.g. "
            f"{base_id}/afraid.txt) next to baseline.txt. Fix: add variants or remove the folder.",
        ))
    return ScenarioDraft(slug=slug, baseline=baseline, variants=variants, anchors=anchors,
                         has_anchors_file=has_anchors, form=form)


def _read_meta(file: Path, rel: str, out: list[Finding]) -> str | None:
    """Read a scenario's meta.json; return its form, or None with a finding."""
    import json

    def bad(message: str) -> None:
        out.append(Finding(severity="warning", code="meta", path=rel, message=message))

    raw = _read(file, rel, out)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        bad(f"is not valid JSON ({exc.msg}, line {exc.lineno}); expected "
            '{"form": ..., "narrator": ..., "setting": ...}. Fix: correct the JSON.')
        return None
    if not isinstance(meta, dict):
        bad('expected a JSON object {"form": ..., "narrator": ..., "setting": ...}.')
        return None
    form, setting = meta.get("form"), meta.get("setting")
    if form not in FORMS:
        bad(f"form {form!r} is not one of {', '.join(FORMS)}. Fix: use one of them.")
        form = None
    if setting is not None and setting not in SETTINGS:
        bad(f"setting {setting!r} is not one of {', '.join(SETTINGS)}. Fix: use one of them.")
    return form if isinstance(form, str) else None


def _optional_dir(given: str | Path | None, default: Path, what: str) -> Path | None:
    if given is None:
        return default if default.is_dir() else None
    folder = Path(given)
    if not folder.is_dir():
        raise CorpusError(f"{what} directory {folder} does not exist or is not a directory; "
                          f"expected a folder of {what} texts. Fix: check the path.")
    return folder


def scan(
    path: str | Path, *, stories: str | Path | None = None, neutral: str | Path | None = None
) -> Scan:
    """Walk a corpus directory and collect its texts and structural findings.

    Args:
        path: a corpus root (holding ``paired/``) or a paired directory itself.
        stories: a stories directory instead of the default ``<root>/stories``.
        neutral: a neutral directory instead of the default ``<root>/neutral``.

    Returns:
        The texts that could be read, scenario drafts, and the findings.

    Raises:
        CorpusError: ``path`` (or an explicit ``stories``/``neutral``) does not exist or is
            not a directory. Every other problem becomes a finding.
    """
    given = Path(path)
    if not given.exists():
        raise CorpusError(
            f"corpus path {given} does not exist; expected a corpus root holding paired/ or "
            "a paired directory holding one folder per scenario. Fix: check the path."
        )
    if not given.is_dir():
        raise CorpusError(
            f"corpus path {given} is a file; expected a corpus root holding paired/ or a "
            "paired directory holding one folder per scenario. Fix: pass the directory."
        )
    if any((given / name).is_dir() for name in ("paired", "stories", "neutral")):
        root, paired = given, given / "paired"
    else:  # a paired directory itself; its parent is the root
        root, paired = given.parent, given
    out: list[Finding] = []
    drafts: list[ScenarioDraft] = []
    if paired.is_dir():
        for entry in _visible(paired):
            if entry.is_dir():
                drafts.append(_scan_scenario(entry, out))
            elif entry.name not in IGNORED_FILES:
                _stray(f"paired/{entry.name}", "only scenario folders (and README.md)", out)
    story_dir = _optional_dir(stories, root / "stories", "stories")
    story_texts = _scan_stories(story_dir, out) if story_dir else []
    if not drafts and not story_texts:
        out.append(Finding(
            severity="error", code="no-scenarios", path="paired",
            message=f"no scenario folders in {paired} and no stories; expected "
            "paired/<scenario>/baseline.txt and <concept>.txt files, or stories/<concept>/*.txt "
            "or stories/<concept>.txt. Fix: point at the corpus root or its paired directory.",
        ))
    neutral_dir = _optional_dir(neutral, root / "neutral", "neutral")
    neutral_texts = scan_neutral(neutral_dir, out) if neutral_dir else []
    return Scan(root=root, paired_dir=paired, scenarios=tuple(drafts), stories=tuple(story_texts),
                neutral=tuple(neutral_texts), findings=tuple(out))


def _flat_stories(file: Path, rel: str, concept: str, role: Role,
                  out: list[Finding]) -> list[Text]:
    """The stories of one flat ``<concept>.txt`` file (see `split_stories`)."""
    text = _read(file, rel, out)
    if text is None:
        return []
    return [Text(id=f"{rel}#{i}", text=story, role=role,
                 concept=concept if role == "story" else None)
            for i, story in enumerate(split_stories(text), start=1)]


def _scan_stories(story_dir: Path, out: list[Finding], *,
                  neutral: list[Text] | None = None) -> list[Text]:
    """Stories in ``<concept>/*.txt`` folders and flat ``<concept>.txt`` files.

    With ``neutral`` given, a ``neutral`` folder or ``neutral.txt`` holds neutral texts
    (appended to it) instead of a concept called neutral.
    """
    texts: list[Text] = []
    for entry in _visible(story_dir):
        name = entry.stem if entry.is_file() else entry.name
        if neutral is not None and name == "neutral":
            if entry.is_dir():
                neutral.extend(scan_neutral(entry, out))
            elif entry.suffix == ".txt":
                neutral.extend(_flat_stories(entry, "neutral/neutral.txt", name, "neutral", out))
            continue
        if entry.is_file():
            if entry.suffix == ".txt":
                texts.extend(_flat_stories(entry, f"stories/{entry.name}", name, "story", out))
            elif entry.name not in IGNORED_FILES:
                _stray(f"stories/{entry.name}", "concept folders stories/<concept>/*.txt or "
                       "files stories/<concept>.txt", out)
            continue
        for file in _visible(entry):
            rel = f"stories/{entry.name}/{file.name}"
            if file.is_file() and file.suffix == ".txt":
                text = _read(file, rel, out)
                if text is not None:
                    texts.append(Text(id=rel, text=text, role="story", concept=entry.name))
            elif file.name not in IGNORED_FILES:
                _stray(rel, "only .txt files in a story folder", out)
    return texts


def scan_neutral(neutral_dir: Path, out: list[Finding]) -> list[Text]:
    """The ``.txt`` files of ``neutral_dir`` as neutral texts (problems go to ``out``)."""
    texts: list[Text] = []
    for file in _visible(neutral_dir):
        rel = f"neutral/{file.name}"
        if file.is_file() and file.suffix == ".txt":
            text = _read(file, rel, out)
            if text is not None:
                texts.append(Text(id=rel, text=text, role="neutral"))
        elif file.name not in IGNORED_FILES:
            _stray(rel, "only .txt files in neutral/", out)
    return texts


def scan_stories(path: str | Path, *, neutral: str | Path | None = None) -> Scan:
    """Walk a directory of stories with no ``stories/`` level (see `Corpus.from_stories`).

    ``<path>/<concept>/*.txt`` folders and flat ``<path>/<concept>.txt`` files are
    stories; ``<path>/neutral/`` or ``<path>/neutral.txt`` (or the ``neutral``
    directory given) hold neutral texts.

    Raises:
        CorpusError: ``path`` (or ``neutral``) is not a directory.
    """
    root = Path(path)
    if not root.is_dir():
        raise CorpusError(f"stories directory {root} does not exist or is not a directory; "
                          "expected <concept>/*.txt folders or <concept>.txt files")
    out: list[Finding] = []
    neutral_texts: list[Text] = []
    stories = _scan_stories(root, out, neutral=neutral_texts)
    neutral_dir = _optional_dir(neutral, root / "neutral", "neutral") if neutral else None
    if neutral_dir is not None:
        neutral_texts = scan_neutral(neutral_dir, out)
    if not stories:
        out.append(Finding(severity="error", code="no-stories", path=".",
                           message=f"no stories in {root}; expected <concept>/*.txt folders "
                           "or <concept>.txt files"))
    return Scan(root=root, paired_dir=root / "paired", scenarios=(), stories=tuple(stories),
                neutral=tuple(neutral_texts), findings=tuple(out))
