"""Pass shares of circuits, cross-fitted and in-sample, from `amygdala circuits` files.

    python benchmarks/circuit_share.py RUN_DIR [--k 50] [--k-heads 5] [--out FILE.json]

Reads ``RUN_DIR/circuits/<concept>.json`` written by ``amygdala circuits RUN_DIR
--procedure both`` and prints, as Markdown, one row per concept and component kind
(falls as a share of the clean projection, with their 95% intervals; the random
control's fall; the strict pass of each procedure) and the share of concepts that pass
for each procedure and kind, with a 95% Wilson interval. ``--out`` also writes it all as
JSON. Nothing is recomputed: the numbers are the files'.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from amygdala._io import json_finite
from amygdala.vectors import RunDir

KINDS = ("neurons", "heads")
PROCEDURES = (("in_sample", "experiments"), ("crossfit", "crossfit"))


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (``(nan, nan)`` when ``n`` is 0).

    >>> [round(x, 3) for x in wilson(0, 24)]
    [0.0, 0.138]
    >>> [round(x, 3) for x in wilson(12, 24)]
    [0.314, 0.686]
    """
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _effect(block: Mapping[str, Any] | None, kind: str, k: int) -> Mapping[str, Any] | None:
    if not block:
        return None
    return next((a for a in block.get("ablation", ()) if a["kind"] == kind and int(a["k"]) == k),
                None)


def _share(value: Any, clean: float) -> float:
    return math.nan if value is None or not clean else float(value) / clean


def rows(run_dir: Path, k_neurons: int = 50, k_heads: int = 5) -> list[dict[str, Any]]:
    """One record per (concept, kind): both procedures' falls, controls and passes."""
    out = []
    run = RunDir(run_dir)
    files = sorted(run.circuits.glob("*.json"))
    for path in files:
        if path in (run.circuit_summary, run.circuit_overlap):
            continue
        data = json.loads(path.read_text())
        for kind in KINDS:
            k = k_neurons if kind == "neurons" else k_heads
            record: dict[str, Any] = {"concept": data.get("concept", path.stem), "kind": kind,
                                      "k": k, "layer": data.get("layer"),
                                      "seconds": data.get("seconds")}
            for name, key in PROCEDURES:
                block = data.get(key)
                effect = _effect(block, kind, k)
                if block is None or effect is None:
                    record[name] = None
                    continue
                clean = float(block["clean_projection"])
                drop_ci = effect.get("drop_ci") or (None, None)
                random_ci = effect.get("random_ci") or (None, None)
                record[name] = {
                    "clean": clean, "drop": effect["drop"], "random_drop": effect["random_drop"],
                    "drop_ci": list(drop_ci), "random_ci": list(random_ci),
                    "share": _share(effect["drop"], clean),
                    "share_ci": [_share(drop_ci[0], clean), _share(drop_ci[1], clean)],
                    "random_share": _share(effect["random_drop"], clean),
                    "random_share_ci": [_share(random_ci[0], clean),
                                        _share(random_ci[1], clean)],
                    "passes": bool(effect.get("passes")),
                    "passes_ratio": effect.get("passes_ratio"),
                    "selection_jaccard": effect.get("selection_jaccard"),
                }
            out.append(record)
    return out


def shares(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per procedure and kind: concepts passing, measured, share and Wilson interval."""
    result: dict[str, dict[str, Any]] = {}
    rules = [(name, "passes") for name, _ in PROCEDURES] + [("in_sample", "passes_ratio")]
    for name, rule in rules:
        label = name if rule == "passes" else f"{name}_3x"
        for kind in KINDS:
            cells = [r[name] for r in records if r["kind"] == kind and r[name] is not None]
            hits = sum(bool(c[rule]) for c in cells)
            lo, hi = wilson(hits, len(cells))
            result.setdefault(label, {})[kind] = {"passes": hits, "n": len(cells),
                                                  "share": hits / len(cells) if cells else None,
                                                  "wilson95": [lo, hi]}
    return result




def _pct(x: Any) -> str:
    if x is None or not math.isfinite(float(x)):
        return "-"
    return str(round(100 * float(x)))  # an int: no "-0"


def render(records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    """The Markdown table and the pass shares."""
    lines = ["| concept | kind | in-sample fall [95% CI] | random | 3x | strict | "
             "held-out fall [95% CI] | random [95% CI] | strict | selection Jaccard |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        cells = []
        ins, held = r["in_sample"], r["crossfit"]
        if ins is None:
            cells += ["-"] * 4
        else:
            cells += [f"{_pct(ins['share'])}% [{_pct(ins['share_ci'][0])}, "
                      f"{_pct(ins['share_ci'][1])}]", f"{_pct(ins['random_share'])}%",
                      "pass" if ins["passes_ratio"] else "fail",
                      "pass" if ins["passes"] else "fail"]
        if held is None:
            cells += ["-"] * 4
        else:
            jac = held.get("selection_jaccard")
            cells += [f"{_pct(held['share'])}% [{_pct(held['share_ci'][0])}, "
                      f"{_pct(held['share_ci'][1])}]",
                      f"{_pct(held['random_share'])}% [{_pct(held['random_share_ci'][0])}, "
                      f"{_pct(held['random_share_ci'][1])}]",
                      "pass" if held["passes"] else "fail",
                      "-" if jac is None else f"{float(jac):.2f}"]
        label = f"{r['k']} {r['kind']}"
        lines.append(f"| {r['concept']} | {label} | " + " | ".join(cells) + " |")
    lines.append("")
    names = {"in_sample": "in-sample, strict", "in_sample_3x": "in-sample, old 3x rule",
             "crossfit": "cross-fitted, strict"}
    lines += ["| procedure and rule | neurons pass | heads pass |", "|---|---|---|"]
    for label in ("in_sample_3x", "in_sample", "crossfit"):
        cells = []
        for kind in KINDS:
            s = summary[label][kind]
            lo, hi = s["wilson95"]
            cells.append(f"{s['passes']}/{s['n']} ({_pct(s['share'])}%; Wilson 95% "
                         f"{_pct(lo)}-{_pct(hi)}%)")
        lines.append(f"| {names[label]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; with --out, write the JSON too."""
    parser = argparse.ArgumentParser(
        description="pass shares of circuits, cross-fitted and in-sample, from circuit files")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--k", type=int, default=50, help="neuron count of the table")
    parser.add_argument("--k-heads", type=int, default=5, help="head count of the table")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    records = rows(args.run_dir, args.k, args.k_heads)
    if not records:
        print(f"no circuit files in {args.run_dir / 'circuits'}; run `amygdala circuits "
              f"{args.run_dir} --all --procedure both` first", file=sys.stderr)
        return 1
    summary = shares(records)
    print(render(records, summary))
    if args.out is not None:
        payload = {"run_dir": str(args.run_dir), "k_neurons": args.k, "k_heads": args.k_heads,
                   "rows": records, "shares": summary,
                   "pass_rule": "strict: 2.5th percentile of the top-k fall > 97.5th "
                                "percentile of the random-k fall; 3x: top fall >= 3 x the "
                                "mean random fall (in-sample only)"}
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps(json_finite(payload), indent=1, allow_nan=False) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
