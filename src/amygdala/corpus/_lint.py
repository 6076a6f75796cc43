"""Check a corpus directory against the corpus style rules and report every problem.

`scan` walks the directories and reports structural problems (missing baseline, empty
or non-UTF-8 files, stray files) as findings instead of raising; `Corpus.load` uses it
and refuses a corpus with structural errors. `check_scenarios` then checks content:
lengths, banned words, explicit labels, anchors, near-duplicates, names, coverage.
Every check and why it exists is described in ``docs/corpus.md``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from amygdala._codec import to_data
from amygdala.corpus._cues import cue_findings
from amygdala.corpus._lexicon import BANNED_WORDS, EMOTION_WORDS, load_lexicon, merge_lexicons
from amygdala.corpus._reader import (
    FORMS,
    MAX_WORDS,
    MIN_WORDS,
    SETTINGS,
    Finding,
    Scan,
    scan,
    scan_stories,
)
from amygdala.corpus._text import (
    CANONICAL_COGNITIVE,
    CANONICAL_CONCEPTS,
    ScenarioDraft,
    Text,
    did_you_mean,
)
from amygdala.errors import CorpusError

# Finding, Scan and scan live in amygdala.corpus._reader (the disk reader); they are
# re-exported here for code that imports them from the linter.
__all__ = ["FORMS", "SETTINGS", "Finding", "LintReport", "Scan", "check_scenarios", "lint_path",
           "scan", "scan_stories"]

LENGTH_TOLERANCE = 0.2
MIN_SCENARIOS = 3
NEAR_DUPLICATE = 0.8
SHINGLE = 5
_FIX_LINT = "run `amygdala lint PATH` for the full list"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_BUILTIN_WORDS = frozenset(w for ws in BANNED_WORDS.values() for w in ws)


def _sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (f.severity != "error", f.path, f.code)))


def _frozen_counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted(counts.items())))


@attrs.frozen(kw_only=True)
class LintReport:
    """Every finding of a lint run, with concept coverage.

    Attributes:
        findings: errors first, then warnings, each group sorted by path.
        coverage: concept to the number of scenarios carrying it (0 for story-only ones).
        story_counts: concept to the number of its stories.
        n_scenarios: scenarios found.
        n_neutral: neutral texts found.

    >>> report = LintReport(findings=[], coverage={"sad": 2}, story_counts={}, n_scenarios=2)
    >>> report.ok, report.to_json()["n_errors"]
    (True, 0)
    """

    findings: tuple[Finding, ...] = attrs.field(converter=_sort_findings)
    coverage: Mapping[str, int] = attrs.field(converter=_frozen_counts)
    story_counts: Mapping[str, int] = attrs.field(converter=_frozen_counts)
    n_scenarios: int
    n_neutral: int = 0
    forms: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_counts)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings of severity ``error``."""
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings of severity ``warning``."""
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        """Whether there are no errors (warnings allowed)."""
        return not self.errors

    def counts_by_code(self) -> dict[str, int]:
        """Return ``"severity:code"`` to the number of findings, sorted."""
        return dict(sorted(Counter(f"{f.severity}:{f.code}" for f in self.findings).items()))

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict: the counts, then the fields."""
        data: dict[str, Any] = to_data(self)
        counts = {"ok": self.ok, "n_errors": len(self.errors), "n_warnings": len(self.warnings),
                  "n_scenarios": data.pop("n_scenarios"), "n_neutral": data.pop("n_neutral"),
                  "counts_by_code": self.counts_by_code()}
        findings = data.pop("findings")
        return {**counts, **data, "findings": findings}

    def render(self) -> str:
        """Return a human-readable report: errors, warnings, then the coverage table."""
        lines: list[str] = []
        for title, group in (("Errors", self.errors), ("Warnings", self.warnings)):
            if group:
                lines.append(f"{title} ({len(group)}):")
                lines.extend(f"  {f.path}: [{f.code}] {f.message}" for f in group)
                lines.append("")
        concepts = sorted(set(self.coverage) | set(self.story_counts))
        width = max([len("concept"), *map(len, concepts)])
        lines.append(f"Coverage ({self.n_scenarios} scenarios, {self.n_neutral} neutral texts; "
                     f"! = fewer than {MIN_SCENARIOS} scenarios):")
        lines.append(f"  {'concept':<{width}}  scenarios  stories")
        for concept in concepts:
            n = self.coverage.get(concept, 0)
            flag = "!" if n < MIN_SCENARIOS else " "
            n_stories = self.story_counts.get(concept, 0)
            lines.append(f"  {concept:<{width}}  {n:>9}{flag} {n_stories:>7}")
        if self.forms:
            lines.append("")
            lines.append("Forms (from each scenario's meta.json):")
            lines.extend(f"  {form:<22} {n:>4}" for form, n in
                         sorted(self.forms.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append("")
        lines.append(f"{len(self.errors)} errors, {len(self.warnings)} warnings.")
        return "\n".join(lines)


def lint_path(
    path: str | Path,
    lexicon: Mapping[str, Iterable[str]] | None = None,
    *,
    stories: str | Path | None = None,
    neutral: str | Path | None = None,
) -> LintReport:
    """Lint a corpus directory: report every structural and style problem.

    Args:
        path: a corpus root (holding ``paired/``) or a paired directory itself.
        lexicon: extra banned words per concept, added to the built-in lexicon and to
            the root's ``lexicon.json``.
        stories: a stories directory instead of the default ``<root>/stories``.
        neutral: a neutral directory instead of the default ``<root>/neutral``.

    Returns:
        The report; a bad corpus gives findings, never an exception.

    Raises:
        CorpusError: ``path`` does not exist or is not a directory.

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "paired" / "walk"
    >>> folder.mkdir(parents=True)
    >>> _ = (folder / "joyful.txt").write_text("Mo felt sad.\\n")
    >>> sorted({f.code for f in lint_path(folder.parent).errors})
    ['label', 'missing-baseline']
    """
    found = scan(path, stories=stories, neutral=neutral)
    return check_scenarios(root=found.root, scenarios=found.scenarios, stories=found.stories,
                           neutral=found.neutral, lexicon=lexicon, findings=found.findings)


# ---- content checks -----------------------------------------------------------------------


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _tokens(text: str) -> list[tuple[str, int]]:
    lowered = text.lower().replace("\u2019", "'")
    return [(m.group(), m.start()) for m in _WORD.finditer(lowered)]


def _word_hits(text: str, words: frozenset[str]) -> dict[str, list[int]]:
    """Return word or phrase -> line numbers where it occurs (whole words, any case)."""
    hits: dict[str, list[int]] = defaultdict(list)
    for token, pos in _tokens(text):
        for form in {token, token.split("'")[0]}:
            if form in words:
                hits[form].append(_line(text, pos))
    lowered = text.lower()
    for phrase in (w for w in words if " " in w):
        pattern = r"(?<![a-z])" + r"\s+".join(map(re.escape, phrase.split())) + r"(?![a-z])"
        for m in re.finditer(pattern, lowered):
            hits[phrase].append(_line(text, m.start()))
    return hits


def _label_pattern(words: Iterable[str]) -> re.Pattern[str]:
    verbs = ("felt|feel|feels|feeling|was|were|is|am|are|grew|became|become|becomes|seemed|"
             "seems|looked|looks|got|gets|getting|'m|'re")
    degree = ("very|so|too|quite|a bit|a little|rather|really|more|most|slightly|suddenly|"
              "deeply|utterly|completely|oddly|strangely|almost|not|less")
    alt = "|".join(sorted(map(re.escape, words), key=len, reverse=True))
    surges = "wave|surge|pang|rush|flood|flash|jolt|stab|twinge|flicker|burst|swell|knot"
    return re.compile(
        rf"\b(?:(?:{verbs})\s+(?:(?:{degree})\s+)?|(?:a|another)\s+(?:{surges})\s+of\s+)"
        rf"(?:{alt})\b"
    )


def _names(baseline: str) -> list[str]:
    """Capitalised words not at a sentence start and never lowercase in the baseline."""
    lowered = set(re.findall(r"\b[a-z][a-z']*", baseline.replace("\u2019", "'")))
    names: list[str] = []
    for m in re.finditer(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)*\b", baseline):
        before = baseline[: m.start()].rstrip()
        if not before or before[-1] in ".!?:;\"'\u201c\u2018(\u2026-\u2014" or m.group() in names:
            continue
        if m.group().lower() not in lowered:
            names.append(m.group())
    return names


def _contains(text: str, needle: str, *, ignore_case: bool) -> bool:
    flags = re.IGNORECASE if ignore_case else 0
    return re.search(r"(?<![A-Za-z])" + re.escape(needle), text, flags) is not None


def _near_duplicates(texts: Sequence[Text], out: list[Finding]) -> None:
    by_hash: dict[str, list[Text]] = defaultdict(list)
    for text in texts:
        by_hash[text.sha256].append(text)
    for group in by_hash.values():
        for later in group[1:]:
            out.append(Finding(severity="error", code="near-duplicate", path=later.id,
                               message=f"identical to {group[0].id}; expected distinct texts. "
                               "Fix: rewrite or remove one of them."))
    shingles: list[set[tuple[str, ...]]] = []
    postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        words = [t for t, _ in _tokens(text.text)]
        grams = {tuple(words[k : k + SHINGLE]) for k in range(len(words) - SHINGLE + 1)}
        shingles.append(grams)
        for gram in grams:
            postings[gram].append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for docs in postings.values():
        shared.update(combinations(docs, 2))
    for (i, j), n in sorted(shared.items()):
        jaccard = n / (len(shingles[i]) + len(shingles[j]) - n)
        if jaccard > NEAR_DUPLICATE and texts[i].sha256 != texts[j].sha256:
            out.append(Finding(
                severity="warning", code="near-duplicate", path=texts[j].id,
                message=f"shares {jaccard:.0%} of its word {SHINGLE}-grams with {texts[i].id} "
                f"(Jaccard {jaccard:.2f} > {NEAR_DUPLICATE}); expected a distinct retelling. "
                "Fix: rewrite it so the state changes more than a few words.",
            ))


def _effective_lexicon(
    root: Path, extra: Mapping[str, Iterable[str]] | None, out: list[Finding]
) -> Mapping[str, frozenset[str]]:
    parts: list[Mapping[str, Iterable[str]]] = [BANNED_WORDS]
    if (root / "lexicon.json").is_file():
        try:
            parts.append(load_lexicon(root / "lexicon.json"))
        except CorpusError as exc:
            out.append(Finding(severity="error", code="lexicon", path="lexicon.json",
                               message=str(exc)))
    if extra is not None:
        parts.append(extra)
    return merge_lexicons(*parts)


def _check_words(
    text: Text, own: frozenset[str], label: re.Pattern[str], colour: frozenset[str],
    out: list[Finding],
) -> None:
    """Banned own-family words (error), labels (error; warning in neutral), other emotion words."""
    lowered = text.text.lower().replace("\u2019", "'")
    for word, lines in sorted(_word_hits(text.text, own).items()):
        where = ", ".join(map(str, lines))
        out.append(Finding(
            severity="error", code="banned-word", path=text.id,
            message=f"uses {word!r} (line {where}), a word of the {text.concept!r} name family; "
            "expected the state shown through body, actions and attention, never named. "
            "Fix: rewrite that sentence without it.",
        ))
    labelled: set[str] = set()
    for m in label.finditer(lowered):
        labelled.add(m.group().split()[-1])
        out.append(Finding(
            severity="warning" if text.role == "neutral" else "error", code="label",
            path=text.id,
            message=f"line {_line(text.text, m.start())}: {m.group()!r} names an emotion; "
            "expected no explicit labels. Fix: show what the body does or what is noticed.",
        ))
    other = {w: ls for w, ls in _word_hits(text.text, colour - own).items() if w not in labelled}
    if other:
        listed = ", ".join(f"{w!r} (line {ls[0]})" for w, ls in sorted(other.items()))
        what = "no emotion words at all" if text.concept is None else "no other emotion words"
        out.append(Finding(
            severity="warning", code="emotion-word", path=text.id,
            message=f"uses {listed}; expected {what}. Fix: replace them with concrete detail.",
        ))


def _check_length(text: Text, code: str, out: list[Finding]) -> None:
    n = len(text.text.split())
    if not MIN_WORDS <= n <= MAX_WORDS:
        out.append(Finding(severity="warning", code=code, path=text.id,
                           message=f"has {n} words; expected {MIN_WORDS}-{MAX_WORDS}. Fix: "
                           "lengthen or trim it (count with `wc -w`)."))


def _check_scenario(draft: ScenarioDraft, out: list[Finding]) -> None:
    base_id = f"paired/{draft.slug}"
    if not draft.anchors:
        why = "anchors.txt lists no anchors" if draft.has_anchors_file else "no anchors.txt"
        out.append(Finding(severity="warning", code="missing-anchor", path=base_id,
                           message=f"{why}; expected 2-4 lines naming the person and key "
                           "nouns every file shares. Fix: write anchors.txt."))
    if draft.baseline is None:
        return
    baseline = draft.baseline.text
    n_base = len(baseline.split())
    _check_length(draft.baseline, "baseline-length", out)
    lo, hi = -(-n_base * 4 // 5), n_base * 6 // 5
    for anchor in draft.anchors:
        if not _contains(baseline, anchor, ignore_case=True):
            out.append(Finding(severity="error", code="missing-anchor", path=draft.baseline.id,
                               message=f"anchor {anchor!r} from anchors.txt is not in the "
                               "baseline. Fix: use it in the baseline or drop it from "
                               "anchors.txt."))
    anchored = {a.lower() for a in draft.anchors}
    names = [n for n in _names(baseline) if n.lower() not in anchored]
    for variant in draft.variants.values():
        n = len(variant.text.split())
        if not lo <= n <= hi:
            out.append(Finding(
                severity="error", code="length-ratio", path=variant.id,
                message=f"has {n} words but its baseline has {n_base}; expected {lo}-{hi} "
                f"words (±{LENGTH_TOLERANCE:.0%}). Fix: trim or extend it to the baseline's size.",
            ))
        missing = [a for a in draft.anchors if not _contains(variant.text, a, ignore_case=True)]
        if missing:
            out.append(Finding(severity="error", code="missing-anchor", path=variant.id,
                               message=f"lacks anchor(s) {', '.join(map(repr, missing))} from "
                               "anchors.txt; expected every anchor in every file. Fix: keep "
                               "the same names and objects as the baseline."))
        lost = [m for m in names if not _contains(variant.text, m, ignore_case=False)]
        if lost:
            out.append(Finding(severity="warning", code="missing-anchor", path=variant.id,
                               message=f"lacks the baseline's proper name(s) "
                               f"{', '.join(map(repr, lost))}; expected the same people and "
                               "places. Fix: keep them, or list real anchors in anchors.txt."))


def check_scenarios(
    *,
    root: Path,
    scenarios: Sequence[ScenarioDraft],
    stories: Sequence[Text],
    neutral: Sequence[Text],
    lexicon: Mapping[str, Iterable[str]] | None = None,
    findings: Iterable[Finding] = (),
) -> LintReport:
    """Run the content checks on texts already read (see `lint_path`).

    Args:
        root: the corpus root, where ``lexicon.json`` is looked for.
        scenarios: the scenarios (drafts may lack a baseline).
        stories: unpaired stories.
        neutral: neutral texts.
        lexicon: extra banned words per concept.
        findings: structural findings to include in the report.

    Returns:
        The lint report.
    """
    out = list(findings)
    words = _effective_lexicon(root, lexicon, out)
    known = set(CANONICAL_CONCEPTS) | set(words)
    extra = {w for c, ws in words.items() if c not in CANONICAL_COGNITIVE for w in ws}
    colour = EMOTION_WORDS | frozenset(w for w in extra - _BUILTIN_WORDS if " " not in w)
    label = _label_pattern(colour)
    for draft in scenarios:
        _check_scenario(draft, out)
        if draft.baseline is not None:
            _check_words(draft.baseline, frozenset(), label, colour, out)
        for concept, variant in draft.variants.items():
            if concept not in known:
                out.append(_unknown(concept, variant.id))
            _check_words(variant, words.get(concept, frozenset()), label, colour, out)
    for concept in sorted({t.concept for t in stories if t.concept and t.concept not in known}):
        out.append(_unknown(concept, f"stories/{concept}"))
    for story in stories:
        _check_length(story, "text-length", out)
        _check_words(story, words.get(story.concept or "", frozenset()), label, colour, out)
    for text in neutral:
        _check_length(text, "text-length", out)
        _check_words(text, frozenset(), label, colour, out)
    texts = [t for d in scenarios for t in (d.baseline, *d.variants.values()) if t is not None]
    _near_duplicates([*texts, *stories, *neutral], out)
    out.extend(Finding(severity="warning", code=code, path=path, message=message)
               for path, code, message in cue_findings(scenarios))
    coverage = Counter(c for d in scenarios for c in d.variants)
    story_counts = Counter(t.concept for t in stories if t.concept)
    for concept, n in sorted(coverage.items()):
        if n < MIN_SCENARIOS:
            out.append(Finding(severity="warning", code="low-coverage", path="paired",
                               message=f"concept {concept!r} is in {n} scenario(s); expected at "
                               f"least {MIN_SCENARIOS} so its direction is not one setting's. "
                               "Fix: add it to more scenarios."))
    return LintReport(
        findings=out,
        coverage={c: coverage.get(c, 0) for c in set(coverage) | set(story_counts)},
        story_counts=dict(story_counts),
        n_scenarios=len(scenarios),
        n_neutral=len(neutral),
        forms=Counter(d.form for d in scenarios if d.form is not None),
    )


def _unknown(concept: str, path: str) -> Finding:
    return Finding(
        severity="warning", code="unknown-concept", path=path,
        message=f"concept {concept!r} is not a canonical concept"
        f"{did_you_mean(concept, CANONICAL_CONCEPTS)}; expected one of "
        f"{', '.join(CANONICAL_CONCEPTS)}, or a concept declared in lexicon.json. "
        "Fix: rename the file, or declare the concept in lexicon.json.",
    )

