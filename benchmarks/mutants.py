"""Mutation testing of the core modules with mutmut 3: killed share per module.

Run through ``nox -s mutants`` (which installs mutmut). Per core module:

1. A work directory ``mutants/<module>/`` gets a snapshot of the committed tree
   (``git archive`` of ``--commit``, default HEAD: edits in progress elsewhere in the
   checkout do not leak in) and a ``pyproject.toml`` whose ``[tool.mutmut]`` mutates
   that one file against that module's own fast test files (``TESTS`` below, with
   ``-m "not smollm"``; the conformance suite's other architectures, ``torch-<arch>``
   ids, are left out).
2. ``mutmut run`` with a pattern that matches no mutant writes every mutant of the
   file and runs the module's tests once to learn which tests reach which function.
3. A fixed-seed random sample of its mutants (``--sample``; 0 = all) is run: each
   mutant runs only the tests that reach its function, ``-x``, in a forked child;
   mutmut stops a child that runs past its timeout (counted as killed: the mutant
   made the tests hang). The whole module stops after ``--module-timeout`` seconds.
4. The exit code of every sampled mutant is read back from mutmut's ``.meta`` file;
   ``benchmarks/results/mutants.json`` gets, per module, the killed share with a 95%
   Wilson interval (a sample, not a census) and each survivor with its diff and, where
   ``benchmarks/mutants_equivalent.json`` lists it, why it is equivalent (no test can
   kill it). The share without the equivalent survivors is reported beside the raw one.

``mutmut show NAME`` run in ``mutants/<module>/`` prints a mutant's diff.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutants.json"
EQUIVALENT = ROOT / "benchmarks" / "mutants_equivalent.json"
WORK = ROOT / "mutants"  # git-ignored

# module label -> source file.
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
# module label -> the fast test files that exercise it (each file runs in seconds on the
# tiny models; the slow and real-model files stay out of the mutation runs).
TESTS = {
    "store": ("tests/test_store.py", "tests/test_gaps_store.py"),
    "vectors._extract": ("tests/test_extract.py", "tests/test_gaps_vectors.py"),
    "vectors._set": ("tests/test_gaps_vectors.py", "tests/test_extract.py", "tests/test_gguf.py"),
    "backends._hooked": ("tests/test_gaps_backends.py", "tests/test_gaps_hooks.py",
                         "tests/test_steer.py", "tests/test_gaps_store.py"),
    "backends.torch_hooks": ("tests/test_gaps_backends.py", "tests/test_gaps_hooks.py",
                             "tests/test_architectures.py"),
    "intervene._steer": ("tests/test_steer.py", "tests/test_gaps_steer.py"),
    "intervene._readout": ("tests/test_readout.py", "tests/test_gaps_steer.py"),
    "corpus._model": ("tests/test_corpus.py", "tests/test_model.py", "tests/test_readers.py",
                      "tests/test_gaps_corpus.py", "tests/test_gaps_vectors.py"),
}
PYTEST_FILTER = ("-m", "not smollm", "-k", "not torch-")
# Tracked paths the snapshot holds besides src/ and tests/ (corpora and docs some tests read).
DATA = ("paired", "stories", "neutral", "docs", "examples", "README.md", "mkdocs.yml")

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


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare(module: str, commit: str) -> Path:
    """A fresh work directory for ``module``: the committed tree and its own mutmut config."""
    work = WORK / module
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tracked = [p for p in ("src", "tests", *DATA) if (ROOT / p).exists()]
    archive = subprocess.run(["git", "archive", "--format=tar", commit, *tracked], cwd=ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")
    # The project's pyproject.toml (pytest settings, markers) with this module's mutmut table.
    text = (ROOT / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[)", "", text)
    also_copy = [p for p in DATA if (work / p).exists()]
    text += "\n".join([
        "",
        "[tool.mutmut]",
        "# Written by benchmarks/mutants.py for this one module.",
        'source_paths = ["src"]',
        f"only_mutate = {_toml_list([CORE[module]])}",
        f"also_copy = {_toml_list(also_copy)}",
        f"pytest_add_cli_args_test_selection = {_toml_list(TESTS[module] + PYTEST_FILTER)}",
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]',
        "",
    ])
    (work / "pyproject.toml").write_text(text)
    return work


def mutmut(work: Path, *args: str, timeout: float | None = None) -> int:
    """Run mutmut in ``work``; return its exit status (124 on timeout)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    try:
        return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=work, env=env,
                              timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        return 124


# mutmut 3.8.1's generation step (the start of `mutmut run`): copy the tree into
# mutants/, write every mutant and the .meta file listing their names.
_GENERATE = """
import os
import mutmut.__main__ as m
m.set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
m.copy_src_dir()
m.copy_also_copy_files()
m.setup_source_paths()
m.create_mutants(1)
"""


def exit_codes(work: Path, source: str) -> dict[str, int | None]:
    """Mutant name -> mutmut exit code (None: not run) from ``mutants/<source>.meta``."""
    meta = work / "mutants" / f"{source}.meta"
    if not meta.is_file():
        return {}
    data: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return data


def diff_of(work: Path, name: str) -> list[str]:
    """The changed lines of a mutant (``mutmut show``), without the file headers."""
    env = {**os.environ, "NO_COLOR": "1"}
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, env=env,
                         capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def run_module(module: str, args: argparse.Namespace, equivalent: dict[str, str]
               ) -> dict[str, object]:
    work = prepare(module, args.commit)
    source = CORE[module]
    began = time.monotonic()
    load_before = os.getloadavg()
    # Generation only (mutmut's own first step, without its test runs): the names to draw
    # from. `mutmut run` below finds the mutants in place and keeps them.
    subprocess.run([sys.executable, "-c", _GENERATE], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    names = sorted(exit_codes(work, source))
    if not names:
        raise SystemExit(f"{module}: mutmut wrote no mutants; run `mutmut run` in {work}")
    chosen = sorted(random.Random(f"{args.seed}:{module}").sample(
        names, min(args.sample, len(names)))) if args.sample else names
    left = max(1.0, args.module_timeout - (time.monotonic() - began))
    status = mutmut(work, "run", "--max-children", str(args.max_children), *chosen,
                    timeout=left)
    codes = exit_codes(work, source)
    done = {n: codes[n] for n in chosen if codes.get(n) is not None}
    killed = sorted(n for n, c in done.items() if c in KILLED)
    survived = sorted(n for n, c in done.items() if c in SURVIVED)
    no_tests = sorted(n for n, c in done.items() if c in NO_TESTS)
    other = sorted(n for n, c in done.items() if c not in KILLED | SURVIVED | NO_TESTS)
    unexplained = [n for n in survived + no_tests if n not in equivalent]
    n_equivalent = len(survived) + len(no_tests) - len(unexplained)
    share = len(killed) / len(done) if done else 0.0
    effective = len(done) - n_equivalent
    share_eq = len(killed) / effective if effective else 0.0
    print(f"{module:22s} {len(killed):3d}/{len(done):3d} killed ({share:.0%}), "
          f"{len(survived)} survived, {len(no_tests)} without tests, {n_equivalent} of them "
          f"equivalent [{len(names)} mutants in all, {time.monotonic() - began:.0f} s]",
          flush=True)
    return {
        "source": source, "tests": list(TESTS[module]), "mutants": len(names),
        "sampled": len(chosen), "ran": len(done), "killed": len(killed),
        "timed_out": sorted(n for n in killed if done[n] in {-24, 24, 36, 37, 152}),
        "survived": {n: {"diff": diff_of(work, n), "equivalent": equivalent.get(n)}
                     for n in survived},
        "no_tests": {n: {"diff": diff_of(work, n), "equivalent": equivalent.get(n)}
                     for n in no_tests},
        "other": {n: done[n] for n in other},
        "killed_share": round(share, 3), "interval_95": wilson(len(killed), len(done)),
        "equivalent": n_equivalent,
        "killed_share_without_equivalent": round(share_eq, 3),
        "interval_95_without_equivalent": wilson(len(killed), effective),
        "seconds": round(time.monotonic() - began, 1), "mutmut_status": status,
        "sample": args.sample, "seed": args.seed, "max_children": args.max_children,
        # 1-minute load average as the module started and ended (the machine is shared).
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default=",".join(CORE),
                        help=f"comma-separated, from {', '.join(CORE)}")
    parser.add_argument("--sample", type=int, default=25,
                        help="mutants per module, drawn with --seed (0: every mutant)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-children", type=int, default=1,
                        help="mutants run in parallel (default 1: this machine has 2 cores)")
    parser.add_argument("--module-timeout", type=float, default=900,
                        help="seconds allowed per module (default 900); what ran is kept")
    parser.add_argument("--commit", default="HEAD",
                        help="the committed tree to mutate and test (default HEAD)")
    parser.add_argument("--label", default="after", help="key of this run in the JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = [m for m in modules if m not in CORE]
    if unknown:
        parser.error(f"unknown modules {unknown}; expected some of {', '.join(CORE)}")
    args.commit = subprocess.run(["git", "rev-parse", args.commit], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
    equivalent: dict[str, str] = (json.loads(EQUIVALENT.read_text())
                                  if EQUIVALENT.is_file() else {})

    start = time.monotonic()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    entry = results.get(args.label) or {}
    report: dict[str, object] = dict(entry.get("modules", {}))  # other modules' runs stay
    command = "nox -s mutants -- " + " ".join(argv if argv is not None else sys.argv[1:])
    for module in modules:
        report[module] = {**run_module(module, args, equivalent), "commit": args.commit,
                          "command": command}
        results[args.label] = {
            # The latest command; each module keeps the command, sample and commit of its run.
            "command": command,
            "tool": "mutmut " + _version("mutmut"), "sample_per_module": args.sample,
            "seed": args.seed, "max_children": args.max_children,
            "module_timeout": args.module_timeout,
            "tests": "per module, benchmarks/mutants.py TESTS, with " + " ".join(
                PYTEST_FILTER),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "seconds": round(time.monotonic() - start, 1), "modules": report,
        }
        # Written after every module, so a stopped run keeps what it measured.
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
