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


# ----- survivors of the mutation run (benchmarks/mutants.py) -------------------------------

@pytest.fixture(scope="module")
def chat_backend() -> Backend:
    """A tiny Llama whose tokenizer has a chat template (the byte tokenizer has none)."""
    loaded = tiny_llama()
    loaded.tokenizer.chat_template = ("{% for m in messages %}<<{{ m['content'] }}>>"
                                      "{% endfor %}{% if add_generation_prompt %}A:{% endif %}")
    return get_backend("torch", loaded)


def test_prompt_length_and_steered_generate_honour_chat(chat_backend: Backend) -> None:
    from amygdala.intervene._steer import prompt_length

    tok: Any = chat_backend.tokenizer
    plain = len(tok(PROMPT)["input_ids"])
    chat = len(tok(f"<<{PROMPT}>>A:", add_special_tokens=False)["input_ids"])
    assert (prompt_length(chat_backend, PROMPT), prompt_length(chat_backend, PROMPT,
                                                               chat=True)) == (plain, chat)
    assert steered_generate(chat_backend, PROMPT, max_new_tokens=2).prompt_len == plain
    assert steered_generate(chat_backend, PROMPT, max_new_tokens=2, chat=True).prompt_len == chat


def test_steered_generate_steers_the_layers_given_and_passes_the_temperature(
        backend: Backend) -> None:
    import torch

    from amygdala._types import Site
    from amygdala.backends._registry import Edit

    vs = tiny_vectors()
    by_hand = torch.from_numpy(6.0 * 2.0 * vs.directions[0, 2])  # alpha * resid_norm * dir
    with backend.editing([Edit(site=Site(layer=2), vector=by_hand)]):
        expected = backend.generate(PROMPT, max_new_tokens=6).token_ids
    got = steered_generate(backend, PROMPT, vectors=vs, alphas={"a": 6.0}, layers=[2],
                           max_new_tokens=6).token_ids
    assert got == expected
    assert got != steered_generate(backend, PROMPT, vectors=vs, alphas={"a": 6.0},
                                   max_new_tokens=6).token_ids  # default layer 1 differs
    greedy = steered_generate(backend, PROMPT, max_new_tokens=6).token_ids
    assert steered_generate(backend, PROMPT, max_new_tokens=6, do_sample=True,
                            temperature=1e-3, seed=1).token_ids == greedy


def test_open_run_uses_the_backend_given(backend: Backend, tmp_path: Path) -> None:
    from amygdala.intervene._steer import open_run

    vs = tiny_vectors()
    vs.save(tmp_path)
    ctx = open_run(tmp_path, backend=backend)
    assert ctx.backend is backend
    assert ctx.vectors.concepts == vs.concepts


def test_readout_skip_comes_from_the_run_pooling() -> None:
    assert _readout.readout_skip(tiny_vectors(provenance={"pooling": "mean_skip4"})) == (
        4, "run pooling mean_skip4")
    assert _readout.readout_skip(tiny_vectors())[0] == 2


def test_stats_keep_float32_and_their_skip_source(backend: Backend) -> None:
    vs = tiny_vectors(provenance={"pooling": "mean_skip3", "model_fingerprint": "tiny"})
    stats = _readout.compute_stats(backend, vs, NEUTRAL)
    assert {stats.mean[x].dtype for x in vs.layers} == {np.dtype(np.float32)}
    assert {stats.std[x].dtype for x in vs.layers} == {np.dtype(np.float32)}
    back = _readout.ReadoutStats.from_json(json.loads(json.dumps(stats.to_json())))
    assert (back.skip, back.skip_source) == (3, "run pooling mean_skip3")


def test_neutral_texts_are_the_corpus_neutral_texts_in_id_order(tmp_path: Path) -> None:
    from tests.corpus_helpers import prose, write

    for name in ("baseline", "sad", "calm"):
        write(tmp_path / "paired" / "s0" / f"{name}.txt", prose(90, 1 + len(name)))
    texts = {f"n{k}": prose(60, 40 + k, lead="The bus left") for k in (2, 0, 1)}
    for name, text in texts.items():
        write(tmp_path / "neutral" / f"{name}.txt", text)
    got = _readout.neutral_texts(tiny_vectors(), tmp_path)
    assert got == [texts[k].strip() for k in ("n0", "n1", "n2")]


def test_render_colours_and_html_colours_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from amygdala.errors import MissingDependencyError

    r = _readout.Readout(tokens=["x", "y"], concepts=["a", "b"], layer=1,
                         z=np.array([[2.0, 0.0], [1.0, 0.0]]), skip=0)
    lines = r.render(color=True).splitlines()
    assert lines[1].startswith("\x1b[48;5;196m")  # z = 2 is the brightest step of hue 0
    assert lines[2].startswith("\x1b[48;5;124m")
    assert _readout._rgb(1.0, 2.0) == "rgb(255,127,127)"
    assert _readout._rgb(-1.0, 2.0) == "rgb(127,127,255)"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"^PNG output needs matplotlib: "):
        _readout._pyplot()


def test_an_older_evaluation_names_the_paired_task_layer(tmp_path: Path) -> None:
    (tmp_path / "evaluation.json").write_text(json.dumps(
        {"recommended_layer": {"paired": 5}, "recommended_band": {"paired": [4, 5, 6]}}))
    assert _readout.recommended_from_evaluation(tmp_path, "paired") == ([5], [4, 5, 6])
    assert _readout.recommended_from_evaluation(tmp_path, "probe") == ([], [])


def test_shared_component_by_hand(backend: Backend) -> None:
    vs = tiny_vectors()
    rng = np.random.default_rng(4)
    hidden = {1: rng.normal(size=(40, 32)).astype(np.float32)}
    stats = _readout.ReadoutStats(concepts=vs.concepts, mean={1: np.zeros(2, np.float32)},
                                  std={1: np.full(2, 0.5, np.float32)}, n_tokens=9, key="k")
    out = _readout.shared_component(vs, stats, hidden, [1], measured_on="noise")
    z = (hidden[1] @ vs.readers(1).T + vs.offsets(1)) / 0.5
    shared = z.mean(1)
    r2 = [np.corrcoef(z[:, c], shared)[0, 1] ** 2 for c in range(2)]
    assert out["per_concept"] == pytest.approx(dict(zip(vs.concepts, r2, strict=True)),
                                               abs=1e-4)
    assert round(float(np.mean(r2)), 5) != round(float(np.mean(r2)), 4)  # digits matter
    assert out["mean"] == round(float(np.mean(r2)), 4)
    assert out["median"] == round(float(np.median(r2)), 4)
    assert (out["n_items"], out["measured_on"], out["layers"]) == (40, "noise", [1])
