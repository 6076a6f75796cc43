"""Steering: vectors and circuit modulation, cached and uncached generation agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from amygdala._types import Site
from amygdala.backends._registry import Ablation, Backend
from amygdala.errors import UnknownConceptError, UnknownSiteError
from amygdala.intervene._steer import (
    CircuitMissingError,
    circuit_ablations,
    default_layer,
    open_run,
    prompt_length,
    steer,
    steered_generate,
    steering_edits,
)
from amygdala.vectors._set import SteeringVectorSet

PROMPT = "The cat sat"


class BoomError(RuntimeError):
    pass


def tiny_vectors(d: int = 32, layers: int = 3, seed: int = 0) -> SteeringVectorSet:
    """Random unit directions for concepts a and b at every layer of the tiny model."""
    rng = np.random.default_rng(seed)
    return SteeringVectorSet(
        concepts=["a", "b"], layers=list(range(layers)),
        directions=rng.standard_normal((2, layers, d)).astype(np.float32),
        raw_norm=np.ones((2, layers), np.float32), resid_norm=np.full(layers, 2.0, np.float32),
        mean=np.zeros((layers, d), np.float32), std=np.ones((layers, d), np.float32),
        method="paired", normalisation="raw",
        provenance={"model_fingerprint": "tiny", "corpus_hash": "x"})


# Cases whose greedy tokens flip under the transformer_lens bridge's cached decoding on
# the tiny Llama (measured; with "all" and "generated" steering the drift happens not to
# change a token, so those cases are real checks there too).
_TL_CACHE_DRIFTS = frozenset({"prompt", "modulation"})


def _require_consistent_cache(backend: Backend, request: pytest.FixtureRequest,
                              case: str) -> None:
    """Expect failure on the transformer_lens backend where its cached decoding drifts.

    Measured on the tiny Llama with TransformerLens 4.x: unsteered, the bridge's cached
    decoding already differs from its uncached decoding (logits differ by ~0.37 at the
    first cached step; the torch backend on the same weights differs by <1e-7), see
    TransformerLensBackend.generate. Strict: a fixed bridge turns this into a failure.
    """
    if backend.name == "transformer_lens" and case in _TL_CACHE_DRIFTS:
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="TransformerLens bridge cached decoding differs from uncached "
            "even without steering (documented in TransformerLensBackend.generate)"))


def _generate(backend: Backend, use_cache: bool, **kwargs: Any) -> tuple[int, ...]:
    return steered_generate(backend, PROMPT, max_new_tokens=8, use_cache=use_cache,
                            **kwargs).token_ids


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_cached_and_uncached_steering_agree(tiny_backend: Backend, positions: Any,
                                            request: pytest.FixtureRequest) -> None:
    _require_consistent_cache(tiny_backend, request, positions)
    vs = tiny_vectors()
    kwargs = {"vectors": vs, "alphas": {"a": 6.0, "b": -3.0}, "layers": [0, 1],
              "positions": positions}
    cached = _generate(tiny_backend, True, **kwargs)
    uncached = _generate(tiny_backend, False, **kwargs)
    assert cached == uncached


def test_steering_changes_output_and_positions_mean_what_they_say(
        tiny_backend: Backend) -> None:
    vs = tiny_vectors()
    plain = _generate(tiny_backend, True)
    n = prompt_length(tiny_backend, PROMPT)
    runs = {p: _generate(tiny_backend, True, vectors=vs, alphas={"a": 8.0}, layers=[0],
                         positions=p) for p in ("all", "prompt", "generated")}
    assert runs["all"] != plain
    # The first new token is decided by the prompt pass: "generated" leaves it alone.
    assert runs["generated"][n] == plain[n]
    assert runs["prompt"][n] == runs["all"][n]


def test_generated_positions_leave_prompt_activations_unchanged(tiny_backend: Backend) -> None:
    vs = tiny_vectors()
    site = Site(layer=1)
    n = prompt_length(tiny_backend, PROMPT)
    with tiny_backend.tracing([site]) as plain_trace:
        tiny_backend.generate(PROMPT, max_new_tokens=3, use_cache=True)
    # Steer outside, trace inside: the tracing hook then runs after the edit.
    with steer(tiny_backend, vs, {"a": 4.0}, layers=[1], positions="generated", prompt_len=n
               ), tiny_backend.tracing([site]) as trace:
        tiny_backend.generate(PROMPT, max_new_tokens=3, use_cache=True)
    torch.testing.assert_close(trace.steps[site][0], plain_trace.steps[site][0])
    # The decode step at position n adds exactly the vector at that layer's output.
    added = trace.steps[site][1][0, -1] - plain_trace.steps[site][1][0, -1]
    torch.testing.assert_close(added, torch.as_tensor(vs.vector("a", 1).steering(4.0)),
                               atol=1e-4, rtol=1e-4)


def test_hooks_are_removed_after_an_exception(tiny_backend: Backend,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    before = tiny_backend.logits([PROMPT])
    with pytest.raises(BoomError), steer(tiny_backend, tiny_vectors(), {"a": 5.0}, layers=[0]):
        raise BoomError("inside the block")
    torch.testing.assert_close(tiny_backend.logits([PROMPT]), before)

    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise BoomError("during generation")

    monkeypatch.setattr(tiny_backend, "generate", boom)
    with pytest.raises(BoomError):
        steered_generate(tiny_backend, PROMPT, vectors=tiny_vectors(), alphas={"a": 5.0},
                         positions="generated", ablations=[
                             Ablation(layer=0, component="neurons", indices=[1], mode="scale",
                                      factor=3.0)])
    torch.testing.assert_close(tiny_backend.logits([PROMPT]), before)


def test_several_concepts_at_one_layer_are_summed() -> None:
    vs = tiny_vectors()
    edits = steering_edits(vs, {"a": 1.0, "b": 2.0}, layers=[2])
    expected = vs.vector("a", 2).steering(1.0) + vs.vector("b", 2).steering(2.0)
    assert len(edits) == 1
    np.testing.assert_allclose(edits[0].vector.numpy(), expected, rtol=1e-6)
    assert (edits[0].start, edits[0].stop) == (0, None)
    prompt_only = steering_edits(vs, {"a": 1.0}, layers=[0, 1], positions="prompt",
                                 prompt_len=5)
    assert [(e.start, e.stop) for e in prompt_only] == [(0, 5), (0, 5)]


def test_bad_requests_raise_helpful_errors() -> None:
    vs = tiny_vectors()
    with pytest.raises(ValueError, match="needs prompt_len"):
        steering_edits(vs, {"a": 1.0}, positions="generated")
    with pytest.raises(ValueError, match="positions must be one of"):
        steering_edits(vs, {"a": 1.0}, positions="middle")  # type: ignore[arg-type]
    with pytest.raises(UnknownConceptError, match="this set has: a, b"):
        steering_edits(vs, {"c": 1.0})
    with pytest.raises(UnknownSiteError, match="layers"):
        steering_edits(vs, {"a": 1.0}, layers=[7])
    with pytest.raises(ValueError, match="alphas need vectors"):
        steered_generate(_Unused(), PROMPT, alphas={"a": 1.0})  # type: ignore[arg-type]


class _Unused:
    def ablating(self, _ablations: Any) -> Any:
        from contextlib import nullcontext

        return nullcontext()


def test_default_layer_prefers_the_evaluated_best_layer(tmp_path: Path) -> None:
    vs = tiny_vectors()
    assert default_layer(vs, tmp_path) == 1
    (tmp_path / "evaluation.json").write_text(json.dumps({"best": {"paired": {"layer": 2}}}))
    assert default_layer(vs, tmp_path) == 2
    (tmp_path / "evaluation.json").write_text(json.dumps({"best": {"paired": {"layer": 9}}}))
    assert default_layer(vs, tmp_path) == 1


def test_circuit_modulation_cached_and_uncached_agree(tiny_backend: Backend,
                                                     request: pytest.FixtureRequest) -> None:
    _require_consistent_cache(tiny_backend, request, "modulation")
    ablations = [Ablation(layer=1, component="neurons", indices=[0, 3, 5], mode="scale",
                          factor=4.0),
                 Ablation(layer=0, component="heads", indices=[1], mode="scale", factor=3.0)]
    cached = _generate(tiny_backend, True, ablations=ablations)
    uncached = _generate(tiny_backend, False, ablations=ablations)
    assert cached == uncached


def test_circuit_ablations_read_the_run_circuit(tmp_path: Path) -> None:
    with pytest.raises(CircuitMissingError, match="amygdala circuits"):
        circuit_ablations(tmp_path, "joyful", 2.0)
    circuits = pytest.importorskip("amygdala.diagnose._circuits")
    circuit = circuits.Circuit(
        concept="joyful", layer=2, neurons=(circuits.NeuronScore(layer=1, index=4, score=1.0),),
        heads=(), size_neurons=1, size_heads=0, clean_projection=1.0)
    circuit.save(tmp_path / "circuits")
    ablations = circuit_ablations(tmp_path, "joyful", 3.0)
    assert [(a.layer, a.component, a.indices, a.mode, a.factor) for a in ablations] == [
        (1, "neurons", (4,), "scale", 3.0)]


@pytest.mark.smollm
def test_smollm_cached_and_uncached_steering_agree(small_run: Any) -> None:
    ctx = open_run(small_run.run_dir, backend=small_run.session.backend)
    plain = steered_generate(ctx.backend, "Describe your morning.", max_new_tokens=8,
                             chat=True).token_ids
    for positions in ("all", "generated"):
        runs = [steered_generate(ctx.backend, "Describe your morning.", vectors=ctx.vectors,
                                 alphas={"joyful": 0.3}, layers=[15], positions=positions,
                                 max_new_tokens=8, chat=True, use_cache=use_cache).token_ids
                for use_cache in (True, False)]
        assert runs[0] == runs[1], positions
        assert runs[0] != plain, positions


@given(a=st.floats(-10, 10), b=st.floats(-10, 10))
@settings(max_examples=30, deadline=None)
def test_steering_is_linear_in_alpha(a: float, b: float) -> None:
    vs = tiny_vectors()
    both = steering_edits(vs, {"a": a, "b": b}, layers=[1])[0].vector.numpy()
    alone = (steering_edits(vs, {"a": a}, layers=[1])[0].vector.numpy()
             + steering_edits(vs, {"b": b}, layers=[1])[0].vector.numpy())
    np.testing.assert_allclose(both, alone, atol=1e-4)
