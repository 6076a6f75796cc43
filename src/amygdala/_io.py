"""Files: one atomic writer, one JSON reader and writer, one figure writer.

Every file amygdala writes appears whole or not at all: the bytes go to a temporary file
in the target's directory, are flushed and fsync'ed, and the temporary file is renamed
over the target (``os.replace``, atomic on POSIX and Windows). A killed process leaves
the old file or the new one, never half of either; the temporary file is removed on
every error. Figures are matplotlib ``Figure`` objects without pyplot (no global state, no
GUI backend to select), written as PNG through the same writer. Turning value classes into
JSON is `amygdala._codec`'s job; this module only moves the bytes.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amygdala.errors import AmygdalaError, MissingDependencyError

__all__ = ["colormap", "figure", "json_finite", "read_json", "write_atomic", "write_atomic_with",
           "write_figure", "write_json"]

# mkstemp creates files readable by their owner only; outputs are meant to be shared.
_FILE_MODE = 0o644


def write_atomic_with(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Let ``write(tmp)`` write a temporary file, then fsync it and rename it to ``path``.

    For writers that need a file name (a GGUF writer, ``savefig``) rather than bytes.

    Args:
        path: the target file; its directory is created.
        write: called with the temporary file's path; must leave the whole file there.

    Returns:
        ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_atomic(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); return ``path``."""
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return write_atomic_with(path, write)


def write_json(path: Path | str, data: Any, *, indent: int | None = 2,
               compact: bool = False) -> Path:
    """Write ``data`` as JSON with a final newline, atomically; return ``path``.

    Args:
        path: the target file.
        data: JSON-ready data (`amygdala._codec.to_data` makes it from value classes).
        indent: spaces per level; ``None`` for one line.
        compact: one line without spaces after separators (overrides ``indent``).
    """
    text = (json.dumps(data, separators=(",", ":")) if compact
            else json.dumps(data, indent=indent))
    return write_atomic(path, (text + "\n").encode())


def json_finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None, so it is valid JSON.

    >>> json_finite({"a": [1.0, float("nan")], "b": (float("inf"),)})
    {'a': [1.0, None], 'b': [None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_finite(v) for v in value]
    return value


def read_json(path: Path | str, *, error: type[AmygdalaError], hint: str) -> Any:
    """The parsed JSON of ``path``.

    Raises:
        AmygdalaError: the given ``error`` type when the file is missing, unreadable or not
            JSON; the message ends with ``hint`` (how to create the file).
    """
    source = Path(path)
    try:
        return json.loads(source.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"cannot read {source}: {exc}; {hint}") from exc


def figure(**kwargs: Any) -> Any:
    """A matplotlib ``Figure`` (no pyplot state, no GUI backend).

    Raises:
        MissingDependencyError: matplotlib is not installed (the message says how to add it).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "plots need matplotlib: pip install 'amygdala[plot]' (or pip install matplotlib)"
        ) from exc
    return Figure(**kwargs)


def colormap(name: str) -> Any:
    """A copy of matplotlib's colour map ``name`` (safe to modify, e.g. ``set_bad``).

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    try:
        from matplotlib import colormaps
    except ImportError as exc:
        raise MissingDependencyError(
            "plots need matplotlib: pip install 'amygdala[plot]' (or pip install matplotlib)"
        ) from exc
    return colormaps[name].copy()


def write_figure(fig: Any, path: Path | str, *, dpi: int = 110,
                 tight: bool = True) -> Path:
    """Render ``fig`` as PNG and write it atomically; return ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return write_atomic(path, buffer.getvalue())
