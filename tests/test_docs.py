"""Run the code blocks of the tutorial pages, in order, in an empty directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


@pytest.mark.smollm
@pytest.mark.usefixtures("smollm_factory")
def test_training_tutorial_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    blocks = python_blocks(DOCS / "training.md")
    assert len(blocks) >= 5
    for block in blocks:
        exec(compile(block, "docs/training.md", "exec"), namespace)
