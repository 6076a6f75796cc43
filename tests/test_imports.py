"""The package's import structure: no module-level import cycle, no new function-level
(lazy) one, a light ``import amygdala`` and a sorted, complete ``__all__`` in every stage
package."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("amygdala", "amygdala.corpus", "amygdala.backends", "amygdala.store",
            "amygdala.vectors", "amygdala.diagnose", "amygdala.intervene")


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in (SRC / "amygdala").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _runtime_imports(tree: ast.Module, *, lazy: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module loads (not those under ``if TYPE_CHECKING``);
    with ``lazy``, also those inside functions and methods, which run when called."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        nodes = ast.walk(node) if lazy or isinstance(node, ast.If | ast.Try) else [node]
        found += [n for n in nodes if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def import_graph(*, lazy: bool = False) -> dict[str, set[str]]:
    """``{module: the amygdala modules it imports at module level}`` (with ``lazy``, also
    inside functions)."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        targets = set()
        for node in _runtime_imports(ast.parse(path.read_text()), lazy=lazy):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in modules}
                continue
            base = node.module or ""
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:
                    targets.add(full)
                elif base in modules:
                    targets.add(base)
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycle() -> None:
    graph = import_graph()
    assert "amygdala.vectors._run" in graph and "amygdala.vectors._set" in graph[
        "amygdala.vectors._run"]
    assert cycles(graph) == []


def test_the_lazy_graph_sees_imports_inside_functions() -> None:
    lazy, eager = import_graph(lazy=True), import_graph()
    # Corpus.lint imports the linter inside the method: only the lazy graph has the edge.
    assert "amygdala.corpus._lint" in lazy["amygdala.corpus._model"]
    assert "amygdala.corpus._lint" not in eager["amygdala.corpus._model"]


def test_no_function_level_import_cycle() -> None:
    # The exporters take a SteeringVectorSet (vectors._gguf, vectors._interop); the set
    # itself imports neither, so even imports inside functions point one way.
    lazy = import_graph(lazy=True)
    assert "amygdala.vectors._set" in lazy["amygdala.vectors._gguf"]
    assert cycles(lazy) == [], "import cycle through a function-level import; break it"


def test_corpus_loading_does_not_import_the_linter() -> None:
    # The reader, not the linter, turns a directory into texts (issue 10).
    assert "amygdala.corpus._lint" not in import_graph(lazy=True)["amygdala.corpus._reader"]
    source = (SRC / "amygdala" / "corpus" / "_model.py").read_text()
    loaders = [n for n in ast.walk(ast.parse(source))
               if isinstance(n, ast.FunctionDef) and n.name in {"load", "from_stories"}]
    assert loaders
    for fn in loaders:
        imported = {i.module for i in ast.walk(fn) if isinstance(i, ast.ImportFrom)}
        assert "amygdala.corpus._lint" not in imported, fn.name


def test_import_amygdala_loads_neither_transformers_nor_matplotlib() -> None:
    code = ("import sys, amygdala; "
            "print(sorted(m for m in ('transformers', 'matplotlib', 'transformer_lens') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def _isort_key(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert exported == sorted(set(exported), key=_isort_key), f"{name}.__all__ is not sorted"
    assert [n for n in exported if not hasattr(package, n)] == []
    # Submodules become attributes whenever anything imports them, so only the names the
    # package itself binds count; the stage packages are checked on their own.
    public = {n for n, v in vars(package).items()
              if not n.startswith("_") and n != "annotations" and not inspect.ismodule(v)}
    assert sorted(public - set(exported)) == [], f"{name} defines names missing from __all__"
    if name == "amygdala":
        stages = {p.rpartition(".")[2] for p in PACKAGES[1:]} | {"errors", "pipeline"}
        assert stages <= set(exported)
