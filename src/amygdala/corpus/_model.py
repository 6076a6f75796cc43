"""The emotional corpus on disk: paired scenarios, unpaired stories and neutral texts.

Layout (see ``docs/corpus.md``)::

    <root>/paired/<scenario>/baseline.txt      the event told neutrally
    <root>/paired/<scenario>/<concept>.txt     the same event lived under one concept
    <root>/paired/<scenario>/anchors.txt       names and key nouns every file must share
    <root>/stories/<concept>/*.txt             unpaired texts, one concept each
    <root>/neutral/*.txt                       texts with no emotional colouring
    <root>/lexicon.json                        optional extra banned words per concept

Text ids are always the canonical corpus-relative paths above (``paired/...``,
``stories/...``, ``neutral/...``) whatever the directories are called on disk, so the
content hash of a corpus does not depend on where it lives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from amygdala.corpus._reader import Scan, scan, scan_neutral, scan_stories
from amygdala.corpus._readers import read_sev_records
from amygdala.corpus._text import (
    CANONICAL_COGNITIVE,
    CANONICAL_CONCEPTS,
    CANONICAL_EMOTIONS,
    Role,
    ScenarioDraft,
    Text,
    anchor_tuple,
    did_you_mean,
    sorted_variants,
)
from amygdala.errors import CorpusError, LintError, UnknownConceptError

if TYPE_CHECKING:
    # The linter is imported when `Corpus.lint` runs: loading a corpus does not need it.
    from amygdala.corpus._lint import LintReport

__all__ = [
    "CANONICAL_COGNITIVE",
    "CANONICAL_CONCEPTS",
    "CANONICAL_EMOTIONS",
    "Corpus",
    "Role",
    "Scenario",
    "ScenarioDraft",
    "Text",
]


@attrs.frozen(kw_only=True)
class Scenario:
    """One paired scenario: a neutral baseline and the same event under several concepts.

    Attributes:
        slug: the scenario's directory name.
        baseline: the neutral telling.
        variants: concept to variant text, sorted by concept.
        anchors: names and key nouns every file of the scenario shares (``anchors.txt``).

    Raises:
        CorpusError: the texts do not belong to this scenario or have the wrong roles.

    >>> base = Text(id="paired/w/baseline.txt", text="Mo walked home.", role="baseline",
    ...             scenario="w")
    >>> sad = Text(id="paired/w/sad.txt", text="Mo walked home slowly.", role="variant",
    ...            concept="sad", scenario="w")
    >>> Scenario(slug="w", baseline=base, variants={"sad": sad}).concepts
    ('sad',)
    """

    slug: str
    baseline: Text
    variants: Mapping[str, Text] = attrs.field(converter=sorted_variants)
    anchors: tuple[str, ...] = attrs.field(default=(), converter=anchor_tuple)

    def __attrs_post_init__(self) -> None:
        if not self.slug or "/" in self.slug:
            raise CorpusError(f"scenario slug must be a directory name, got {self.slug!r}")
        if self.baseline.role != "baseline" or self.baseline.scenario != self.slug:
            raise CorpusError(
                f"scenario {self.slug!r}: baseline must be a role='baseline' text of "
                f"scenario {self.slug!r}, got role={self.baseline.role!r} "
                f"scenario={self.baseline.scenario!r}"
            )
        if not self.variants:
            raise CorpusError(
                f"scenario {self.slug!r} has no variants; expected at least one "
                f"<concept>.txt next to baseline.txt. Fix: add a variant or remove the scenario."
            )
        for concept, text in self.variants.items():
            if text.role != "variant" or text.concept != concept or text.scenario != self.slug:
                raise CorpusError(
                    f"scenario {self.slug!r}: variants[{concept!r}] must be a role='variant' "
                    f"text with concept={concept!r} and scenario={self.slug!r}, got "
                    f"role={text.role!r} concept={text.concept!r} scenario={text.scenario!r}"
                )

    @property
    def concepts(self) -> tuple[str, ...]:
        """The concepts this scenario carries, sorted."""
        return tuple(self.variants)


def _to_path(path: str | Path) -> Path:
    return Path(path)


def _by_slug(scenarios: Iterable[Scenario]) -> tuple[Scenario, ...]:
    return tuple(sorted(scenarios, key=lambda s: s.slug))


def _by_id(texts: Iterable[Text]) -> tuple[Text, ...]:
    return tuple(sorted(texts, key=lambda t: t.id))


def _check_corpus(instance: Corpus) -> None:
    slugs = [s.slug for s in instance.scenarios]
    if len(set(slugs)) != len(slugs):
        dupes = sorted({s for s in slugs if slugs.count(s) > 1})
        raise CorpusError(f"scenario slugs must be unique; repeated: {', '.join(dupes)}")
    for text in instance.stories:
        if text.role != "story":
            raise CorpusError(f"stories must have role='story', got {text.role!r} ({text.id})")
    for text in instance.neutral:
        if text.role != "neutral":
            raise CorpusError(f"neutral texts must have role='neutral', got {text.role!r} "
                              f"({text.id})")
    ids = [t.id for t in instance.texts]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise CorpusError(f"text ids must be unique; repeated: {', '.join(dupes)}")


@attrs.frozen(kw_only=True)
class Corpus:
    """Paired scenarios, unpaired stories and neutral texts, as loaded from disk.

    Attributes:
        root: the corpus root (the directory holding ``paired/``).
        scenarios: the paired scenarios, sorted by slug.
        stories: unpaired stories, sorted by id.
        neutral: neutral texts, sorted by id.

    Raises:
        CorpusError: repeated scenario slugs or text ids, or texts with the wrong role.
    """

    root: Path = attrs.field(converter=_to_path)
    scenarios: tuple[Scenario, ...] = attrs.field(converter=_by_slug)
    stories: tuple[Text, ...] = attrs.field(default=(), converter=_by_id)
    neutral: tuple[Text, ...] = attrs.field(default=(), converter=_by_id)

    def __attrs_post_init__(self) -> None:
        _check_corpus(self)

    @property
    def paired_concepts(self) -> tuple[str, ...]:
        """Concepts carried by at least one scenario, sorted."""
        return tuple(sorted({c for s in self.scenarios for c in s.variants}))

    @property
    def concepts(self) -> tuple[str, ...]:
        """Concepts present in scenarios or stories, sorted."""
        story = {t.concept for t in self.stories if t.concept is not None}
        return tuple(sorted(set(self.paired_concepts) | story))

    @property
    def texts(self) -> tuple[Text, ...]:
        """Every text: scenarios by slug (baseline, then variants), stories, neutral."""
        paired = [t for s in self.scenarios for t in (s.baseline, *s.variants.values())]
        return (*paired, *self.stories, *self.neutral)

    @property
    def content_hash(self) -> str:
        """A hex SHA-256 over the sorted (id, text sha256) pairs of every text."""
        digest = hashlib.sha256()
        for text_id, sha in sorted((t.id, t.sha256) for t in self.texts):
            digest.update(f"{text_id}\0{sha}\n".encode())
        return digest.hexdigest()

    def _require(self, concept: str) -> None:
        if concept not in self.concepts:
            raise UnknownConceptError(
                f"concept {concept!r} is not in this corpus{did_you_mean(concept, self.concepts)}"
                f"; expected one of: {', '.join(self.concepts)}"
            )

    def scenarios_with(self, concept: str) -> tuple[Scenario, ...]:
        """Return the scenarios that carry ``concept`` (possibly none, for a story-only one).

        Raises:
            UnknownConceptError: the concept is in neither the scenarios nor the stories.
        """
        self._require(concept)
        return tuple(s for s in self.scenarios if concept in s.variants)

    def stories_for(self, concept: str) -> tuple[Text, ...]:
        """Return the stories of ``concept`` (possibly none, for a paired-only one).

        Raises:
            UnknownConceptError: the concept is in neither the scenarios nor the stories.
        """
        self._require(concept)
        return tuple(t for t in self.stories if t.concept == concept)

    def select(self, concepts: Iterable[str]) -> Corpus:
        """Keep only ``concepts``: variants and stories of others go; neutral texts stay.

        Scenarios left without variants are dropped.

        Raises:
            UnknownConceptError: a requested concept is not in the corpus.
        """
        wanted = set(concepts)
        for concept in sorted(wanted):
            self._require(concept)
        scenarios = [
            attrs.evolve(s, variants={c: t for c, t in s.variants.items() if c in wanted})
            for s in self.scenarios
            if wanted & set(s.variants)
        ]
        stories = [t for t in self.stories if t.concept in wanted]
        return attrs.evolve(self, scenarios=scenarios, stories=stories)

    def lint(
        self, lexicon: Mapping[str, Iterable[str]] | None = None, *, strict: bool = False
    ) -> LintReport:
        """Check the loaded texts against the corpus style rules (see ``docs/corpus.md``).

        Args:
            lexicon: extra banned words per concept, added to the built-in lexicon and to
                the root's ``lexicon.json``.
            strict: raise `LintError` when the report has errors.

        Returns:
            The lint report (structural checks already passed when the corpus loaded).

        Raises:
            LintError: ``strict`` is set and the report has errors.
        """
        from amygdala.corpus._lint import check_scenarios

        drafts = [
            ScenarioDraft(slug=s.slug, baseline=s.baseline, variants=s.variants,
                          anchors=s.anchors, has_anchors_file=bool(s.anchors))
            for s in self.scenarios
        ]
        report = check_scenarios(
            root=self.root, scenarios=drafts, stories=self.stories, neutral=self.neutral,
            lexicon=lexicon,
        )
        if strict and report.errors:
            raise LintError(
                f"corpus at {self.root} has {len(report.errors)} lint errors; expected none. "
                f"First: {report.errors[0].path}: {report.errors[0].message}. Fix: run "
                f"`amygdala lint {self.root}` for the full list."
            )
        return report

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        stories: str | Path | None = None,
        neutral: str | Path | None = None,
    ) -> Corpus:
        """Load a corpus from disk, refusing one with structural problems.

        ``path`` is either a corpus root (holding ``paired/`` and optionally ``stories/``
        and ``neutral/``) or a paired directory itself (holding one folder per scenario).
        In the second case the root is its parent, and sibling ``stories/`` and
        ``neutral/`` directories next to it are used when they exist.

        Args:
            path: a corpus root or a paired directory.
            stories: a stories directory to use instead of the default one.
            neutral: a neutral directory to use instead of the default one.

        Returns:
            The corpus. Stray files and style problems do not stop loading: see `lint`.

        Raises:
            CorpusError: the path is missing or not a directory, there are no scenarios, a
                scenario has no baseline or no variants, or a file is empty, not UTF-8 or
                over 1 MiB. The message names the first problem and how many others exist.

        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> scenario = root / "paired" / "the_walk"
        >>> scenario.mkdir(parents=True)
        >>> _ = (scenario / "baseline.txt").write_text("Mo walked home at six.\\n")
        >>> _ = (scenario / "sad.txt").write_text("Mo walked home slowly at six.\\n")
        >>> corpus = Corpus.load(root)
        >>> [s.slug for s in corpus.scenarios], corpus.concepts
        (['the_walk'], ('sad',))
        """
        return cls._from_scan(scan(path, stories=stories, neutral=neutral), path)

    @classmethod
    def _from_scan(cls, result: Scan, path: str | Path) -> Corpus:
        errors = [f for f in result.findings if f.severity == "error"]
        if errors:
            first, n_more = errors[0], len(errors) - 1
            more = f" ({n_more} more {'error' if n_more == 1 else 'errors'}.)" if n_more else ""
            raise CorpusError(
                f"cannot load corpus {path}: {first.path}: {first.message}{more} "
                f"Run `amygdala lint {path}` for the full list."
            )
        scenarios = [
            Scenario(slug=d.slug, baseline=d.baseline, variants=d.variants, anchors=d.anchors)
            for d in result.scenarios
            if d.baseline is not None
        ]
        return cls(root=result.root, scenarios=scenarios, stories=result.stories,
                   neutral=result.neutral)

    @classmethod
    def from_stories(cls, path: str | Path, *, neutral: str | Path | None = None) -> Corpus:
        """Load unpaired stories from a directory without ``paired/`` or ``stories/`` levels.

        ``<path>/<concept>/*.txt`` folders hold one story per file; flat
        ``<path>/<concept>.txt`` files hold several, separated by lines of ``---`` (or,
        without such lines, by blank lines). ``<path>/neutral/`` or
        ``<path>/neutral.txt`` hold neutral texts. Such a corpus trains with the
        ``unpaired`` and ``combined`` methods. (A corpus root with ``stories/`` and
        ``neutral/`` but no ``paired/`` loads with `load`.)

        Args:
            path: the directory of concept folders and files.
            neutral: a neutral directory to use instead of ``<path>/neutral``.

        Raises:
            CorpusError: no stories, or a file that cannot be read.

        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "sad.txt").write_text("Mo walked home alone.\\n---\\nThe cat was gone.\\n")
        >>> _ = (root / "neutral.txt").write_text("The bus left at six.\\n")
        >>> corpus = Corpus.from_stories(root)
        >>> [t.id for t in corpus.stories], len(corpus.neutral)
        (['stories/sad.txt#1', 'stories/sad.txt#2'], 1)
        """
        return cls._from_scan(scan_stories(path, neutral=neutral), path)

    @classmethod
    def from_sev(
        cls, path: str | Path, *, concepts: Mapping[str, str] | None = None,
        baseline: str = "neutral", neutral: str | Path | None = None,
    ) -> Corpus:
        """Load Wang et al.'s SEV records (JSON lines) as paired scenarios.

        Each line is one object with a scenario id (``scenario_id``, ``scenario``,
        ``event_id`` or ``id``), an emotion (``emotion``, ``label`` or ``concept``) and a
        text (``text``, ``story``, ``content`` or ``event``). A scenario's ``neutral``
        record is its baseline; every other record is the same event under one emotion.
        Text ids are ``paired/<scenario>/<concept>.txt`` as if the corpus were on disk.

        Args:
            path: the ``.jsonl`` file; its directory is the corpus root.
            concepts: emotion label -> concept (default: ``anger`` -> ``angry``,
                ``sadness`` -> ``sad``, ``happiness``/``joy`` -> ``joyful``, ``fear`` ->
                ``afraid``, ``surprise`` -> ``surprised``, ``disgust`` -> ``disgusted``;
                other labels are kept). ``{}`` keeps every label.
            baseline: the label of the baseline records.
            neutral: an optional directory of neutral texts.

        Raises:
            CorpusError: a malformed line, a missing field, a repeated record, or a
                scenario without a baseline or without emotions.

        >>> import json, pathlib, tempfile
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "sev.jsonl"
        >>> rows = [{"scenario_id": 1, "emotion": "neutral", "text": "Mo got the letter."},
        ...         {"scenario_id": 1, "emotion": "fear", "text": "Mo dreaded the letter."}]
        >>> _ = file.write_text("\\n".join(json.dumps(r) for r in rows))
        >>> corpus = Corpus.from_sev(file)
        >>> corpus.concepts, corpus.scenarios[0].variants["afraid"].id
        (('afraid',), 'paired/1/afraid.txt')
        """
        file = Path(path)
        groups = read_sev_records(file, concepts=concepts, baseline=baseline)
        scenarios = []
        for slug, texts in groups.items():
            base = Text(id=f"paired/{slug}/baseline.txt", text=texts["baseline"],
                        role="baseline", scenario=slug)
            variants = {c: Text(id=f"paired/{slug}/{c}.txt", text=t, role="variant",
                                concept=c, scenario=slug)
                        for c, t in texts.items() if c != "baseline"}
            scenarios.append(Scenario(slug=slug, baseline=base, variants=variants))
        neutral_texts: list[Text] = []
        if neutral is not None:
            folder = Path(neutral)
            if not folder.is_dir():
                raise CorpusError(f"neutral directory {folder} does not exist; expected a "
                                  "folder of .txt files")
            neutral_texts = scan_neutral(folder, [])
        return cls(root=file.parent, scenarios=scenarios, neutral=neutral_texts)
