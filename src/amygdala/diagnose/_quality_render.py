"""Text views of a `QualityReport`: the triage table and a run-against-run comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from amygdala.diagnose._quality import ConceptQuality, LayerQuality, QualityReport

__all__ = ["ComparisonRow", "compare_reports", "render_comparison", "render_report"]

_SOURCES = {"evaluation": "highest held-out accuracy", "split_half": "most stable split halves",
            "alignment": "highest mean story alignment"}


def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _row(c: ConceptQuality, q: LayerQuality) -> str:
    labels = ",".join(c.labels) or "-"
    neuron = "-" if q.neuron_index is None else f"{abs(q.neuron_cosine or 0):.2f}#{q.neuron_index}"
    head = "-" if q.head_index is None else f"{q.head_share or 0:.2f}h{q.head_index}"
    near = f"{q.nearest[0][0]} {q.nearest[0][1]:.2f}" if q.nearest else "-"
    n = f"{c.n_scenarios}/{c.n_stories}"
    return (f"{c.concept:<15} {labels:<28} {q.first_pc_variance_ratio:>5.2f} "
            f"{q.effective_dimension:>5.1f} {q.alignment_mean:>5.2f} {q.alignment_min:>5.2f} "
            f"{_f(q.split_half_cosine):>5} {_f(q.redundancy_r2):>5} {_f(c.loso_accuracy):>5} "
            f"{neuron:>10} {head:>7}  {near:<20} {n:>5}")


def render_report(report: QualityReport) -> str:
    """The triage table at the best layer, worst concepts first, a reason line per label."""
    best = report.best_layer
    lines = [
        f"Quality of {len(report.concepts)} {report.method} directions ({report.normalisation}"
        f" space) at layer {best} ({_SOURCES.get(report.best_layer_source, '?')}); "
        "worst first",
        f"{'concept':<15} {'labels':<28} {'pc1':>5} {'dim':>5} {'align':>5} {'min':>5} "
        f"{'split':>5} {'R2':>5} {'loso':>5} {'neuron':>10} {'head':>7}  {'nearest':<20} "
        f"{'sc/st':>5}",
    ]
    for concept in report.worst_first():
        lines.append(_row(concept, concept.at(best)))
        for reason in concept.reasons:
            lines.append(f"    {reason}")
        outliers = concept.at(best).outliers
        if outliers:
            lines.append("    outliers: " + ", ".join(f"{i} ({c:+.2f})" for i, c in outliers))
    counts: dict[str, int] = {}
    for concept in report.concepts:
        for label in concept.labels or ("-",):
            counts[label] = counts.get(label, 0) + 1
    lines.append("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append("pc1 first-PC variance share; dim effective dimension; align/min story "
                 "cosines; split split-half cosine; R2 redundancy; loso held-out accuracy"
                 + (f" (layer {report.loso_layer})" if report.loso_layer is not None else "")
                 + "; neuron |cos|#index; head share h index; sc/st scenarios/stories")
    return "\n".join(lines)


@attrs.frozen(kw_only=True)
class ComparisonRow:
    """One concept in two runs: which is cleaner and on how many metrics each wins."""

    concept: str
    wins_a: int
    wins_b: int
    winner: str
    cells: tuple[tuple[str, float | None, float | None], ...]


def _metrics(c: ConceptQuality, layer: int) -> dict[str, float | None]:
    q = c.at(layer)
    return {"pc1": q.first_pc_variance_ratio, "align": q.alignment_mean,
            "split": q.split_half_cosine, "loso": c.loso_accuracy,
            "-nearest": -q.nearest[0][1] if q.nearest else None}


def compare_reports(a: QualityReport, b: QualityReport) -> list[ComparisonRow]:
    """Concept by concept (each run at its own best layer), count metric wins.

    Metrics where higher is cleaner: first-PC share, mean alignment, split-half
    cosine, held-out accuracy, and minus the nearest-concept cosine. A run wins a
    concept by winning more of the metrics both runs have.
    """
    names = [c.concept for c in a.concepts if c.concept in {x.concept for x in b.concepts}]
    rows = []
    for name in names:
        ma = _metrics(a.concept(name), a.best_layer)
        mb = _metrics(b.concept(name), b.best_layer)
        wins_a = wins_b = 0
        cells = []
        for key in ma:
            va, vb = ma[key], mb[key]
            if va is not None and vb is not None and va != vb:
                wins_a += va > vb
                wins_b += vb > va
            sign = -1.0 if key.startswith("-") else 1.0
            cells.append((key.lstrip("-"), None if va is None else sign * va,
                          None if vb is None else sign * vb))
        winner = "A" if wins_a > wins_b else "B" if wins_b > wins_a else "="
        rows.append(ComparisonRow(concept=name, wins_a=wins_a, wins_b=wins_b, winner=winner,
                                  cells=tuple(cells)))
    return rows


def render_comparison(a: QualityReport, b: QualityReport, name_a: str = "A",
                      name_b: str = "B") -> str:
    """A table of `compare_reports`: per concept both runs' metrics and the cleaner run."""
    rows = compare_reports(a, b)
    lines = [f"A = {name_a} ({a.method}, layer {a.best_layer}); "
             f"B = {name_b} ({b.method}, layer {b.best_layer})"]
    keys = [cell[0] for cell in rows[0].cells] if rows else []
    lines.append(f"{'concept':<15} " + " ".join(f"{k + ' A/B':>11}" for k in keys)
                 + "  cleaner  labels A | B")
    for row in rows:
        cells = " ".join(f"{_f(va):>5}/{_f(vb):<5}" for _, va, vb in row.cells)
        labels = (",".join(a.concept(row.concept).labels) or "-") + " | " + (
            ",".join(b.concept(row.concept).labels) or "-")
        lines.append(f"{row.concept:<15} {cells}  {row.winner:^7}  {labels}")
    tally = {w: sum(r.winner == w for r in rows) for w in ("A", "B", "=")}
    lines.append(f"cleaner: A {tally['A']}, B {tally['B']}, tie {tally['=']} "
                 "(metric wins over pc1, align, split, loso and a lower nearest cosine)")
    return "\n".join(lines)
