"""The pieces of a corpus every corpus module needs: `Text`, `ScenarioDraft`, the concept
names and the reader's limits.

A leaf of the corpus package: the model (`Corpus`, `Scenario`), the disk reader, the cue
checks and the linter all import it, and it imports none of them, so loading a corpus,
reading a directory and linting it never import each other in a circle.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Literal, get_args

import attrs

from amygdala.errors import CorpusError

__all__ = [
    "CANONICAL_COGNITIVE",
    "CANONICAL_CONCEPTS",
    "CANONICAL_EMOTIONS",
    "IGNORED_FILES",
    "MAX_FILE_BYTES",
    "ROLES",
    "Role",
    "ScenarioDraft",
    "Text",
    "anchor_tuple",
    "did_you_mean",
    "sorted_variants",
]

CANONICAL_EMOTIONS: tuple[str, ...] = (
    "angry", "sad", "joyful", "afraid", "disgusted", "surprised", "calm", "anxious", "tender",
    "ashamed", "proud", "relieved", "bored", "curious", "nostalgic", "hopeful", "frustrated",
    "lonely", "awed", "grateful",
)  # fmt: skip
CANONICAL_COGNITIVE: tuple[str, ...] = ("onto_something", "stuck", "in_flow", "determined")
CANONICAL_CONCEPTS: tuple[str, ...] = CANONICAL_EMOTIONS + CANONICAL_COGNITIVE

Role = Literal["baseline", "variant", "story", "neutral"]
ROLES: tuple[Role, ...] = get_args(Role)

MAX_FILE_BYTES = 1 << 20
IGNORED_FILES = frozenset({"README.md"})


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or ``""`` if none is close."""
    close = difflib.get_close_matches(name.lower(), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_id(_: object, __: attrs.Attribute[str], value: str) -> None:
    pure = PurePosixPath(value)
    if not value or "\\" in value or pure.is_absolute() or ".." in pure.parts:
        raise CorpusError(
            f"text id must be a corpus-relative posix path like 'paired/the_doorway/afraid.txt'"
            f", got {value!r}"
        )


def _check_text(instance: Text, _: attrs.Attribute[str], value: str) -> None:
    if not value.strip():
        raise CorpusError(
            f"text {instance.id!r} is empty or only whitespace; expected a passage of prose. "
            "Fix: write the text or remove the file."
        )


def _check_role(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in ROLES:
        raise CorpusError(f"unknown text role {value!r}; expected one of {', '.join(ROLES)}")


@attrs.frozen(kw_only=True)
class Text:
    """One text of a corpus, with where it sits.

    Attributes:
        id: the canonical corpus-relative posix path, e.g. ``paired/the_doorway/afraid.txt``.
        text: the text, surrounding whitespace stripped and line endings normalised to ``\\n``.
        role: ``baseline`` or ``variant`` (paired), ``story`` or ``neutral``.
        concept: the concept a variant or story expresses; ``None`` for baselines and neutral.
        scenario: the scenario slug of a baseline or variant; ``None`` otherwise.

    >>> t = Text(id="paired/the_walk/afraid.txt", text="Mo kept to the lit side.",
    ...          role="variant", concept="afraid", scenario="the_walk")
    >>> len(t.sha256)
    64
    """

    id: str = attrs.field(validator=_check_id)
    text: str = attrs.field(validator=_check_text)
    role: Role = attrs.field(validator=_check_role)
    concept: str | None = None
    scenario: str | None = None

    def __attrs_post_init__(self) -> None:
        needs_concept = self.role in ("variant", "story")
        needs_scenario = self.role in ("baseline", "variant")
        if needs_concept != (self.concept is not None):
            want = "a concept" if needs_concept else "concept=None"
            raise CorpusError(
                f"text {self.id!r} has role {self.role!r}, which needs {want}; "
                f"got concept={self.concept!r}"
            )
        if needs_scenario != (self.scenario is not None):
            want = "a scenario slug" if needs_scenario else "scenario=None"
            raise CorpusError(
                f"text {self.id!r} has role {self.role!r}, which needs {want}; "
                f"got scenario={self.scenario!r}"
            )

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the UTF-8 encoded text."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def sorted_variants(variants: Mapping[str, Text]) -> Mapping[str, Text]:
    """A read-only copy of ``variants`` sorted by concept (an attrs converter)."""
    return MappingProxyType(dict(sorted(variants.items())))


def anchor_tuple(anchors: Iterable[str]) -> tuple[str, ...]:
    """``anchors`` as a tuple (an attrs converter)."""
    return tuple(anchors)


@attrs.frozen(kw_only=True)
class ScenarioDraft:
    """A scenario as found on disk, before validation (the baseline may be missing)."""

    slug: str
    baseline: Text | None
    variants: Mapping[str, Text] = attrs.field(converter=sorted_variants)
    anchors: tuple[str, ...] = attrs.field(default=(), converter=anchor_tuple)
    has_anchors_file: bool = True
    form: str | None = None

