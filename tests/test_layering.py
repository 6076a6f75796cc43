"""No module reaches into another package's private names (issue 10: layering).

The stage packages (corpus, backends, store, vectors, diagnose, intervene, serve, cli) and
the top-level modules (``amygdala._io``, ``_types``, ``_codec``, ...) each own their
underscored names. Across packages a module may import a private *module* and use its public
names (``from amygdala.vectors._extract import extract``), but never:

- import an underscored name: ``from amygdala.backends._hooked import _forward``;
- read an underscored attribute of something imported from another package:
  ``_extract._unit(v)``;
- read an underscored attribute, on any object, that its own package never defines
  (``backend._hooks``): such a name is another package's private member.

``ALLOWED`` lists the exceptions, each with its reason; it is empty.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "amygdala"

# "path:line: text" of a finding -> why it is allowed. Keep it empty if you can.
ALLOWED: dict[str, str] = {}


@attrs.frozen(kw_only=True)
class Finding:
    path: str
    line: int
    text: str

    def key(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(root: Path, file: Path) -> str:
    parts = list(file.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(root: Path, dotted: str) -> str:
    """The stage package of a dotted ``amygdala...`` name; a top-level module is its own."""
    parts = dotted.split(".")
    if len(parts) < 2:
        return parts[0]
    return parts[1] if (root / parts[1]).is_dir() else ".".join(parts[:2])


def _is_module(root: Path, dotted: str) -> bool:
    path = root.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _resolve(module: str, is_init: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_init:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _defined_names(tree: ast.AST) -> Iterator[str]:
    """Every name a module defines or assigns (functions, classes, attributes, keywords)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.arg  # argparse's set_defaults(_run=...), attrs.evolve(x, _f=...)


def find_violations(root: Path) -> list[Finding]:
    """Every cross-package use of a private name under the package directory ``root``."""
    files = sorted(root.rglob("*.py"))
    trees = {f: ast.parse(f.read_text(), filename=str(f)) for f in files}
    defined: dict[str, set[str]] = defaultdict(set)
    for file, tree in trees.items():
        package = _package(root, _module_name(root, file))
        for name in _defined_names(tree):
            defined[name].add(package)
    found: list[Finding] = []
    for file, tree in trees.items():
        module = _module_name(root, file)
        package = _package(root, module)
        rel = file.relative_to(root.parent).as_posix()
        imported: dict[str, str] = {}  # local name -> dotted target
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(module, file.name == "__init__.py", node)
                if source.split(".")[0] != root.name:
                    continue
                for alias in node.names:
                    target = f"{source}.{alias.name}"
                    imported[alias.asname or alias.name] = target
                    if (_private(alias.name) and _package(root, source) != package
                            and not _is_module(root, target)):
                        found.append(Finding(path=rel, line=node.lineno,
                                             text=f"from {source} import {alias.name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == root.name:
                        if alias.asname:
                            imported[alias.asname] = alias.name
                        else:
                            imported[root.name] = root.name
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Name) and base.id in imported:
                target = imported[base.id]
                if _package(root, target) != package:
                    found.append(Finding(path=rel, line=node.lineno,
                                         text=f"{base.id}.{node.attr} ({target})"))
                    continue
            if package not in defined[node.attr]:
                owners = ", ".join(sorted(defined[node.attr])) or "nowhere"
                found.append(Finding(path=rel, line=node.lineno,
                                     text=f".{node.attr} (defined in {owners})"))
    return found


def test_no_module_reaches_into_another_packages_private_names() -> None:
    found = [f for f in find_violations(SRC) if f.key() not in ALLOWED]
    assert not found, (
        "modules use another package's private names; expected only public names across "
        "packages. Make the name public in its owning module (or add a public accessor), or "
        "add it to ALLOWED in tests/test_layering.py with a reason:\n"
        + "\n".join(f"  {f.key()}" for f in found))


def test_allowed_exceptions_are_still_needed() -> None:
    keys = {f.key() for f in find_violations(SRC)}
    stale = sorted(set(ALLOWED) - keys)
    assert not stale, f"ALLOWED lists exceptions that no longer occur; remove them: {stale}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "amygdala"


@pytest.mark.parametrize(("code", "expected"), [
    ("from amygdala.b._m import _helper\n", "from amygdala.b._m import _helper"),
    ("from ..b._m import _helper\n", "from amygdala.b._m import _helper"),
    ("from amygdala.b import _m\n_m._helper()\n", "_m._helper (amygdala.b._m)"),
    ("import amygdala.b._m as m\nm._helper()\n", "m._helper (amygdala.b._m)"),
    ("from amygdala._io import _tmp\n", "from amygdala._io import _tmp"),
    ("def f(backend):\n    return backend._hooks\n", "._hooks (defined in b)"),
])
def test_checker_finds_each_kind_of_reach(tmp_path: Path, code: str, expected: str) -> None:
    root = _write(tmp_path, {
        "amygdala/__init__.py": "",
        "amygdala/_io.py": "def _tmp(): ...\n",
        "amygdala/a/__init__.py": "",
        "amygdala/a/_user.py": code,
        "amygdala/b/__init__.py": "",
        "amygdala/b/_m.py": ("def _helper(): ...\ndef public(): ...\n"
                             "class B:\n    def __init__(self):\n        self._hooks = []\n"),
    })
    assert [f.text for f in find_violations(root)] == [expected]


def test_checker_allows_public_names_and_own_privates(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "amygdala/__init__.py": "",
        "amygdala/a/__init__.py": "",
        "amygdala/a/_own.py": "def _mine(): ...\n",
        "amygdala/a/_user.py": ("from amygdala.a._own import _mine\nfrom amygdala.b import _m\n"
                                "from amygdala.b._m import public\n_m.public()\n"
                                "class C:\n    def f(self):\n        return self._x\n"),
        "amygdala/b/__init__.py": "",
        "amygdala/b/_m.py": "def public(): ...\n",
    })
    assert find_violations(root) == []
