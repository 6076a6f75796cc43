"""Backend gaps: every context manager removes every hook (counted on the modules), and
the two backends agree on resid_mid edits, mean ablations and steered generation.

Parity on non-zero edits at every residual point and on ablations is a check of the
conformance suite (`amygdala.testing.PARITY_CHECKS`, run by tests/test_backends.py).

Both backends wrap the same tiny random Llama (same seed, same weights), so any
difference between them is a difference in how they place hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
import pytest
import torch

from amygdala import SteeringVectorSet
from amygdala._types import Pooling, Site
from amygdala.backends._registry import Ablation, Backend, Edit, get_backend
from amygdala.intervene._readout import ReadoutStats, read_generation
from amygdala.intervene._steer import modulate, prompt_length, steer, steered_generate
from tests.conftest import BACKEND_NAMES, tiny_llama

TEXTS = ["The kettle clicked off.", "He read the letter twice, then folded it.", "Rain."]
PROMPT = "The cat sat"
RESIDUAL = ("resid_pre", "resid_mid", "resid_post")


class BoomError(RuntimeError):
    pass


def tiny_vectors(d: int = 32, layers: int = 3) -> SteeringVectorSet:
    rng = np.random.default_rng(0)
    return SteeringVectorSet(
        concepts=["a", "b"], layers=list(range(layers)),
        directions=rng.standard_normal((2, layers, d)).astype(np.float32),
        raw_norm=np.ones((2, layers), np.float32), resid_norm=np.full(layers, 2.0, np.float32),
        mean=np.zeros((layers, d), np.float32), std=np.ones((layers, d), np.float32),
        method="paired", normalisation="raw",
        provenance={"model_fingerprint": "tiny", "corpus_hash": "x"})


def hook_counts(backend: Backend) -> dict[str, int]:
    """Hooks of every kind on every module the backend can reach, plus global hooks."""
    from torch.nn.modules import module as torch_module

    roots: list[tuple[str, torch.nn.Module]] = [("model", backend.loaded.model)]  # type: ignore[attr-defined]
    if getattr(backend, "bridge", None) is not None:
        roots.append(("bridge", backend.bridge))  # type: ignore[attr-defined]
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for prefix, root in roots:
        for name, module in root.named_modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            n = (len(module._forward_hooks) + len(module._forward_pre_hooks)
                 + len(module._backward_hooks) + len(module._backward_pre_hooks))
            if n:
                counts[f"{prefix}.{name}"] = n
    counts["<global>"] = (len(torch_module._global_forward_hooks)
                          + len(torch_module._global_forward_pre_hooks))
    return counts


def total(counts: dict[str, int]) -> int:
    return sum(counts.values())


@pytest.fixture(scope="module")
def backends() -> dict[str, Backend]:
    """Both backends, each around its own copy of the same tiny Llama, warmed up.

    The TransformerLens bridge adds its own permanent hooks to some wrapped modules on
    its first forward pass; a warm-up pass puts them in place before anything is counted.
    """
    built = {name: get_backend(name, tiny_llama()) for name in BACKEND_NAMES}
    for backend in built.values():
        backend.logits(TEXTS)
        for use_cache in (True, False):
            backend.generate(PROMPT, max_new_tokens=2, use_cache=use_cache)
    return built


def _contexts(backend: Backend) -> dict[str, Callable[[], AbstractContextManager[Any]]]:
    d = backend.dims.d_model
    vs = tiny_vectors()
    ones = torch.ones(d)
    stats = ReadoutStats(concepts=vs.concepts, mean={1: np.zeros(2, np.float32)},
                         std={1: np.ones(2, np.float32)}, n_tokens=10, key="k")

    @contextmanager
    def around(fn: Callable[[], object]) -> Iterator[None]:
        fn()  # a call that opens and closes its own hooks, then the caller's block
        yield

    return {
        "tracing": lambda: backend.tracing([Site(layer=layer, point=p) for layer in range(3)
                                            for p in (*RESIDUAL, "mlp_neurons", "attn_heads")]),
        "editing": lambda: backend.editing([Edit(site=Site(layer=layer, point=p), vector=ones)
                                            for layer in range(3) for p in RESIDUAL]),
        "ablating": lambda: backend.ablating([
            Ablation(layer=0, component="heads", indices=[0, 1]),
            Ablation(layer=1, component="neurons", indices=[2, 3], mode="scale", factor=2.0)]),
        "steer": lambda: steer(backend, vs, {"a": 2.0}, layers=[0, 2]),
        "modulate": lambda: modulate(backend, [Ablation(layer=2, component="neurons",
                                                        indices=[1], mode="scale", factor=3.0)]),
        "capture": lambda: around(lambda: backend.capture(TEXTS, [Site(layer=1)], Pooling())),
        "capture_tokens": lambda: around(lambda: backend.capture_tokens(TEXTS, [Site(layer=1)])),
        "generate_under_edit": lambda: around(lambda: _generate_under_edit(backend, ones)),
        "steered_generate": lambda: around(lambda: steered_generate(
            backend, PROMPT, vectors=vs, alphas={"a": 2.0}, layers=[1], positions="generated",
            ablations=[Ablation(layer=0, component="neurons", indices=[1], mode="scale",
                                factor=3.0)], max_new_tokens=3)),
        "read_generation": lambda: around(lambda: read_generation(
            backend, vs, PROMPT, layer=1, stats=stats, max_new_tokens=3)),
    }


def _generate_under_edit(backend: Backend, vector: torch.Tensor) -> None:
    with backend.editing([Edit(site=Site(layer=1), vector=vector, start=2)]):
        backend.generate(PROMPT, max_new_tokens=3)


CONTEXTS = ("tracing", "editing", "ablating", "steer", "modulate", "capture", "capture_tokens",
            "generate_under_edit", "steered_generate", "read_generation")


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_every_context_manager_removes_every_hook(backends: dict[str, Backend], name: str,
                                                  context: str) -> None:
    backend = backends[name]
    before = hook_counts(backend)
    with _contexts(backend)[context]():
        backend.logits(TEXTS[:1])
    assert hook_counts(backend) == before, f"{context} left hooks behind"


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_every_context_manager_removes_every_hook_after_an_exception(
        backends: dict[str, Backend], name: str, context: str) -> None:
    backend = backends[name]
    before = hook_counts(backend)
    with pytest.raises(BoomError), _contexts(backend)[context]():
        raise BoomError("inside the block")
    assert hook_counts(backend) == before, f"{context} left hooks behind after an exception"


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("context", ["tracing", "editing", "ablating", "steer", "modulate"])
def test_hooks_are_in_place_inside_the_block(backends: dict[str, Backend], name: str,
                                             context: str) -> None:
    # The counter must see the hooks it checks for, or the two tests above prove nothing.
    backend = backends[name]
    before = total(hook_counts(backend))
    with _contexts(backend)[context]():
        assert total(hook_counts(backend)) > before


def test_a_failure_while_registering_removes_what_was_registered(
        backends: dict[str, Backend], monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backends["torch"]
    before = hook_counts(backend)
    attach = backend._attach  # type: ignore[attr-defined]
    calls = []

    def flaky(site: Site, fn: Any) -> Any:
        calls.append(site)
        if len(calls) == 3:
            raise BoomError("third hook fails")
        return attach(site, fn)

    monkeypatch.setattr(backend, "_attach", flaky)
    with pytest.raises(BoomError), backend.tracing([Site(layer=i) for i in range(3)]):
        pass
    assert hook_counts(backend) == before


# ----- resid_mid, mean ablation and steered generation in both backends ------------------


def _vector(d: int, seed: int, scale: float = 0.7) -> torch.Tensor:
    return scale * torch.randn(d, generator=torch.Generator().manual_seed(seed))


def test_resid_mid_edit_reaches_resid_post_in_both_backends(
        backends: dict[str, Backend]) -> None:
    # resid_post = resid_mid + mlp(norm(resid_mid)): a shift of resid_mid must show up in
    # resid_post of the same block (writing only the norm's input would not).
    mid, post = Site(layer=1, point="resid_mid"), Site(layer=1)
    vector = _vector(backends["torch"].dims.d_model, seed=3)
    changes = {}
    for name, backend in backends.items():
        plain = backend.capture(TEXTS, [post], Pooling(kind="last"))[post]
        with backend.editing([Edit(site=mid, vector=vector)]):
            after = backend.capture(TEXTS, [post], Pooling(kind="last"))[post]
        changes[name] = after - plain
        # Residual connection: at least the vector itself passes through, plus the MLP's reply.
        cos = torch.nn.functional.cosine_similarity(changes[name], vector[None], dim=-1)
        assert bool((cos > 0.3).all()), f"{name}: cosine to the edit {cos.tolist()}"
    torch.testing.assert_close(changes["transformer_lens"], changes["torch"], rtol=1e-4,
                               atol=1e-5)


ABLATIONS = {
    "heads_zero": [Ablation(layer=0, component="heads", indices=[1, 2])],
    "neurons_scale": [Ablation(layer=1, component="neurons", indices=[0, 5, 9, 40],
                               mode="scale", factor=3.0)],
    "heads_mean": [Ablation(layer=2, component="heads", indices=[3], mode="mean",
                            means=torch.linspace(-1, 1, 32))],
    "neurons_mean": [Ablation(layer=0, component="neurons", indices=[7, 8], mode="mean",
                              means=torch.linspace(2, -2, 64))],
    "per_row": [Ablation(layer=1, component="heads", indices=[0], rows=(1,))],
}


def test_mean_ablation_sets_exactly_the_means(backends: dict[str, Backend]) -> None:
    means = torch.linspace(2, -2, 64)
    site = Site(layer=0, point="mlp_neurons")
    for name, backend in backends.items():
        base = backend.capture_tokens(TEXTS[:1], [site])[0][site]
        with backend.ablating(ABLATIONS["neurons_mean"]):
            got = backend.capture_tokens(TEXTS[:1], [site])[0][site]
        expected = base.clone()
        expected[:, [7, 8]] = means[[7, 8]]
        torch.testing.assert_close(got, expected, msg=name)


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_backends_agree_on_steered_generation(backends: dict[str, Backend],
                                              positions: str) -> None:
    vs = tiny_vectors()
    kwargs: dict[str, Any] = {
        "vectors": vs, "alphas": {"a": 6.0, "b": -3.0}, "layers": [0, 1],
        "positions": positions, "max_new_tokens": 8, "use_cache": False,
        "ablations": ABLATIONS["neurons_scale"]}
    runs = {name: steered_generate(b, PROMPT, **kwargs).token_ids
            for name, b in backends.items()}
    plain = steered_generate(backends["torch"], PROMPT, max_new_tokens=8,
                             use_cache=False).token_ids
    assert runs["torch"] != plain
    assert runs["transformer_lens"] == runs["torch"]


def test_steered_generate_applies_the_circuit_ablations(backends: dict[str, Backend]) -> None:
    ablations = [Ablation(layer=1, component="neurons", indices=range(0, 64, 2), mode="scale",
                          factor=4.0),
                 Ablation(layer=0, component="heads", indices=[1, 3], mode="scale", factor=3.0)]
    for name, backend in backends.items():
        plain = backend.generate(PROMPT, max_new_tokens=8, use_cache=False).token_ids
        with backend.ablating(ablations):
            direct = backend.generate(PROMPT, max_new_tokens=8, use_cache=False).token_ids
        via = steered_generate(backend, PROMPT, ablations=ablations, max_new_tokens=8,
                               use_cache=False).token_ids
        assert direct != plain, name
        assert via == direct, name


def test_steered_generate_adds_exactly_the_steering_vector(backends: dict[str, Backend]) -> None:
    # Independent path: the same edit built by hand from the set's arrays.
    vs = tiny_vectors()
    backend = backends["torch"]
    n = prompt_length(backend, PROMPT)
    by_hand = torch.as_tensor(2.0 * 4.0 * vs.directions[0, 1]
                              / np.linalg.norm(vs.directions[0, 1]))
    with backend.editing([Edit(site=Site(layer=1), vector=by_hand, start=n)]):
        expected = backend.generate(PROMPT, max_new_tokens=8).token_ids
    got = steered_generate(backend, PROMPT, vectors=vs, alphas={"a": 4.0}, layers=[1],
                           positions="generated", max_new_tokens=8).token_ids
    plain = backend.generate(PROMPT, max_new_tokens=8).token_ids
    assert got == expected
    assert got != plain
