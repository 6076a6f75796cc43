"""`amygdala report RUN_DIR`: show a run's quality triage, plot it, or compare two runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from amygdala.cli._common import add_device_options

if TYPE_CHECKING:
    from amygdala.diagnose._quality import QualityReport

NAME = "report"
HELP = ("Show the quality triage of a run (its quality.json, computed if missing), "
        "write plots, or compare two runs concept by concept.")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the report options to ``parser``."""
    add_device_options(parser)
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                        help="a run directory written by `amygdala train --out`")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                        help="show, concept by concept, which of two runs is cleaner "
                        "(e.g. a paired and an unpaired run)")
    parser.add_argument("--plot", metavar="DIR",
                        help="write PNGs (cosine heatmap, accuracy by layer, alignments) "
                        "into DIR; needs `pip install 'amygdala[plot]'`")
    parser.add_argument("--recompute", action="store_true",
                        help="recompute quality.json from the run's vectors and the "
                        "activation store (loads the model; captures only what is missing)")
    parser.add_argument("--json", action="store_true", help="print quality.json instead")


def compute_for_run(run_dir: Path, *, device: str = "auto",
                    dtype: str | None = None) -> QualityReport:
    """Recompute a run's quality report from its vectors, corpus and the activation store.

    The model loads on ``device`` in ``dtype`` (default: the run's own dtype).
    """
    from amygdala.diagnose._evaluate import Evaluation
    from amygdala.diagnose._quality import build_quality_report
    from amygdala.vectors._run import RunDir
    from amygdala.vectors._train import capture_corpus

    run = RunDir(run_dir)
    vectors = run.vectors()
    run.record(required=True)  # the config and corpus come from run.json
    found = run.corpus(concepts=vectors.concepts)
    if found.changed:
        print(f"amygdala report: warning: {found.changed}", file=sys.stderr)
    session = run.session(device=device, dtype=dtype)
    data, _ = capture_corpus(session, found.corpus, vectors.layers)
    ev_json = run.evaluation_json()
    evaluation = Evaluation.from_json(ev_json) if ev_json is not None else None
    return build_quality_report(session, vectors, data, found.corpus, evaluation=evaluation)


def load_or_compute(run_dir: Path, *, recompute: bool = False, device: str = "auto",
                    dtype: str | None = None) -> QualityReport:
    """The run's quality.json, computed (and saved) when missing or when asked."""
    from amygdala.diagnose._quality import QualityReport
    from amygdala.vectors._run import RunDir

    if not recompute and RunDir(run_dir).quality.is_file():
        return QualityReport.load(run_dir)
    report = compute_for_run(run_dir, device=device, dtype=dtype)
    report.save(run_dir)
    return report


def run(args: argparse.Namespace) -> int:
    """Print the triage (or the comparison); write plots when asked."""
    from amygdala.diagnose._quality import QualityReport
    from amygdala.diagnose._quality_render import render_comparison

    if args.compare:
        a, b = (Path(p) for p in args.compare)
        ra, rb = QualityReport.load(a), QualityReport.load(b)
        print(render_comparison(ra, rb, str(a), str(b)))
        return 0
    if not args.run_dir:
        print("amygdala report: error: give RUN_DIR, or --compare RUN_A RUN_B",
              file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir)
    report = load_or_compute(run_dir, recompute=args.recompute, device=args.device,
                             dtype=args.dtype)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(report.render())
    if args.plot:
        from amygdala._plots import write_plots
        from amygdala.vectors._run import RunDir

        for path in write_plots(report, args.plot, RunDir(run_dir).evaluation_json()):
            print(f"wrote {path}", file=sys.stderr)
    return 0
