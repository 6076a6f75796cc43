"""Backends: the conformance suite (`amygdala.testing`) on every tiny model, the registry,
and checks that are specific to one architecture or to SmolLM2."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import attrs
import pytest
import torch

from amygdala._types import POINTS, Pooling, Site
from amygdala.backends._protocol import Edit
from amygdala.backends._registry import (
    BACKENDS,
    Ablation,
    Backend,
    BackendSpec,
    available_backends,
    get_backend,
    register_backend,
)
from amygdala.errors import BackendError, MissingDependencyError, UnsupportedArchitectureError
from amygdala.testing import CHECKS, PARITY_CHECKS, BackendConformance, check_backend
from tests.conftest import BACKEND_NAMES, all_arch_params, tiny_arch, tiny_llama

TEXTS = ["The kettle clicked off.", "He read the letter twice, then folded it.", "Rain."]


@pytest.fixture(params=all_arch_params())
def tiny_backend(request: pytest.FixtureRequest) -> Backend:
    """Overrides the conftest fixture: both backends on a tiny Llama, and the torch backend
    on a tiny random model of every architecture it maps (tests/tiny_models.py)."""
    name, arch = request.param
    return get_backend(name, tiny_arch(arch))


class BoomError(RuntimeError):
    pass


# ----- the conformance suite ------------------------------------------------------------


@pytest.mark.parametrize("param", all_arch_params())
def test_conformance_suite(param: tuple[str, str]) -> None:
    """Every check of `amygdala.testing` on each backend and tiny architecture; the
    TransformerLens backend also against the torch backend on the same weights."""
    name, arch = param
    reference = None
    if name != "torch":
        def reference() -> Backend:
            return get_backend("torch", tiny_arch(arch))
    check_backend(lambda: get_backend(name, tiny_arch(arch)), reference=reference)


class _Delegate:
    """A backend that forwards everything to a real one; subclasses break one member."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _EditsNothing(_Delegate):
    def editing(self, edits: Sequence[Edit]) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class _LeavesEditHooks(_Delegate):
    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.leaked: list[contextlib.AbstractContextManager[None]] = []

    def editing(self, edits: Sequence[Edit]) -> contextlib.AbstractContextManager[None]:
        block = self.inner.editing(edits)
        block.__enter__()  # never exited (and kept alive): its hooks stay
        self.leaked.append(block)
        return contextlib.nullcontext()


class _NeverStops(_Delegate):
    def forward(self, ids: torch.Tensor, mask: torch.Tensor, *,
                stop_at: Site | None = None) -> torch.Tensor:
        if stop_at is None:
            return self.inner.forward(ids, mask)
        with self.inner.tracing([stop_at]) as trace:
            self.inner.forward(ids, mask)  # runs every layer
        return trace.stacked(stop_at)


class _DropsTheStoppedSite(_Delegate):
    def forward(self, ids: torch.Tensor, mask: torch.Tensor, *,
                stop_at: Site | None = None) -> torch.Tensor:
        if stop_at is None:
            return self.inner.forward(ids, mask)
        earlier = Site(layer=max(0, stop_at.layer - 1), point="resid_pre")
        return self.inner.forward(ids, mask, stop_at=earlier)


class _LogitsIgnoreIds(_Delegate):
    def logits(self, inputs: Any, mask: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            inputs = inputs[:, :-1]  # drops the last token
        return self.inner.logits(inputs, mask)


@pytest.mark.parametrize(("broken", "failing"), [
    (_EditsNothing, "edits_at_every_residual_point"),
    (_LeavesEditHooks, "hooks_removed_after_exceptions"),
    (_NeverStops, "forward_stop_at"),
    (_DropsTheStoppedSite, "forward_stop_at"),
    (_LogitsIgnoreIds, "logits_of_ids"),
])
def test_the_suite_fails_a_broken_backend(broken: type[_Delegate], failing: str) -> None:
    def make() -> Backend:
        return cast(Backend, broken(get_backend("torch", tiny_llama())))

    with pytest.raises(AssertionError, match=rf"- {failing}: "):
        check_backend(make, only=[failing])
    # The same backend unbroken passes the check.
    check_backend(lambda: get_backend("torch", tiny_llama()), only=[failing])


def test_the_parity_checks_fail_against_another_model() -> None:
    with pytest.raises(AssertionError, match=r"- parity_capture: capture at resid_pre\.0 "):
        check_backend(lambda: get_backend("torch", tiny_llama(seed=0)),
                      reference=lambda: get_backend("torch", tiny_llama(seed=1)),
                      only=["parity_capture"])


def test_check_backend_rejects_an_unknown_check() -> None:
    with pytest.raises(KeyError, match="unknown checks"):
        check_backend(lambda: get_backend("torch", tiny_llama()), only=["no_such_check"])


class TestConformanceAsPytestClass(BackendConformance):
    """The pytest base class runs the same checks (here once, on the tiny Llama)."""

    def make_backend(self) -> Backend:
        return get_backend("torch", tiny_llama())


def test_the_pytest_class_has_a_test_per_check() -> None:
    tests = {n[5:] for n in dir(BackendConformance) if n.startswith("test_")}
    assert tests == set(CHECKS) | set(PARITY_CHECKS)


def test_forward_stop_at_returns_the_site_and_runs_no_later_layer() -> None:
    backend = get_backend("torch", tiny_llama())
    tok: Any = backend.tokenizer
    ids = torch.tensor([tok(TEXTS[1])["input_ids"]])
    mask = torch.ones_like(ids)
    later: list[int] = []
    layers = backend.loaded.model.model.layers  # type: ignore[attr-defined]
    handle = layers[2].register_forward_hook(lambda *_: later.append(1))
    try:
        got = backend.forward(ids, mask, stop_at=Site(layer=1, point="resid_mid"))
        assert later == []
        # Independent: the Hugging Face model's own hidden states. resid_pre.2 = output of
        # block 1; resid_mid.1 = resid_pre.1 + attention output of block 1.
        out = backend.loaded.model(input_ids=ids, output_hidden_states=True)  # type: ignore[attr-defined]
        assert later == [1]
    finally:
        handle.remove()
    attn: list[torch.Tensor] = []
    grab = layers[1].self_attn.register_forward_hook(lambda _m, _a, o: attn.append(o[0]))
    try:
        backend.loaded.model(input_ids=ids)  # type: ignore[attr-defined]
    finally:
        grab.remove()
    torch.testing.assert_close(got, out.hidden_states[1] + attn[0])


# ----- the registry ---------------------------------------------------------------------


def test_registry_lists_both_backends() -> None:
    assert set(available_backends()) == set(BACKEND_NAMES)
    for name, spec in BACKENDS.items():
        assert spec.name == name and spec.install_hint.startswith("pip install")


def test_unknown_backend_names_the_valid_ones() -> None:
    with pytest.raises(BackendError, match="expected one of"):
        get_backend("jax", tiny_llama())


def test_a_missing_requirement_raises_with_the_install_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = attrs.evolve(BACKENDS["torch"], name="fake", requires=("no_such_module_amygdala",),
                        install_hint="pip install fake-backend")
    monkeypatch.setitem(BACKENDS, "fake", spec)
    with pytest.raises(MissingDependencyError,
                       match=r"no_such_module_amygdala.*`pip install fake-backend`"):
        get_backend("fake", tiny_llama())
    assert spec.missing() is not None and BACKENDS["torch"].missing() is None


def test_register_backend_adds_one_and_refuses_a_duplicate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("amygdala.backends._registry.BACKENDS", dict(BACKENDS))
    from amygdala.backends import _registry

    spec = attrs.evolve(BACKENDS["torch"], name="mine", description="my backend")
    register_backend(spec)
    assert _registry.available_backends()["mine"] == "my backend"
    assert _registry.get_backend("mine", tiny_llama()).dims.n_layers == 3
    with pytest.raises(BackendError, match="already registered"):
        register_backend(spec)
    register_backend(attrs.evolve(spec, description="new"), replace=True)
    assert _registry.available_backends()["mine"] == "new"


@pytest.mark.parametrize("target", ["no_colon", "module:", ":Class", "a.b:not-an-identifier"])
def test_a_spec_needs_a_module_and_a_class(target: str) -> None:
    with pytest.raises(BackendError, match=r"package\.module:ClassName"):
        BackendSpec(name="x", target=target)


def test_unsupported_architecture_lists_supported() -> None:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    model = GPTNeoForCausalLM(GPTNeoConfig(vocab_size=50, hidden_size=16, num_layers=2,
                                           num_heads=2, attention_types=[[["global"], 2]]))
    loaded = tiny_llama()
    loaded = type(loaded)(model=model, tokenizer=loaded.tokenizer, model_id="neo",
                          fingerprint="x", source="")
    with pytest.raises(UnsupportedArchitectureError, match="LlamaForCausalLM"):
        get_backend("torch", loaded)


def test_identity_comes_from_the_loaded_model() -> None:
    loaded = tiny_llama()
    backend = get_backend("torch", loaded)
    assert backend.model_id == "tiny-llama"
    assert backend.fingerprint == loaded.fingerprint and len(backend.fingerprint) == 16


# ----- checks that hold only for some architectures -------------------------------------


def test_neuron_write_direction_matches_weights(tiny_backend: Backend) -> None:
    # Scaling neuron 3 by 2 adds exactly activation x W_down[3] to resid_post.
    layout = getattr(getattr(tiny_backend, "arch", None), "layout", "pre_norm")
    if layout in ("sandwich_norm", "post_norm"):
        pytest.skip("the MLP output is normed before the residual add (Gemma 2/3, OLMo 2); "
                    "tests/test_architectures.py checks the write through that norm")
    site, neurons = Site(layer=1), Site(layer=1, point="mlp_neurons")
    base = tiny_backend.capture(TEXTS, [site, neurons], Pooling())
    with tiny_backend.ablating([Ablation(layer=1, component="neurons", indices=[3],
                                         mode="scale", factor=2.0)]):
        after = tiny_backend.capture(TEXTS, [site], Pooling())[site]
    expected = base[site] + base[neurons][:, 3:4] * tiny_backend.mlp_out_weights(1)[3]
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4)


def test_logits_of_generated_ids_score_exactly_those_tokens() -> None:
    # Independent path: the Hugging Face model on the same ids.
    backend = get_backend("torch", tiny_llama())
    generation = backend.generate("abc", max_new_tokens=5)
    ids = list(generation.token_ids)
    got = backend.logits([ids, ids[:3]])
    model = backend.loaded.model  # type: ignore[attr-defined]
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits[0]
        short = model(input_ids=torch.tensor([ids[:3]])).logits[0]
    torch.testing.assert_close(got[0], full)
    torch.testing.assert_close(got[1, :3], short)
    assert not got[1, 3:].any()
    with pytest.raises(ValueError, match="mask= goes with a tensor"):
        backend.logits([ids], torch.ones(1, len(ids)))


# ----- the real default model --------------------------------------------------------

SMOL_TEXTS = [
    "The kettle clicked off and she poured the water slowly into the blue mug.",
    "He read the letter twice, then folded it along the old creases.",
    "The build finished at noon.",
]


@pytest.mark.smollm
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_smollm_conformance(smollm_factory: Callable[[str], Backend], name: str) -> None:
    backend = smollm_factory(name)
    assert backend.dims.n_layers == 30 and backend.dims.d_model == 576
    before = backend.logits(SMOL_TEXTS)
    with pytest.raises(BoomError), backend.editing(
            [Edit(site=Site(layer=10), vector=torch.ones(576) * 50)]):
        raise BoomError
    with backend.editing([Edit(site=Site(layer=10, point="resid_mid"), vector=torch.zeros(576))]):
        torch.testing.assert_close(backend.logits(SMOL_TEXTS), before)
    torch.testing.assert_close(backend.logits(SMOL_TEXTS), before)
    tok: Any = backend.tokenizer
    ids = [tok(t)["input_ids"] for t in SMOL_TEXTS]
    torch.testing.assert_close(backend.logits(ids), before)


@pytest.mark.smollm
def test_smollm_parity(smollm_factory: Callable[[str], Backend]) -> None:
    torch_backend, lens = smollm_factory("torch"), smollm_factory("transformer_lens")
    sites = [Site(layer=layer, point=p) for layer in (0, 14, 29) for p in POINTS]
    a = torch_backend.capture(SMOL_TEXTS, sites, Pooling(), batch_size=2)
    b = lens.capture(SMOL_TEXTS, sites, Pooling(), batch_size=2)
    for site in sites:
        rel = (a[site] - b[site]).abs().max() / a[site].abs().max()
        assert rel < 1e-4, f"{site}: relative difference {rel:.2e}"
    ablations = [Ablation(layer=3, component="heads", indices=[1, 4]),
                 Ablation(layer=6, component="neurons", indices=[5, 10, 100], mode="scale",
                          factor=3.0)]
    read = [Site(layer=20)]
    with torch_backend.ablating(ablations):
        ea = torch_backend.capture(SMOL_TEXTS, read, Pooling())[read[0]]
    with lens.ablating(ablations):
        eb = lens.capture(SMOL_TEXTS, read, Pooling())[read[0]]
    assert (ea - eb).abs().max() / ea.abs().max() < 1e-4
    assert torch_backend.generate("The weather today is", max_new_tokens=8).text == \
        lens.generate("The weather today is", max_new_tokens=8).text
