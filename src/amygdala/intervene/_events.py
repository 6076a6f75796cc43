"""Smoothing and events of a live read-out: a trigger, not a flicker.

A concept *enters* the active state once its smoothed z has stayed at or above
``on`` for ``min_tokens`` tokens in a row, and *leaves* it once it has stayed
below ``off`` for ``min_tokens`` tokens in a row. With ``off < on`` the band in
between holds the current state (hysteresis), so a score hovering around one
threshold does not toggle on every token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
import numpy as np

from amygdala._codec import from_data, spec, to_data

__all__ = ["EMA", "Event", "EventRule", "EventTracker"]

EventKind = Literal["enter", "leave"]


def _check_rule(instance: EventRule, _attribute: Any, _value: Any) -> None:
    if not instance.off <= instance.on:
        raise ValueError(
            f"an event rule needs off <= on (leave below off, enter at or above on); got "
            f"on={instance.on}, off={instance.off}; lower off or raise on")


@attrs.frozen(kw_only=True)
class EventRule:
    """Thresholds of the active state, on the smoothed z-score.

    Attributes:
        on: enter at or above this smoothed z.
        off: leave below this smoothed z (``off <= on``).
        min_tokens: tokens in a row a condition must hold before the state changes.
    """

    on: float = attrs.field(default=2.0, validator=_check_rule)
    off: float = attrs.field(default=1.0, validator=_check_rule)
    min_tokens: int = attrs.field(default=2, validator=attrs.validators.ge(1))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventRule:
        """Inverse of `to_json`."""
        return from_data(cls, data)


@attrs.frozen(kw_only=True)
class Event:
    """A concept entering or leaving the active state.

    Attributes:
        kind: ``enter`` or ``leave``.
        concept: the concept.
        step: the generated-token index at which the state changed.
        since: the first token of the run of tokens that triggered the change.
        value: the smoothed z at ``step``.
    """

    kind: EventKind
    concept: str
    step: int
    since: int
    value: float = attrs.field(metadata=spec(round=3))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``value`` to three decimals)."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """Inverse of `to_json` (up to the rounding of ``value``)."""
        return from_data(cls, data)


class EMA:
    """Exponential moving average with a span of ``window`` tokens (``alpha = 2/(window+1)``).

    ``window=1`` means no smoothing. The first value seeds the average.

    >>> ema = EMA(3)
    >>> [float(ema.update(np.array([x]))[0]) for x in (4.0, 0.0, 0.0)]
    [4.0, 2.0, 1.0]
    """

    def __init__(self, window: float) -> None:
        if window < 1:
            raise ValueError(f"the smoothing window must be >= 1 token, got {window}")
        self.alpha = 2.0 / (float(window) + 1.0)
        self.value: np.ndarray | None = None

    def update(self, x: np.ndarray) -> np.ndarray:
        """Fold in one token's values; return the smoothed state."""
        x = np.asarray(x, np.float64)
        self.value = x.copy() if self.value is None else (
            self.alpha * x + (1.0 - self.alpha) * self.value)
        return self.value.copy()


class EventTracker:
    """Turn a stream of smoothed scores ``[concepts]`` into `Event` s by `EventRule`.

    >>> tracker = EventTracker(["a"], EventRule(on=2, off=1, min_tokens=2))
    >>> [e.kind for x in (3, 3, 1.5, 0, 0) for e in tracker.update([x])]
    ['enter', 'leave']
    """

    def __init__(self, concepts: Sequence[str], rule: EventRule) -> None:
        self.concepts = tuple(concepts)
        self.rule = rule
        self.active = np.zeros(len(self.concepts), bool)
        self._run = np.zeros(len(self.concepts), int)  # tokens in a row pushing to switch
        self.step = -1

    def update(self, smoothed: Sequence[float] | np.ndarray) -> list[Event]:
        """Advance by one token; return the events it triggered (in concept order)."""
        values = np.asarray(smoothed, np.float64)
        if values.shape != (len(self.concepts),):
            raise ValueError(f"expected {len(self.concepts)} scores, got shape {values.shape}")
        self.step += 1
        pushing = np.where(self.active, values < self.rule.off, values >= self.rule.on)
        self._run = np.where(pushing, self._run + 1, 0)
        events = []
        for j in np.flatnonzero(self._run >= self.rule.min_tokens):
            self.active[j] = not self.active[j]
            self._run[j] = 0
            events.append(Event(kind="enter" if self.active[j] else "leave",
                                concept=self.concepts[j], step=self.step,
                                since=self.step - self.rule.min_tokens + 1,
                                value=float(values[j])))
        return events

    def active_concepts(self) -> tuple[str, ...]:
        """Concepts in the active state now."""
        return tuple(c for c, on in zip(self.concepts, self.active, strict=True) if on)
