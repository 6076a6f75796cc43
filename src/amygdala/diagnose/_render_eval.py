"""Text tables and the learning-curve PNG of an `Evaluation`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from amygdala._views import VIEWS

if TYPE_CHECKING:
    from amygdala.diagnose._evaluate import Evaluation, MethodEvaluation

__all__ = ["render_curve", "render_evaluation", "write_curve_png"]

_NA = "-"


def _cell(acc: object) -> str:
    text = getattr(acc, "text", None)
    return text() if callable(text) else _NA


def render_evaluation(ev: Evaluation) -> str:
    """Summary table (nested accuracies with intervals), then the per-layer diagnostic."""
    if not ev.results:
        return _render_legacy(ev)
    lines = [
        "held-out accuracy, 95% bootstrap interval over scenarios; layer (read alone: layer "
        "or band) and probe shrinkage chosen on inner folds of the training scenarios"
        + (f" (fixed layer {ev.settings.get('fixed_layer')})"
           if ev.settings.get("fixed_layer") is not None else ""),
        f"{'method':<15} {'paired (vs own baseline)':<25} {'read alone (all concepts)':<25} "
        f"{'paired->stories':<25} {'stories->paired':<25} layer",
    ]
    for m in ev.methods:
        r = ev.results[m]
        lines.append(
            f"{m:<15} {_cell(r.accuracy['paired']):<25} {_cell(r.accuracy['readout']):<25} "
            f"{_cell(getattr(r.transfer.get('paired_to_stories'), 'accuracy', None)):<25} "
            f"{_cell(getattr(r.transfer.get('stories_to_paired'), 'accuracy', None)):<25} "
            f"{r.recommended['paired']}/{_reading(r)}")
    b = ev.baselines
    lines.append(f"{'bag-of-words':<15} {_cell(b.get('paired')):<25} "
                 f"{_cell(b.get('readout')):<25} {_cell(b.get('paired_to_stories')):<25} "
                 f"{_cell(b.get('stories_to_paired')):<25}")
    first = ev.results[ev.methods[0]]
    lines.append(f"{'chance':<15} {first.accuracy['paired'].chance:<25.3f} "
                 f"{first.accuracy['readout'].chance:<25.3f}")
    lines.append(f"{first.accuracy['paired'].n_items} variants in "
                 f"{first.accuracy['paired'].n_groups} scenarios; layer = recommended "
                 "(inner selection on the whole corpus) for paired/read")
    for m in ev.methods:
        r = ev.results[m]
        for task in ("paired", "readout"):
            chosen = ", ".join(f"{k}:{v}" for k, v in r.chosen_layers[task].items())
            settings = ", ".join(f"{k}:{v}" for k, v in r.chosen_settings.get(task, {}).items())
            lines.append(f"  {m}: chosen per held-out scenario ({task}) {chosen}"
                         + (f"; {settings}" if settings else ""))
    detection = [m for m in ev.methods if ev.results[m].detection]
    if detection:
        lines += ["", "detection (read alone): macro AUC of each concept's score between its "
                  "variants and all others, nested, in each view: z against neutral text, "
                  "and relative = z minus the mean over concepts",
                  f"{'method':<15} {'z':<25} {'relative':<25} view"]
        for m in detection:
            r = ev.results[m]
            cells = [f"{d.value:.3f} [{d.low:.3f}, {d.high:.3f}]" if d else _NA
                     for d in (r.detection.get(v) for v in VIEWS)]
            lines.append(f"{m:<15} {cells[0]:<25} {cells[1]:<25} {r.recommended_view}")
    curves = [render_curve(ev, m) for m in ev.methods if ev.results[m].curve]
    if curves:
        lines += ["", *curves]
    lines += ["", "per-layer leave-one-scenario-out accuracy (paired task), a DIAGNOSTIC: "
              "choosing its best row selects the layer on the reported folds"]
    lines.append("layer " + " ".join(f"{m:>14}" for m in ev.methods))
    for li, layer in enumerate(ev.layers):
        lines.append(f"{layer:>5} " + " ".join(f"{ev.accuracy[mi, li]:>14.3f}"
                                               for mi in range(len(ev.methods))))
    return "\n".join(lines)


def _reading(r: MethodEvaluation) -> str:
    """The recommended read-out layer, or band ``a-b``, and shrinkage when tuned."""
    band = r.recommended_band.get("readout", ())
    text = f"{band[0]}-{band[-1]}" if band else str(r.recommended["readout"])
    shrink = r.settings.get("readout", {}).get("shrinkage")
    return text + (f" (a={shrink:g})" if shrink is not None else "")


def _render_legacy(ev: Evaluation) -> str:
    lines = ["layer " + " ".join(f"{m:>14}" for m in ev.methods)]
    for li, layer in enumerate(ev.layers):
        lines.append(f"{layer:>5} " + " ".join(f"{ev.accuracy[mi, li]:>14.3f}"
                                               for mi in range(len(ev.methods))))
    lines.append(f"bag-of-words {ev.bag_of_words:.3f}; chance {ev.chance:.3f}")
    return "\n".join(lines)


def render_curve(ev: Evaluation, method: str) -> str:
    """The learning curve of ``method``: mean (sd, min-max) per training-set size."""
    r = ev.results[method]
    lines = [f"learning curve, {method} (held-out groups; layer chosen inside each draw)",
             f"{'k':>5} {'n':>6} {'paired mean (sd) [min, max]':<32} "
             f"{'read alone mean (sd) [min, max]':<32} draws"]
    for p in r.curve:
        cells = []
        for task in ("paired", "readout"):
            s = p.summary(task)
            cells.append(f"{s['mean']:.3f} ({s['std']:.3f}) [{s['min']:.3f}, {s['max']:.3f}]")
        k = "all" if p.size is None else str(p.size)
        lines.append(f"{k:>5} {p.n_train:>6.1f} {cells[0]:<32} {cells[1]:<32} "
                     f"{len(p.draws['paired'])}")
    return "\n".join(lines)


def write_curve_png(ev: Evaluation, path: Path | str) -> Path:
    """Plot every method's learning curve (mean and min-max band) into a PNG.

    Raises:
        MissingDependencyError: matplotlib is not installed (``pip install 'amygdala[plot]'``).
    """
    from amygdala._io import figure, write_figure

    fig = figure(figsize=(10, 4))
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    for ax, task, title in zip(axes, ("paired", "readout"),
                               ("paired (vs own baseline)", "read alone (all concepts)"),
                               strict=True):
        for m in ev.methods:
            pts = ev.results[m].curve
            if not pts:
                continue
            x = [p.n_train for p in pts]
            s = [p.summary(task) for p in pts]
            ax.plot(x, [v["mean"] for v in s], marker="o", label=m)
            ax.fill_between(x, [v["min"] for v in s], [v["max"] for v in s], alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training scenarios")
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.legend(fontsize=8)
    return write_figure(fig, Path(path))
