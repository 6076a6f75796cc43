"""Steering and read-out gaps: steering must change the output (not only agree with
itself), and the read-out statistics cache must honour its key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from amygdala.backends._registry import Ablation, Backend, get_backend
from amygdala.intervene import _readout
from amygdala.intervene._readout import STATS_FILE, load_or_compute_stats
from amygdala.intervene._steer import steered_generate
from amygdala.vectors import SteeringVectorSet
from tests.conftest import tiny_llama

PROMPT = "The cat sat"
NEUTRAL = ["The kettle clicked off and the water settled.",
           "A bus left the depot at nine and turned left onto the main road."]


def tiny_vectors(**changes: Any) -> SteeringVectorSet:
    rng = np.random.default_rng(0)
    vs = SteeringVectorSet(
        concepts=["a", "b"], layers=[0, 1, 2],
        directions=rng.standard_normal((2, 3, 32)).astype(np.float32),
        raw_norm=np.ones((2, 3), np.float32), resid_norm=np.full(3, 2.0, np.float32),
        mean=np.zeros((3, 32), np.float32), std=np.ones((3, 32), np.float32),
        method="paired", normalisation="raw",
        provenance={"model_fingerprint": "tiny", "corpus_hash": "x"})
    return attrs.evolve(vs, **changes) if changes else vs


@pytest.fixture(scope="module")
def backend() -> Backend:
    return get_backend("torch", tiny_llama())


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_steering_changes_the_output_and_the_cache_does_not(backend: Backend,
                                                            positions: str) -> None:
    kwargs: dict[str, Any] = {"vectors": tiny_vectors(), "alphas": {"a": 6.0, "b": -3.0},
                              "layers": [0, 1], "positions": positions, "max_new_tokens": 8}
    plain = steered_generate(backend, PROMPT, max_new_tokens=8).token_ids
    cached = steered_generate(backend, PROMPT, use_cache=True, **kwargs).token_ids
    uncached = steered_generate(backend, PROMPT, use_cache=False, **kwargs).token_ids
    assert cached == uncached
    assert cached != plain
    assert cached[:len(PROMPT)] == plain[:len(PROMPT)]  # the prompt itself is never changed


def test_circuit_modulation_changes_the_output_and_the_cache_does_not(
        backend: Backend) -> None:
    ablations = [Ablation(layer=1, component="neurons", indices=range(0, 64, 3), mode="scale",
                          factor=4.0),
                 Ablation(layer=0, component="heads", indices=[1], mode="scale", factor=3.0)]
    plain = steered_generate(backend, PROMPT, max_new_tokens=8).token_ids
    cached = steered_generate(backend, PROMPT, ablations=ablations, max_new_tokens=8,
                              use_cache=True).token_ids
    uncached = steered_generate(backend, PROMPT, ablations=ablations, max_new_tokens=8,
                                use_cache=False).token_ids
    assert cached == uncached
    assert cached != plain


def test_zero_alpha_is_plain_generation(backend: Backend) -> None:
    plain = steered_generate(backend, PROMPT, max_new_tokens=6).token_ids
    zero = steered_generate(backend, PROMPT, vectors=tiny_vectors(), alphas={"a": 0.0},
                            layers=[1], max_new_tokens=6).token_ids
    assert zero == plain


# ----- the read-out statistics cache ------------------------------------------------------

CHANGES: dict[str, dict[str, Any]] = {
    "model": {"provenance": {"model_fingerprint": "other", "corpus_hash": "x"}},
    "corpus": {"provenance": {"model_fingerprint": "tiny", "corpus_hash": "y"}},
    "method": {"method": "pca"},
    "normalisation": {"normalisation": "standardise"},
    "concepts": {"concepts": ["a", "c"]},
}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[SteeringVectorSet]:
    """Record each real computation of the statistics (neutral texts fixed)."""
    calls: list[SteeringVectorSet] = []
    real = _readout.compute_stats

    def compute(backend: Backend, vectors: SteeringVectorSet, texts: Any,
                **kw: Any) -> Any:
        calls.append(vectors)
        return real(backend, vectors, texts, **kw)

    monkeypatch.setattr(_readout, "neutral_texts", lambda *_a, **_k: NEUTRAL)
    monkeypatch.setattr(_readout, "compute_stats", compute)
    return calls


@pytest.mark.parametrize("change", list(CHANGES))
def test_stats_cache_is_keyed_by_the_vectors(backend: Backend, tmp_path: Path,
                                             counted: list[SteeringVectorSet],
                                             change: str) -> None:
    first = load_or_compute_stats(tmp_path, backend, tiny_vectors())
    again = load_or_compute_stats(tmp_path, backend, tiny_vectors())
    assert len(counted) == 1  # same vectors: served from the file
    np.testing.assert_array_equal(again.mean[1], first.mean[1])
    other = tiny_vectors(**CHANGES[change])
    fresh = load_or_compute_stats(tmp_path, backend, other)
    assert len(counted) == 2, f"a different {change} must not reuse the cached statistics"
    assert fresh.key != first.key
    assert fresh.concepts == other.concepts
    on_disk = json.loads((tmp_path / STATS_FILE).read_text())
    assert on_disk["key"] == fresh.key


def test_stats_cache_recomputes_for_layers_it_lacks(backend: Backend, tmp_path: Path,
                                                    counted: list[SteeringVectorSet]) -> None:
    few = tiny_vectors().select(layers=[0, 1])
    load_or_compute_stats(tmp_path, backend, few)
    full = load_or_compute_stats(tmp_path, backend, tiny_vectors())
    assert len(counted) == 2
    assert sorted(full.mean) == [0, 1, 2]


def test_stats_are_mean_and_spread_of_neutral_token_scores(backend: Backend,
                                                          tmp_path: Path,
                                                          counted: list[SteeringVectorSet],
                                                          ) -> None:
    from amygdala._types import Site

    vs = tiny_vectors()
    stats = load_or_compute_stats(tmp_path, backend, vs)
    site = Site(layer=2)
    tokens = [t[site][2:].numpy() for t in backend.capture_tokens(NEUTRAL, [site])]
    h = np.concatenate(tokens).astype(np.float64)
    readers = vs.readers(2).astype(np.float64)
    scores = h @ readers.T + vs.offsets(2).astype(np.float64)
    np.testing.assert_allclose(stats.mean[2], scores.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.std[2], scores.std(0), rtol=1e-4, atol=1e-5)
    assert stats.n_tokens == len(h)
