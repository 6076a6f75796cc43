"""Store gaps: what lies on disk (dtype, header, permissions), row order, NaN refusal.

`ActivationStore.load` always returns float32, so these tests read the safetensors
files themselves: the 8-byte header length, then the JSON header naming each dtype.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from amygdala import ActivationStore, Pooling, Site
from amygdala.backends._registry import get_backend
from amygdala.errors import NonFiniteError, StoreError, UnknownSiteError
from amygdala.store._store import Activations, text_hash
from tests.conftest import tiny_llama

TEXTS = [f"text {i} {'xy' * (i % 5)}" for i in range(9)]
SITES = [Site(layer=0), Site(layer=2), Site(layer=1, point="mlp_neurons")]


def _backend_and_store(root: Path, **kw: Any) -> tuple[Any, ActivationStore]:
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    store = ActivationStore(root, fingerprint=loaded.fingerprint, pooling=Pooling(), **kw)
    return backend, store


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, read byte by byte (no library)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header: dict[str, Any] = json.loads(raw[8:8 + length])
    return header


def _activation_dtypes(store: ActivationStore) -> set[str]:
    found = set()
    shards = sorted(store.path.glob("shard-*.safetensors"))
    assert shards, "no shard was written"
    for shard in shards:
        header = safetensors_header(shard)
        for name, entry in header.items():
            if name == "__metadata__" or name.startswith("token_norm."):
                continue
            found.add(entry["dtype"])
    return found


@pytest.mark.parametrize(("dtype", "on_disk", "itemsize"),
                         [("float32", "F32", 4), ("float16", "F16", 2)])
def test_store_dtype_is_what_lies_on_disk(tmp_path: Path, dtype: str, on_disk: str,
                                          itemsize: int) -> None:
    backend, store = _backend_and_store(tmp_path, dtype=dtype)
    store.ensure(backend, TEXTS, SITES, batch_size=4)
    assert _activation_dtypes(store) == {on_disk}
    # Each activation tensor's byte span matches its shape at that item size.
    for shard in store.path.glob("shard-*.safetensors"):
        for name, entry in safetensors_header(shard).items():
            if name == "__metadata__" or name.startswith("token_norm."):
                continue
            begin, end = entry["data_offsets"]
            assert end - begin == int(np.prod(entry["shape"])) * itemsize
    # Values: float16 storage rounds exactly as numpy's float16 does.
    direct = backend.capture(TEXTS, SITES, Pooling())
    loaded = store.load(TEXTS, SITES)
    for site in SITES:
        expected = direct[site].numpy().astype(np.dtype(dtype)).astype(np.float32)
        np.testing.assert_allclose(loaded[site], expected, rtol=2e-3 if itemsize == 2 else 1e-5,
                                   atol=1e-3 if itemsize == 2 else 1e-6)
        assert loaded[site].dtype == np.float32


def test_load_keeps_the_requested_row_order_and_labels(tmp_path: Path) -> None:
    backend, store = _backend_and_store(tmp_path)
    store.ensure(backend, TEXTS, SITES, batch_size=2)
    order = [5, 0, 8, 3, 3, 1]
    wanted = [TEXTS[i] for i in order]
    direct = backend.capture(TEXTS, SITES, Pooling())
    acts = store.load(wanted, SITES)
    for site in SITES:
        np.testing.assert_allclose(acts[site], direct[site].numpy()[order], rtol=1e-5,
                                   atol=1e-6)
    by_hand = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in wanted]
    assert list(acts.ids) == by_hand
    named = store.load(wanted, SITES[:1], ids=[f"id{i}" for i in order])
    assert named.ids == tuple(f"id{i}" for i in order)
    assert named.rows(["id8", "id5"]) == [2, 0]


def test_text_hash_is_a_truncated_sha256() -> None:
    text = "naïve café ☕"
    assert text_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    assert len(text_hash("")) == 32


def test_shards_are_world_readable_and_another_store_sees_them(tmp_path: Path) -> None:
    backend, store = _backend_and_store(tmp_path)
    other = ActivationStore(tmp_path, fingerprint=store.fingerprint, pooling=Pooling())
    store.ensure(backend, TEXTS[:3], SITES[:1])
    for shard in store.path.glob("shard-*.safetensors"):
        assert shard.stat().st_mode & 0o777 == 0o644
    assert not other.has(TEXTS[0], SITES[0])
    other.refresh()
    assert other.has(TEXTS[0], SITES[0])
    assert other.missing(TEXTS[:4], SITES[:1]) == [3]
    assert len(other) == 3
    assert store.size_bytes() == sum(p.stat().st_size
                                     for p in store.path.glob("shard-*.safetensors"))


def test_non_finite_activations_are_refused_and_leave_no_shard(tmp_path: Path) -> None:
    loaded = tiny_llama()
    with torch.no_grad():
        loaded.model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    backend = get_backend("torch", loaded)
    store = ActivationStore(tmp_path, fingerprint=loaded.fingerprint, pooling=Pooling())
    with pytest.raises(NonFiniteError, match="NaN/inf") as info:
        store.ensure(backend, TEXTS[:2], [Site(layer=1)])
    assert isinstance(info.value, ValueError)
    assert not list(store.path.glob("shard-*"))
    assert store.missing(TEXTS[:2], [Site(layer=1)]) == [0, 1]


def test_store_of_another_dtype_or_pooling_does_not_mix(tmp_path: Path) -> None:
    backend, store = _backend_and_store(tmp_path)
    store.ensure(backend, TEXTS[:2], SITES[:1])
    last = ActivationStore(tmp_path, fingerprint=store.fingerprint, pooling=Pooling(kind="last"))
    assert last.missing(TEXTS[:2], SITES[:1]) == [0, 1]
    with pytest.raises(StoreError, match="has no activations"):
        last.load(TEXTS[:1], SITES[:1])


# ----- survivors of the mutation run (benchmarks/mutants.py) -------------------------------

def test_float16_and_float32_stores_live_in_separate_directories(tmp_path: Path) -> None:
    key = Pooling().key
    f32 = ActivationStore(tmp_path, fingerprint="f", pooling=Pooling())
    f16 = ActivationStore(tmp_path, fingerprint="f", pooling=Pooling(), dtype="float16")
    assert f32.path == tmp_path / "f" / key
    assert f16.path == tmp_path / "f" / f"{key}-float16"
    assert json.loads((f16.path / "store.json").read_text())["dtype"] == "float16"


def test_a_store_written_before_dtype_was_recorded_opens_as_float32(tmp_path: Path) -> None:
    key = Pooling().key
    old = tmp_path / "f" / key
    old.mkdir(parents=True)
    (old / "store.json").write_text(json.dumps({"format": 1, "fingerprint": "f",
                                                "pooling": key}))
    assert ActivationStore(tmp_path, fingerprint="f", pooling=Pooling()).dtype == "float32"
    # The same file with a float16 dtype recorded belongs to another format.
    (old / "store.json").write_text(json.dumps({"format": 1, "fingerprint": "f",
                                                "pooling": key, "dtype": "float16"}))
    with pytest.raises(StoreError, match="belongs to another model or format"):
        ActivationStore(tmp_path, fingerprint="f", pooling=Pooling())


def test_token_norms_are_stored_as_float32_whatever_was_given(tmp_path: Path) -> None:
    store = ActivationStore(tmp_path, fingerprint="f", pooling=Pooling(), dtype="float16")
    site = Site(layer=0)
    given = torch.tensor([1.25, 2.5, 1e5], dtype=torch.float64)  # 1e5 overflows float16
    store.put_token_norms(["a", "b", "c"], {site: given})
    (shard,) = store.path.glob("shard-*.safetensors")
    assert safetensors_header(shard)[f"token_norm.{site}"]["dtype"] == "F32"
    norms = store.token_norms(["c", "zzz", "a"], [site])
    np.testing.assert_array_equal(norms[[0, 2], 0], [1e5, 1.25])
    assert np.isnan(norms[1, 0])


def test_token_norms_are_the_median_norm_of_the_pooled_tokens(tmp_path: Path) -> None:
    backend, store = _backend_and_store(tmp_path)
    sites = [Site(layer=0), Site(layer=2)]
    store.ensure(backend, TEXTS, sites, batch_size=4)  # several shards
    skip = Pooling().skip
    per_token = backend.capture_tokens(TEXTS, sites)
    expected = np.empty((len(TEXTS), len(sites)), np.float32)
    for i, captured in enumerate(per_token):
        for j, site in enumerate(sites):
            norms = np.linalg.norm(captured[site].numpy(), axis=-1)
            kept = norms[min(skip, len(norms) - 1):]
            expected[i, j] = np.sort(kept)[(len(kept) - 1) // 2]  # lower middle value
    order = [4, 0, 8, 2]
    np.testing.assert_allclose(store.token_norms([TEXTS[i] for i in order], sites[::-1]),
                               expected[order][:, ::-1], rtol=1e-5)


def test_missing_rows_and_sites_name_the_fix(tmp_path: Path) -> None:
    store = ActivationStore(tmp_path, fingerprint="f", pooling=Pooling())
    # Anchored: the whole sentence, exactly (a substring would survive a changed message).
    with pytest.raises(StoreError, match=r"; call ActivationStore\.ensure \(or rerun "
                                         r"`amygdala train`\) first$"):
        store.load(["never captured"], [Site(layer=0)])
    acts = Activations(ids=("a",), data={Site(layer=1): np.ones((1, 2), np.float32)})
    with pytest.raises(UnknownSiteError, match=r"no activations for .*; have \['resid_post"):
        acts[Site(layer=0)]
    tensor = acts.torch(Site(layer=1))
    assert isinstance(tensor, torch.Tensor) and tensor.tolist() == [[1.0, 1.0]]
