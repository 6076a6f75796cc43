"""The read-out's views: one vocabulary for evaluation, ``read``, the bundle and the live path.

- ``z``: each concept's score z-scored against neutral text (mean and spread of that score
  over neutral tokens, per layer and concept);
- ``relative``: z minus the mean of z over the run's concepts, at the same layer and token,
  which removes the component every concept shares;
- ``both`` (a display, not a view): a record or table that shows the two side by side.

Files written before this vocabulary (``evaluation.json`` format 3, ``readout.json`` format
2) called the ``z`` view ``raw``; `view_from_file` still reads that spelling. "raw" keeps its
other meanings (``normalisation="raw"``, the monitor's unsmoothed ``raw`` scores).
"""

from __future__ import annotations

from typing import Final, Literal

from amygdala.errors import ViewError

__all__ = [
    "DISPLAYS",
    "LEGACY_VIEWS",
    "RELATIVE_RULE",
    "VIEWS",
    "Display",
    "View",
    "check_display",
    "check_view",
    "view_from_file",
]

View = Literal["z", "relative"]
VIEWS: Final[tuple[View, ...]] = ("z", "relative")
Display = Literal["z", "relative", "both"]
DISPLAYS: Final[tuple[Display, ...]] = ("z", "relative", "both")
# Old spellings of a view in files, and the view each one means now.
LEGACY_VIEWS: Final[dict[str, View]] = {"raw": "z"}
RELATIVE_RULE: Final = ("relative = z minus the mean of z over all the run's concepts, at the "
                        "same layer and token (as `amygdala read --view relative`)")


def check_view(value: object, option: str = "view") -> View:
    """Return ``value`` if it is a view (``z`` or ``relative``).

    Args:
        value: what the caller passed.
        option: the option or field it came from, for the message.

    Raises:
        ViewError: it is not one of `VIEWS`.

    >>> check_view("relative")
    'relative'
    """
    for view in VIEWS:
        if value == view:
            return view
    raise ViewError(f"{option} must be one of {', '.join(VIEWS)}, got {value!r}"
                    f"{_legacy_hint(value)}")


def check_display(value: object, option: str = "view") -> Display:
    """Return ``value`` if it is a display (``z``, ``relative`` or ``both``).

    Raises:
        ViewError: it is not one of `DISPLAYS`.

    >>> check_display("both")
    'both'
    """
    for display in DISPLAYS:
        if value == display:
            return display
    raise ViewError(f"{option} must be one of {', '.join(DISPLAYS)}, got {value!r}"
                    f"{_legacy_hint(value)}")


def _legacy_hint(value: object) -> str:
    """`` ('raw' is the old name of 'z')`` for an old spelling, else empty."""
    if isinstance(value, str) and value in LEGACY_VIEWS:
        return f" ({value!r} is the old name of {LEGACY_VIEWS[value]!r})"
    return ""


def view_from_file(value: object) -> View | None:
    """The view a file names, old spellings included; None when it names none we know.

    >>> view_from_file("raw"), view_from_file("relative"), view_from_file(None)
    ('z', 'relative', None)
    """
    if isinstance(value, str) and value in LEGACY_VIEWS:
        return LEGACY_VIEWS[value]
    for view in VIEWS:
        if value == view:
            return view
    return None
