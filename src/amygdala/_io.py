"""Writing files: one atomic writer, one JSON writer, one figure writer.

Every file amygdala writes appears whole or not at all: the bytes go to a temporary file
in the target's directory, are flushed and fsync'ed, and the temporary file is renamed
over the target (``os.replace``, atomic on POSIX and Windows). A killed process leaves
the old file or the new one, never half of either; the temporary file is removed on
every error.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amygdala.errors import MissingDependencyError

__all__ = ["figure", "write_atomic", "write_atomic_with", "write_figure", "write_json"]

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


def write_json(path: Path | str, data: Any, *, indent: int = 2) -> Path:
    """Write ``data`` as indented JSON with a final newline, atomically; return ``path``."""
    return write_atomic(path, (json.dumps(data, indent=indent) + "\n").encode())


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


def write_figure(fig: Any, path: Path | str, *, dpi: int = 110,
                 tight: bool = True) -> Path:
    """Render ``fig`` as PNG and write it atomically; return ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return write_atomic(path, buffer.getvalue())
