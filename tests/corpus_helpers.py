"""Shared helpers of the corpus and lint tests: neutral filler prose and file writing."""

from __future__ import annotations

import random
from pathlib import Path

_VOCAB_TEXT = (
    "box road table window paper cup door street chair lamp train bag key coat bench shelf "
    "note bread bus river stone wall floor step map pencil kettle plate fork glass jar tile "
    "drawer ladder rope bucket hinge socket cable button folder ticket parcel envelope sink "
    "carried moved placed lifted turned opened closed checked counted folded set took put "
    "along across under over beside near past through toward behind inside"
)
_VOCAB = _VOCAB_TEXT.split()


def prose(n: int, seed: int, *, lead: str = "Mo took the box") -> str:
    """Return ``n`` words of neutral filler that start with ``lead``."""
    rng = random.Random(seed)
    words = lead.split()
    while len(words) < n:
        sentence = [rng.choice(_VOCAB) for _ in range(min(9, n - len(words)))]
        sentence[0] = sentence[0].capitalize()
        sentence[-1] += "."
        words.extend(sentence)
    words[len(lead.split()) - 1] += "."
    return " ".join(words[:n]) + "\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
