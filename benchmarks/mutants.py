"""Mutation testing of the core modules with mutmut 3: killed share per module.

Run through ``nox -s mutants`` (which installs mutmut). Steps:

1. ``mutmut run`` with a pattern that matches no mutant: mutmut copies ``src/`` and the
   tests into ``mutants/``, writes every mutant of the modules listed under
   ``[tool.mutmut] only_mutate`` in pyproject.toml, and runs the test selection once
   to learn which tests reach which function (it then stops: nothing matched).
2. Per module, a fixed-seed random sample of its mutants (``--sample``; 0 = all) is run:
   each mutant runs only the tests that reach its function, ``-x``, in a forked child.
3. The exit code of every sampled mutant is read back from mutmut's ``.meta`` files and
   ``benchmarks/results/mutants.json`` gets, per module, the killed share with a 95%
   Wilson interval (a sample, not a census) and the surviving mutants' names.

A mutant counts as killed when a test fails (or times out); "no tests" and survivors
count against the module. ``mutmut show NAME`` (run in this directory) prints a mutant's
diff.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutants.json"

# module label -> source file (must also be listed in [tool.mutmut] only_mutate).
CORE = {
    "store": "src/amygdala/store/_store.py",
    "vectors._extract": "src/amygdala/vectors/_extract.py",
    "vectors._set": "src/amygdala/vectors/_set.py",
    "backends._hooked": "src/amygdala/backends/_hooked.py",
    "backends.torch_hooks": "src/amygdala/backends/torch_hooks.py",
    "intervene._steer": "src/amygdala/intervene/_steer.py",
    "intervene._readout": "src/amygdala/intervene/_readout.py",
    "corpus._model": "src/amygdala/corpus/_model.py",
}
KILLED = {1, 3, 36, 37, 24, -24, 152, 255}  # test failure, pytest error, timeouts, type check
SURVIVED = {0}
NO_TESTS = {5, 33}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3))


def mutmut(*args: str, timeout: float | None = None) -> int:
    """Run mutmut from this directory; return its exit status (124 on timeout)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    try:
        return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=ROOT, env=env,
                              timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        return 124


def exit_codes(source: str) -> dict[str, int | None]:
    """Mutant name -> mutmut exit code (None: not run) from ``mutants/<source>.meta``."""
    meta = ROOT / "mutants" / f"{source}.meta"
    if not meta.is_file():
        return {}
    data: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default=",".join(CORE),
                        help=f"comma-separated, from {', '.join(CORE)}")
    parser.add_argument("--sample", type=int, default=25,
                        help="mutants per module, drawn with --seed (0: every mutant)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-children", type=int, default=1,
                        help="mutants run in parallel (default 1: this machine has 2 cores)")
    parser.add_argument("--module-timeout", type=float, default=1800,
                        help="seconds allowed per module (default 1800); what ran is kept")
    parser.add_argument("--keep", action="store_true",
                        help="reuse an existing mutants/ directory instead of starting fresh")
    parser.add_argument("--label", default="after", help="key of this run in the JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = [m for m in modules if m not in CORE]
    if unknown:
        parser.error(f"unknown modules {unknown}; expected some of {', '.join(CORE)}")

    if not args.keep:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    start = time.monotonic()
    # Generation and the test-to-function map; the no-match pattern then stops mutmut.
    mutmut("run", "--max-children", str(args.max_children), "__generate_only__*")
    missing = [m for m in modules if not exit_codes(CORE[m])]
    if missing:
        print(f"mutmut wrote no mutants for {missing}; see its output above", file=sys.stderr)
        return 1

    report: dict[str, object] = {}
    for module in modules:
        names = sorted(exit_codes(CORE[module]))
        chosen = sorted(random.Random(f"{args.seed}:{module}").sample(
            names, min(args.sample, len(names)))) if args.sample else names
        began = time.monotonic()
        status = mutmut("run", "--max-children", str(args.max_children), *chosen,
                        timeout=args.module_timeout)
        codes = exit_codes(CORE[module])
        done = {n: codes[n] for n in chosen if codes.get(n) is not None}
        killed = sorted(n for n, c in done.items() if c in KILLED)
        survived = sorted(n for n, c in done.items() if c in SURVIVED)
        no_tests = sorted(n for n, c in done.items() if c in NO_TESTS)
        other = sorted(n for n, c in done.items()
                       if c not in KILLED | SURVIVED | NO_TESTS)
        share = len(killed) / len(done) if done else 0.0
        report[module] = {
            "source": CORE[module], "mutants": len(names), "sampled": len(chosen),
            "ran": len(done), "killed": len(killed), "survived": survived,
            "no_tests": no_tests, "other": {n: done[n] for n in other},
            "killed_share": round(share, 3), "interval_95": wilson(len(killed), len(done)),
            "seconds": round(time.monotonic() - began, 1), "mutmut_status": status,
        }
        print(f"{module:22s} {len(killed):3d}/{len(done):3d} killed ({share:.0%}), "
              f"{len(survived)} survived, {len(no_tests)} without tests "
              f"[{len(names)} mutants in all]", flush=True)

    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[args.label] = {
        "command": "nox -s mutants -- " + " ".join(argv if argv is not None else sys.argv[1:]),
        "tool": "mutmut " + _version("mutmut"), "sample_per_module": args.sample,
        "seed": args.seed, "max_children": args.max_children,
        "tests": "[tool.mutmut] pytest_add_cli_args_test_selection in pyproject.toml",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds": round(time.monotonic() - start, 1), "modules": report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
