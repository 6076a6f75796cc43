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

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from amygdala._io import colormap, figure, write_figure

__all__ = ["SINK_TOKENS", "color_limit", "heatmap_html", "heatmap_png", "relative",
           "sink_mask"]

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


def _panels(z: np.ndarray, relative_view: bool) -> list[tuple[str, np.ndarray]]:
    panels = [("z against neutral text", np.asarray(z, np.float64))]
    if relative_view and z.shape[1] > 1:
        panels.append(("relative: z minus the mean over concepts", relative(z)))
    return panels


def heatmap_png(path: Path | str, tokens: Sequence[str], concepts: Sequence[str],
                z: np.ndarray, *, title: str, skip: int = SINK_TOKENS,
                relative_view: bool = True) -> Path:
    """Write a PNG heat map: the z view and (beside it) the relative view; sinks blank.

    Args:
        path: the PNG to write (atomically).
        tokens: column labels.
        concepts: row labels.
        z: ``[tokens, concepts]``.
        title: the figure title.
        skip: leading positions that are attention sinks (blank, out of the scale).
        relative_view: add the relative panel (for a z that is not relative already).

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    mask = sink_mask(len(tokens), skip=skip)
    panels = _panels(z, relative_view)
    fig = figure(figsize=(max(6, 0.3 * len(tokens)),
                          max(3, 0.3 * len(concepts)) * len(panels) + 0.6))
    axes = fig.subplots(len(panels), 1, squeeze=False)
    cmap = colormap("RdBu_r").with_extremes(bad="#dddddd")  # sinks: no reading
    labels = [t.replace("\n", "\\n") for t in tokens]
    for ax, (name, values) in zip(axes[:, 0], panels, strict=True):
        shown = np.where(mask[:, None], np.nan, values)
        limit = color_limit(values, mask=mask)
        im = ax.imshow(shown.T, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(tokens)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(concepts)), list(concepts), fontsize=7)
        ax.set_title(f"{title}: {name} (scale: 98th percentile of |z|; grey: "
                     "attention sinks)", fontsize=8)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return write_figure(fig, path, dpi=120, tight=False)


def _rgb(z: float, limit: float) -> str:
    v = max(-1.0, min(1.0, z / limit))
    fade = int(255 * (1 - abs(v)))
    return f"rgb(255,{fade},{fade})" if v > 0 else f"rgb({fade},{fade},255)"


def heatmap_html(tokens: Sequence[str], concepts: Sequence[str], z: np.ndarray, *,
                 title: str, heading: str, skip: int = SINK_TOKENS,
                 relative_view: bool = True) -> str:
    """A self-contained HTML heat map (concepts as rows); sinks blank; relative table too.

    Args:
        tokens: column labels.
        concepts: row labels.
        z: ``[tokens, concepts]``.
        title: the page title.
        heading: the line above the tables.
        skip: leading positions that are attention sinks.
        relative_view: add the relative table below the z one.
    """
    mask = sink_mask(len(tokens), skip=skip)
    head = "".join(f"<th class='t'>{html.escape(t)}</th>" for t in tokens)
    tables = []
    for name, values in _panels(z, relative_view):
        limit = color_limit(values, mask=mask)
        rows = []
        for j, concept in enumerate(concepts):
            cells = "".join(
                "<td class='sink' title='attention sink: no reading'></td>" if mask[t] else
                f"<td style='background:{_rgb(float(values[t, j]), limit)}' "
                f"title='{html.escape(tokens[t])} {html.escape(concept)} "
                f"z={values[t, j]:+.2f}'>{values[t, j]:+.1f}</td>"
                for t in range(len(tokens)))
            rows.append(f"<tr><th>{html.escape(concept)}</th>{cells}</tr>")
        tables.append(f"<h4>{html.escape(name)} (colour scale ±{limit:.1f})</h4>"
                      f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif}table{border-collapse:collapse;font-size:11px}"
        "td{padding:2px 4px;text-align:right}td.sink{background:#ddd}th.t{writing-mode:"
        "vertical-rl;font-weight:normal;white-space:pre}</style></head><body>"
        f"<h3>{html.escape(heading)}</h3>{''.join(tables)}</body></html>\n")
