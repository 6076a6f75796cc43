"""Run every ```python block of every page in docs/, page by page, in an empty directory.

The blocks of one page run in order in one namespace, as a reader pasting them into one
Python session would, so a page must define or load every name it uses. Pages are found by
globbing docs/*.md: a new page is covered without touching this file. Blocks that are not
meant to run (shell commands, output, JSON) use other fences (```bash, ```text, ```json...).

Pages listed in `SMOLLM_PAGES` need the real default model and run as ``smollm`` tests in a
directory that holds the shipped corpus (``./paired``, ``./stories``, ``./neutral``) and a
small real run at ``./runs/demo`` (six concepts of the shipped corpus, every layer, method
``paired``: the `small_run` fixture), a smaller stand-in for the
``amygdala train paired --out runs/demo`` run the pages describe. Every other page runs in
the fast suite.
"""

from __future__ import annotations

import re
import shutil
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# Pages whose blocks load the default model (SmolLM2-135M-Instruct).
SMOLLM_PAGES = frozenset({"backends.md", "circuits.md", "evaluation.md", "gpu.md", "index.md",
                          "live.md", "quality.md", "steering.md", "training.md"})
# The chat-client example talks to `amygdala serve runs/demo` at this address; the test
# starts that server on a free port and points the example at it.
SERVER_URL = "http://127.0.0.1:8000"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)")


class Block(NamedTuple):
    """One fenced block of a page: its language tag ('' for none), first line and code."""

    lang: str
    line: int
    code: str


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, dedented (a block may sit inside a list item)."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.name}:{start}: a ``` fence is never closed")
        blocks.append(Block(opening["lang"], start, textwrap.dedent("\n".join(body)) + "\n"))
        i += 1
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [b for b in fenced_blocks(page) if b.lang == "python"]


def _marks(page: Path) -> list[pytest.MarkDecorator]:
    marks = []
    if page.name in SMOLLM_PAGES:
        marks.append(pytest.mark.smollm)
    return marks


RUNNABLE = [pytest.param(p, id=p.name, marks=_marks(p)) for p in PAGES if python_blocks(p)]


def test_the_fence_reader_finds_indented_blocks_and_languages(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n1. item\n\n   ```python\n   y = x\n"
                    "   ```\n\n```bash\namygdala info\n```\n\n```\nout\n```\n")
    assert fenced_blocks(page) == [Block("python", 3, "x = 1\n"), Block("python", 9, "y = x\n"),
                                   Block("bash", 13, "amygdala info\n"), Block("", 17, "out\n")]
    page.write_text("```python\nx = 1\n")
    with pytest.raises(AssertionError, match="never closed"):
        fenced_blocks(page)


def test_every_page_with_code_is_run_and_the_lists_name_real_pages() -> None:
    names = {p.name for p in PAGES}
    assert {"training.md", "quality.md", "circuits.md", "steering.md"} <= {
        p.values[0].name for p in RUNNABLE}
    assert sorted(SMOLLM_PAGES - names) == [], "a page listed in SMOLLM_PAGES no longer exists"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_is_never_in_an_untagged_fence(page: Path) -> None:
    """Python code in a fence without ``python`` would silently escape the run below."""
    for block in fenced_blocks(page):
        if block.lang == "python":
            continue
        for line in block.code.splitlines():
            assert not re.match(r"(import \w|from [\w.]+ import )", line), (
                f"{page.name}:{block.line}: Python code in a ```{block.lang} fence; expected "
                "```python so that tests/test_docs.py runs it")


@pytest.fixture
def docs_dir(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory; for smollm pages, with ./paired and ./runs/demo in it.

    Global registries a page may extend (`register_backend`, `register_architecture`) are
    restored afterwards, so a page cannot change what later tests see.
    """
    from amygdala.backends import BACKENDS, _architectures

    page: Path = request.node.callspec.params["page"]
    work = tmp_path / "work"
    work.mkdir()
    if page.name in SMOLLM_PAGES:
        small_run = request.getfixturevalue("small_run")
        for folder in ("paired", "stories", "neutral"):
            (work / folder).symlink_to(ROOT / folder, target_is_directory=True)
        shutil.copytree(small_run.run_dir, work / "runs" / "demo")
        monkeypatch.setenv("AMYGDALA_CACHE", str(request.getfixturevalue("docs_cache")))
    monkeypatch.chdir(work)
    # register_architecture writes the user maps, a private dict: replaced for the page.
    monkeypatch.setattr(_architectures, "_USER", dict(_architectures._USER))
    backends = dict(BACKENDS)
    try:
        yield work
    finally:
        BACKENDS.clear()
        BACKENDS.update(backends)


@pytest.fixture(scope="session")
def docs_cache(tmp_path_factory: pytest.TempPathFactory, small_run: Any) -> Path:
    """A cache directory for the pages: the user's models, `small_run`'s activation store.

    The pages open sessions with the default store, ``cache_dir()/activations``. Pointing
    it at the store `small_run` was captured into keeps the pages' captures out of the
    user's cache and makes the texts of that run warm, while the de-quantised default
    model is reused rather than converted again.
    """
    from amygdala.backends._loading import cache_dir

    root = tmp_path_factory.mktemp("docs-cache")
    (root / "models").symlink_to(cache_dir() / "models", target_is_directory=True)
    store_root = small_run.session.store.path.parents[1]  # ROOT/<fingerprint>/<pooling>
    (root / "activations").symlink_to(store_root, target_is_directory=True)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """``amygdala serve runs/demo`` in a background thread, on a free loopback port."""

    def __init__(self, run_dir: Path) -> None:
        import uvicorn

        from amygdala.intervene import Monitor
        from amygdala.serve import ServeConfig, create_app

        self.port = _free_port()
        config = ServeConfig(port=self.port, model_name=run_dir.name)
        app = create_app(Monitor.from_run(run_dir), config)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the docs' chat server did not start within 60 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.mark.parametrize("page", RUNNABLE)
def test_page_runs(page: Path, docs_dir: Path) -> None:
    blocks = python_blocks(page)
    namespace: dict[str, Any] = {"__name__": f"docs.{page.stem}"}
    server: _Server | None = None
    try:
        for block in blocks:
            code = block.code
            if SERVER_URL in code:
                server = server or _Server(docs_dir / "runs" / "demo").__enter__()
                code = code.replace(SERVER_URL, f"http://127.0.0.1:{server.port}")
            # Padding keeps the line numbers of a traceback those of the page.
            source = "\n" * (block.line) + code
            exec(compile(source, f"docs/{page.name}", "exec"), namespace)
    finally:
        if server is not None:
            server.__exit__()


def test_architecture_page_names_every_package_of_the_tree() -> None:
    """docs/architecture.md's table of packages stays true to src/amygdala."""
    src = ROOT / "src" / "amygdala"
    tree = {f"amygdala.{p.stem}" for p in src.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists())
            or (p.suffix == ".py" and p.name != "__init__.py")}
    table = set(re.findall(r"^\| `(amygdala[\w.]*)` \|", (DOCS / "architecture.md").read_text(
        encoding="utf-8"), flags=re.MULTILINE))
    assert sorted(tree - table) == [], "add a line for each to the table of docs/architecture.md"
    assert sorted(table - tree) == [], "the table of docs/architecture.md names a gone module"
