"""The one atomic writer (`amygdala._io`): whole files or none, readable by others."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from amygdala._io import write_atomic, write_atomic_with, write_json


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.bin"
    assert write_atomic(target, b"one") == target
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})

    def half(tmp: Path) -> None:
        tmp.write_text('{"x": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic_with(target, half)
    assert json.loads(target.read_text()) == {"x": 1}
    assert target.read_text().endswith("\n")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
