"""PNG figures of a quality report (needs matplotlib: ``pip install 'amygdala[plot]'``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from amygdala._io import figure, write_figure

if TYPE_CHECKING:
    from amygdala.diagnose._quality import QualityReport

__all__ = ["write_plots"]


def _heatmap(report: QualityReport, out: Path) -> Path:
    names = [c.concept for c in report.concepts]
    matrix = np.asarray(report.cosine_matrix)
    size = 2.5 + 0.32 * len(names)
    fig = figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title(f"{report.method}: concept cosines at layer {report.best_layer}")
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine (normalised space)")
    return write_figure(fig, out / "cosine_heatmap.png")


def _accuracy(evaluation: Mapping[str, Any], out: Path) -> Path:
    fig = figure(figsize=(7, 4))
    ax = fig.add_subplot()
    layers = evaluation["layers"]
    for method, values in evaluation["accuracy"].items():
        ax.plot(layers, values, marker="o", markersize=3, label=method)
    if "chance" in evaluation:
        ax.axhline(evaluation["chance"], color="grey", linestyle=":", label="chance")
    if "bag_of_words" in evaluation:
        ax.axhline(evaluation["bag_of_words"], color="black", linestyle="--",
                   label="bag of words")
    ax.set_xlabel("layer")
    ax.set_ylabel("held-out top-1 accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("per-layer leave-one-scenario-out accuracy (diagnostic: choosing its best\n"
                 "layer selects on the reported folds; see evaluation.json for nested)")
    return write_figure(fig, out / "accuracy_by_layer.png")


def _alignment(report: QualityReport, out: Path) -> Path:
    ordered = sorted(report.concepts,
                     key=lambda c: c.at(report.best_layer).alignment_mean)
    values = [list(c.at(report.best_layer).alignments) or [0.0] for c in ordered]
    fig = figure(figsize=(7, 2 + 0.28 * len(ordered)))
    ax = fig.add_subplot()
    for i, row in enumerate(values, start=1):
        ax.hlines(i, min(row), max(row), color="lightgrey", zorder=1)
        ax.scatter(row, np.full(len(row), i), s=10, color="tab:red", zorder=3)
        ax.scatter([float(np.mean(row))], [i], marker="|", s=200, color="black", zorder=4)
    ax.set_yticks(range(1, len(ordered) + 1), [c.concept for c in ordered], fontsize=8)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("cosine of each story with the concept direction")
    ax.set_title(f"per-story alignment at layer {report.best_layer}")
    return write_figure(fig, out / "alignment.png")


def write_plots(report: QualityReport, directory: Path | str,
                evaluation: Mapping[str, Any] | None = None) -> list[Path]:
    """Write the report's PNGs into ``directory``; return their paths.

    Args:
        report: the quality report.
        directory: where to write (created if needed).
        evaluation: the contents of ``evaluation.json`` (adds the accuracy curves).

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [_heatmap(report, out), _alignment(report, out)]
    if evaluation is not None:
        paths.append(_accuracy(evaluation, out))
    return paths
