"""Display rules shared by `Readout` views, ``amygdala watch`` and the server.

- Attention-sink tokens (the first ``skip`` positions, which the neutral
  statistics and the pooling leave out) have residual norms tens of times the
  others; their z-scores (around -100 on SmolLM2) are not readings. They are
  shown blank and never set a colour scale.
- Colour limits are robust: a high percentile of ``|z|`` over the other tokens
  (at least ``floor``), so one outlier cannot wash the rest of a heat map white.
- The relative view scores each concept against the others at the same token
  (``z - mean over concepts``): it removes what all concepts share (a token that
  lifts every reader lifts none relative to the rest).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SINK_TOKENS", "color_limit", "relative", "sink_mask"]

# The neutral statistics and the default pooling skip the first two positions.
SINK_TOKENS = 2


def sink_mask(n_tokens: int, *, start_position: int = 0, skip: int = SINK_TOKENS) -> np.ndarray:
    """Boolean ``[n_tokens]``: True where the absolute position is an attention sink.

    Args:
        n_tokens: how many tokens.
        start_position: absolute position of the first of them.
        skip: positions counted as sinks from the start of the sequence.

    >>> sink_mask(4).tolist()
    [True, True, False, False]
    """
    mask: np.ndarray = (np.arange(n_tokens) + start_position) < skip
    return mask


def color_limit(z: np.ndarray, *, mask: np.ndarray | None = None, percentile: float = 98.0,
                floor: float = 3.0) -> float:
    """Symmetric colour limit: the ``percentile`` of ``|z|`` over unmasked finite cells.

    Args:
        z: ``[tokens, concepts]`` scores.
        mask: ``[tokens]``, True for tokens to leave out (sinks).
        percentile: robust upper percentile of ``|z|``.
        floor: the limit is never below this, so noise is not blown up to full colour.

    >>> z = np.array([[-100.0, 0.0], [1.0, 2.0], [2.5, -1.0]])
    >>> color_limit(z, mask=np.array([True, False, False]))
    3.0
    """
    rows = z if mask is None else z[~np.asarray(mask, bool)]
    cells = np.abs(rows[np.isfinite(rows)])
    if not cells.size:
        return floor
    return max(floor, float(np.percentile(cells, percentile)))


def relative(z: np.ndarray) -> np.ndarray:
    """Each concept against the others at the same token: ``z - mean(z over concepts)``.

    >>> relative(np.array([[3.0, 1.0, 2.0]])).tolist()
    [[1.0, -1.0, 0.0]]
    """
    z = np.asarray(z, np.float64)
    return z - z.mean(axis=-1, keepdims=True)  # type: ignore[no-any-return]
