"""Capture in any model dtype: float32 pooling, dtype in the store keys, stored token norms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from amygdala._types import Pooling, Site
from amygdala.backends._hooked import pool
from amygdala.backends._loading import fingerprint
from amygdala.backends._registry import get_backend
from amygdala.corpus._model import Corpus, Scenario, Text
from amygdala.store._store import ActivationStore
from amygdala.vectors._train import Session, capture_corpus, typical_token_norm
from tests.conftest import tiny_llama

SITES = [Site(layer=0), Site(layer=2)]


def lower_median(values: np.ndarray) -> float:
    """The lower middle value (what torch.nanmedian returns for an even count)."""
    ordered = np.sort(values)
    return float(ordered[(len(ordered) - 1) // 2])


def test_pool_sums_in_float32_whatever_the_dtype() -> None:
    rng = np.random.default_rng(0)
    acts = torch.from_numpy(rng.normal(3.0, 1.0, size=(2, 600, 8))).to(torch.bfloat16)
    mask = torch.ones(2, 600, dtype=torch.long)
    mask[1, 500:] = 0
    pooled = pool(acts, mask, Pooling())
    assert pooled.dtype == torch.float32
    exact = acts.to(torch.float64).numpy()  # bf16 values are exact in float64
    expected = np.stack([exact[0, 2:600].mean(axis=0), exact[1, 2:500].mean(axis=0)])
    np.testing.assert_allclose(pooled.numpy(), expected, rtol=1e-5)


def test_bfloat16_model_pools_like_a_float64_reference() -> None:
    loaded = tiny_llama()
    loaded.model.to(torch.bfloat16)
    backend = get_backend("torch", loaded)
    text = "The kettle on the narrow shelf was still warm when she came back. " * 3
    pooled = backend.capture([text], SITES, Pooling())
    tokens = backend.capture_tokens([text], SITES)[0]  # bf16 activations, widened exactly
    for site in SITES:
        assert len(tokens[site]) > 190
        reference = tokens[site].numpy().astype(np.float64)[2:].mean(axis=0)
        np.testing.assert_allclose(pooled[site][0].numpy(), reference, rtol=1e-5, atol=1e-6)


def test_fingerprint_and_store_keep_dtypes_apart(tmp_path: Path) -> None:
    # One bfloat16 checkpoint loaded twice: in float32 (exact values) and in bfloat16.
    fp32 = tiny_llama()
    fp32.model.to(torch.bfloat16).to(torch.float32)
    bf16 = tiny_llama()
    bf16.model.to(torch.bfloat16)
    assert fingerprint(bf16.model) != fingerprint(fp32.model)
    assert fingerprint(tiny_llama().model) == tiny_llama().fingerprint
    # One root, one fingerprint: float16 and float32 stores are different directories.
    backend = get_backend("torch", fp32)
    texts = ["one text about a door", "another about a garden"]
    key = fingerprint(fp32.model)
    half = ActivationStore(tmp_path, fingerprint=key, pooling=Pooling(), dtype="float16")
    half.ensure(backend, texts, SITES)
    full = ActivationStore(tmp_path, fingerprint=key, pooling=Pooling())
    assert full.path != half.path
    assert full.missing(texts, SITES) == [0, 1]
    assert full.ensure(backend, texts, SITES) == 2


def test_float16_shards_in_a_float32_store_are_not_read(tmp_path: Path) -> None:
    # What an older amygdala did: float16 shards next to float32 ones in one directory.
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    full = ActivationStore(tmp_path, fingerprint=loaded.fingerprint, pooling=Pooling())
    texts = ["a text about a bridge"]
    captured = backend.capture(texts, SITES, Pooling())
    half = ActivationStore(tmp_path, fingerprint=loaded.fingerprint, pooling=Pooling(),
                           dtype="float16")
    half._write_shard(texts, captured)
    (half.path / next(half.path.glob("shard-*")).name).rename(
        full.path / next(half.path.glob("shard-*")).name)
    full.refresh()
    assert full.missing(texts, SITES) == [0]


def small_corpus() -> Corpus:
    scenarios = []
    for s in range(3):
        base = Text(id=f"paired/s{s}/baseline.txt", role="baseline", scenario=f"s{s}",
                    text=f"Scenario {s}: she opened the door and looked at the street.")
        variant = Text(id=f"paired/s{s}/joyful.txt", role="variant", concept="joyful",
                       scenario=f"s{s}", text=f"Scenario {s}: she opened the door, beaming.")
        scenarios.append(Scenario(slug=f"s{s}", baseline=base, variants={"joyful": variant}))
    neutral = [Text(id=f"neutral/{i}.txt", role="neutral",
                    text=f"Neutral text {i} lists the trains that leave before noon" + "." * i)
               for i in range(4)]
    return Corpus(root="synthetic", scenarios=scenarios, neutral=neutral)


def counting(session: Session) -> list[int]:
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    session.loaded.model.register_forward_pre_hook(count)
    return calls


def test_warm_store_needs_no_forward_pass_for_the_residual_norm(tmp_path: Path) -> None:
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    store = ActivationStore(tmp_path, fingerprint=loaded.fingerprint, pooling=Pooling())
    session = Session(loaded=loaded, backend=backend, store=store)
    corpus = small_corpus()
    layers = [0, 1, 2]
    capture_corpus(session, corpus, layers)
    calls = counting(session)
    norms = typical_token_norm(session, corpus, layers, Pooling())
    assert calls[0] == 0
    # Reference: per-token norms by numpy, each text's (lower) median, then the median.
    sites = [Site(layer=x) for x in layers]
    per_text = backend.capture_tokens([t.text for t in corpus.neutral], sites)
    expected = [np.median([lower_median(np.linalg.norm(
        d[s].numpy().astype(np.float64)[2:], axis=1)) for d in per_text]) for s in sites]
    np.testing.assert_allclose(norms, expected, rtol=1e-5)


def test_store_without_norms_computes_them_once(tmp_path: Path) -> None:
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    store = ActivationStore(tmp_path, fingerprint=loaded.fingerprint, pooling=Pooling())
    corpus = small_corpus()
    texts = [t.text for t in corpus.texts]
    # Activations only, as an older amygdala stored them.
    store._write_shard(texts, backend.capture(texts, SITES, Pooling()))
    session = Session(loaded=loaded, backend=backend, store=store)
    calls = counting(session)
    first = typical_token_norm(session, corpus, [0, 2], Pooling())
    assert calls[0] > 0
    calls[0] = 0
    reopened = ActivationStore(tmp_path, fingerprint=loaded.fingerprint, pooling=Pooling())
    again = typical_token_norm(Session(loaded=loaded, backend=backend, store=reopened), corpus,
                               [0, 2], Pooling())
    assert calls[0] == 0
    np.testing.assert_array_equal(first, again)
    # Another pooling than the store's is computed, not read.
    other = typical_token_norm(session, corpus, [0, 2], Pooling(skip=0))
    assert calls[0] > 0 and not np.allclose(other, first)


@pytest.mark.parametrize("skip", [0, 3])
def test_stored_token_norms_match_numpy(tmp_path: Path, skip: int) -> None:
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    pooling = Pooling(skip=skip)
    store = ActivationStore(tmp_path, fingerprint=loaded.fingerprint, pooling=pooling)
    texts = ["short", "a somewhat longer text about the market", "ab"]
    store.ensure(backend, texts, SITES, batch_size=2)
    got = store.token_norms(texts, SITES)
    per_text = backend.capture_tokens(texts, SITES)
    for i, d in enumerate(per_text):
        for j, site in enumerate(SITES):
            norms = np.linalg.norm(d[site].numpy().astype(np.float64), axis=1)
            start = min(skip, len(norms) - 1)
            assert got[i, j] == pytest.approx(lower_median(norms[start:]), rel=1e-5)
