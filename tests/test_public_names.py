"""README.md, docs/ and examples/ use only amygdala's public names.

A public name is one in the ``__all__`` of `amygdala` or of one of its public (not
underscored) modules, or a public module itself; attributes of a public class or function
are not checked further. The code (examples/*.py and the ```python blocks of the pages) is
read with `ast`: imports, and attribute chains on a name bound to an amygdala module. The
prose is searched for dotted paths with a private part (``amygdala.x._y``), except on the
architecture page, whose job is to describe the private modules.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.test_docs import fenced_blocks

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# Pages that document the private layout on purpose (prose only; their code is checked).
INTERNALS_PAGES = frozenset({"architecture.md"})
_PRIVATE_PATH = re.compile(r"\bamygdala(?:\.[A-Za-z]\w*)*\._\w+")


def problem(dotted: str) -> str | None:
    """Why ``dotted`` (``amygdala.x.y``) is not a public name of amygdala, or None."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        here = ".".join(parts[:i])
        if part.startswith("_"):
            return f"{here}: a private name"
        if not isinstance(obj, ModuleType):
            return None  # a member of a public class or function
        if part in getattr(obj, "__all__", ()):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(here)  # a public module need not be in __all__
        except ModuleNotFoundError:
            return f"{here}: not in {obj.__name__}.__all__"
    return None


def names_used(code: str) -> set[str]:
    """Every dotted amygdala name ``code`` imports or reads through an imported module."""
    tree = ast.parse(code)
    bound: dict[str, str] = {}
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "amygdala":
                    used.add(alias.name)
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound["amygdala"] = "amygdala"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "amygdala":
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                used.add(name)
                bound[alias.asname or alias.name] = name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            inner: ast.expr = node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in bound:
                used.add(".".join([bound[inner.id], *reversed(chain)]))
    return used


def _code(path: Path) -> list[tuple[str, str]]:
    """(where, code) of every piece of Python in ``path``."""
    if path.suffix == ".py":
        return [(path.name, path.read_text(encoding="utf-8"))]
    return [(f"{path.name}:{b.line}", b.code) for b in fenced_blocks(path) if b.lang == "python"]


def test_the_checks_catch_private_and_unlisted_names() -> None:
    code = ("import amygdala\nfrom amygdala.vectors._set import SteeringVectorSet\n"
            "from amygdala.store import ActivationStore, _helper\nimport amygdala.corpus as c\n"
            "amygdala.Corpus.load('x')\namygdala._io.write_json\nc.not_a_name\n")
    found = {n: problem(n) for n in names_used(code)}
    assert found["amygdala.Corpus.load"] is None
    assert found["amygdala.store.ActivationStore"] is None
    assert found["amygdala.vectors._set.SteeringVectorSet"] == (
        "amygdala.vectors._set: a private name")
    assert found["amygdala.store._helper"] == "amygdala.store._helper: a private name"
    assert found["amygdala._io.write_json"] == "amygdala._io: a private name"
    assert found["amygdala.corpus.not_a_name"] == (
        "amygdala.corpus.not_a_name: not in amygdala.corpus.__all__")
    assert problem("amygdala.testing.check_backend") is None
    assert problem("amygdala.backends.torch_hooks.TorchHooksBackend") is None
    assert _PRIVATE_PATH.findall("see `amygdala.vectors._bundle.relative` and amygdala.json") == [
        "amygdala.vectors._bundle"]


@pytest.mark.parametrize("path", PAGES + EXAMPLES, ids=lambda p: p.name)
def test_code_uses_only_public_names(path: Path) -> None:
    problems = [f"{where}: {why}" for where, code in _code(path)
                for name in sorted(names_used(code)) if (why := problem(name))]
    assert problems == [], (
        "use the public names (amygdala.__all__ or a stage package's __all__); "
        "export a name there if readers need it:\n" + "\n".join(problems))


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in INTERNALS_PAGES],
                         ids=lambda p: p.name)
def test_prose_names_no_private_module(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    found = [f"{page.name}:{text[:m.start()].count(chr(10)) + 1}: {m.group()}"
             for m in _PRIVATE_PATH.finditer(text)]
    assert found == [], ("name the public path (e.g. amygdala.vectors.extract, not "
                         "amygdala.vectors._extract.extract):\n" + "\n".join(found))
