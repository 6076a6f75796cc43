"""ActivationStore: content addressing, reuse, resume after SIGKILL, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import amygdala
from amygdala._types import Pooling, Site
from amygdala.backends._registry import get_backend
from amygdala.errors import StoreError
from amygdala.store._store import ActivationStore
from tests.conftest import tiny_llama

TEXTS = [f"text number {i} says {'ab' * (i % 7)}" for i in range(24)]
SITES = [Site(layer=0), Site(layer=2), Site(layer=1, point="mlp_neurons")]
ROOT = Path(__file__).resolve().parents[1]
# The child process must import the same amygdala as this one (not whatever is installed).
SRC = Path(amygdala.__file__).resolve().parents[1]


def make_store(path: Path, **kw: object) -> tuple[ActivationStore, object]:
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    store = ActivationStore(path, fingerprint=loaded.fingerprint, pooling=Pooling(), **kw)  # type: ignore[arg-type]
    return store, backend


def test_store_matches_direct_capture_and_reuses(tmp_path: Path) -> None:
    store, backend = make_store(tmp_path)
    assert store.ensure(backend, TEXTS, SITES, batch_size=5) == len(TEXTS)  # type: ignore[arg-type]
    direct = backend.capture(TEXTS, SITES, Pooling())  # type: ignore[attr-defined]
    loaded = store.load(TEXTS, SITES)
    for site in SITES:
        np.testing.assert_allclose(loaded[site], direct[site].numpy(), rtol=1e-5, atol=1e-6)
    assert store.ensure(backend, TEXTS, SITES) == 0  # type: ignore[arg-type]
    reopened, _ = make_store(tmp_path)
    assert reopened.ensure(backend, [*TEXTS, "one new text"], SITES) == 1  # type: ignore[arg-type]


def test_new_site_captures_again_and_float16(tmp_path: Path) -> None:
    store, backend = make_store(tmp_path, dtype="float16")
    store.ensure(backend, TEXTS[:4], SITES[:1])  # type: ignore[arg-type]
    assert store.missing(TEXTS[:4], SITES) == [0, 1, 2, 3]
    store.ensure(backend, TEXTS[:4], SITES)  # type: ignore[arg-type]
    assert store.load(TEXTS[:4], SITES)[SITES[2]].dtype == np.float32


def test_missing_pair_and_foreign_dir_raise(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path)
    with pytest.raises(StoreError, match=r"call ActivationStore\.ensure"):
        store.load(["never captured"], SITES)
    (store.path / "store.json").write_text('{"format": 1, "fingerprint": "x", "pooling": "last"}')
    with pytest.raises(StoreError, match="another model"):
        make_store(tmp_path)


def test_damaged_shard_is_named(tmp_path: Path) -> None:
    store, backend = make_store(tmp_path)
    store.ensure(backend, TEXTS[:2], SITES)  # type: ignore[arg-type]
    (store.path / "shard-broken.safetensors").write_bytes(b"not a shard")
    with pytest.raises(StoreError, match="shard-broken"):
        make_store(tmp_path)


_CHILD = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{src!r}, {root!r}]
    from amygdala.backends._registry import get_backend
    from amygdala.store._store import ActivationStore
    from amygdala._types import Pooling, Site
    from tests.conftest import tiny_llama
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    store = ActivationStore({path!r}, fingerprint=loaded.fingerprint, pooling=Pooling())
    texts = [f"text number {{i}} " * (1 + i % 5) for i in range(400)]
    sites = [Site(layer=0), Site(layer=2)]
    def slow(done, total):
        print(done, flush=True)
        time.sleep(0.05)
    store.ensure(backend, texts, sites, batch_size=4, progress=slow)
""")


def test_killed_capture_resumes_without_recomputing(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(src=str(SRC), root=str(ROOT), path=str(tmp_path / "store")))
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}"}) as child:
        assert child.stdout is not None
        for _ in range(5):  # let a few shards land, then kill without warning
            child.stdout.readline()
        time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
    texts = [f"text number {i} " * (1 + i % 5) for i in range(400)]
    sites = [Site(layer=0), Site(layer=2)]
    store, backend = make_store(tmp_path / "store")
    finished = len(texts) - len(store.missing(texts, sites))
    assert 0 < finished < len(texts)
    # Every shard on disk is complete: each tensor has one row per text it lists.
    from safetensors import safe_open

    for shard in store.path.glob("shard-*.safetensors"):
        with safe_open(str(shard), framework="pt") as handle:
            rows = len(json.loads((handle.metadata() or {})["texts"]))
            assert all(handle.get_tensor(k).shape[0] == rows for k in handle.keys())  # noqa: SIM118
    unique = len(set(texts))
    missing_unique = len({texts[i] for i in store.missing(texts, sites)})
    assert store.ensure(backend, texts, sites, batch_size=16) == missing_unique  # type: ignore[arg-type]
    assert missing_unique < unique
    resumed = store.load(texts, sites)
    fresh = backend.capture(texts, sites, Pooling())  # type: ignore[attr-defined]
    for site in sites:
        np.testing.assert_allclose(resumed[site], fresh[site].numpy(), rtol=1e-5, atol=1e-6)
