"""Backend conformance suite: every backend must pass these, on a tiny model and on SmolLM2."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from amygdala._types import POINTS, Pooling, Site
from amygdala.backends._registry import Ablation, Backend, Edit, available_backends, get_backend
from amygdala.errors import (
    BackendError,
    DimensionMismatchError,
    UnknownSiteError,
    UnsupportedArchitectureError,
)
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


def test_registry_lists_both_backends() -> None:
    assert set(available_backends()) == set(BACKEND_NAMES)


def test_unknown_backend_names_the_valid_ones() -> None:
    with pytest.raises(BackendError, match="expected one of"):
        get_backend("jax", tiny_llama())


def test_unsupported_architecture_lists_supported() -> None:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    model = GPTNeoForCausalLM(GPTNeoConfig(vocab_size=50, hidden_size=16, num_layers=2,
                                           num_heads=2, attention_types=[[["global"], 2]]))
    loaded = tiny_llama()
    loaded = type(loaded)(model=model, tokenizer=loaded.tokenizer, model_id="neo",
                          fingerprint="x", source="")
    with pytest.raises(UnsupportedArchitectureError, match="LlamaForCausalLM"):
        get_backend("torch", loaded)


def test_capture_shapes_and_dtypes(tiny_backend: Backend) -> None:
    dims = tiny_backend.dims
    sites = [Site(layer=1, point=p) for p in POINTS]
    out = tiny_backend.capture(TEXTS, sites, Pooling(), batch_size=2)
    for site in sites:
        assert out[site].shape == (len(TEXTS), dims.width(site.point))
        assert out[site].dtype == torch.float32
        assert torch.isfinite(out[site]).all()


def test_capture_does_not_depend_on_batching(tiny_backend: Backend) -> None:
    sites = [Site(layer=2)]
    one = tiny_backend.capture(TEXTS, sites, Pooling(kind="last"), batch_size=1)
    many = tiny_backend.capture(TEXTS, sites, Pooling(kind="last"), batch_size=3)
    torch.testing.assert_close(one[sites[0]], many[sites[0]], rtol=1e-5, atol=1e-5)


def test_pooled_mean_matches_token_capture(tiny_backend: Backend) -> None:
    site = Site(layer=0, point="resid_mid")
    pooled = tiny_backend.capture(TEXTS, [site], Pooling(skip=2))[site]
    tokens = tiny_backend.capture_tokens(TEXTS, [site])
    for i, per_text in enumerate(tokens):
        torch.testing.assert_close(pooled[i], per_text[site][2:].mean(0), rtol=1e-5, atol=1e-5)


def test_identity_edit_leaves_logits_unchanged(tiny_backend: Backend) -> None:
    before = tiny_backend.logits(TEXTS)
    zero = torch.zeros(tiny_backend.dims.d_model)
    edits = [Edit(site=Site(layer=layer, point=p), vector=zero)
             for layer in range(tiny_backend.dims.n_layers)
             for p in ("resid_pre", "resid_mid", "resid_post")]
    with tiny_backend.editing(edits):
        during = tiny_backend.logits(TEXTS)
    torch.testing.assert_close(during, before)


def test_edit_changes_logits_and_hooks_are_removed(tiny_backend: Backend) -> None:
    before = tiny_backend.logits(TEXTS)
    vector = torch.ones(tiny_backend.dims.d_model)
    with tiny_backend.editing([Edit(site=Site(layer=1), vector=vector)]):
        during = tiny_backend.logits(TEXTS)
    assert not torch.allclose(during, before)
    torch.testing.assert_close(tiny_backend.logits(TEXTS), before)


@pytest.mark.parametrize("block", ["editing", "ablating", "tracing"])
def test_hooks_are_removed_after_an_exception(tiny_backend: Backend, block: str) -> None:
    before = tiny_backend.logits(TEXTS)
    contexts = {
        "editing": lambda: tiny_backend.editing(
            [Edit(site=Site(layer=0), vector=torch.ones(tiny_backend.dims.d_model))]),
        "ablating": lambda: tiny_backend.ablating(
            [Ablation(layer=0, component="heads", indices=[0, 1])]),
        "tracing": lambda: tiny_backend.tracing([Site(layer=0)]),
    }
    with pytest.raises(BoomError), contexts[block]():
        raise BoomError("inside the block")
    torch.testing.assert_close(tiny_backend.logits(TEXTS), before)


def test_edit_positions_are_absolute(tiny_backend: Backend) -> None:
    site = Site(layer=0)
    vector = torch.ones(tiny_backend.dims.d_model)
    with tiny_backend.editing([Edit(site=site, vector=vector, start=3)]):
        tokens = tiny_backend.capture_tokens(TEXTS[1:2], [Site(layer=0)])[0][site]
    plain = tiny_backend.capture_tokens(TEXTS[1:2], [site])[0][site]
    torch.testing.assert_close(tokens[:3], plain[:3])
    torch.testing.assert_close(tokens[3:], plain[3:] + 1.0)


def test_neuron_ablation_changes_nothing_upstream(tiny_backend: Backend) -> None:
    sites = [Site(layer=layer, point=p) for layer in range(3) for p in POINTS]
    before = tiny_backend.capture(TEXTS, sites, Pooling())
    with tiny_backend.ablating([Ablation(layer=1, component="neurons", indices=range(10))]):
        after = tiny_backend.capture(TEXTS, sites, Pooling())
    for site in sites:
        upstream = site.layer < 1 or (
            site.layer == 1 and site.point in ("resid_pre", "resid_mid", "attn_heads"))
        if upstream:
            torch.testing.assert_close(after[site], before[site])
    assert not torch.allclose(after[Site(layer=1)], before[Site(layer=1)])
    neurons = after[Site(layer=1, point="mlp_neurons")]
    assert torch.all(neurons[:, :10] == 0)


def test_ablation_modes(tiny_backend: Backend) -> None:
    site = Site(layer=2, point="attn_heads")
    base = tiny_backend.capture(TEXTS, [site], Pooling())[site]
    d_head = tiny_backend.dims.d_head
    means = torch.arange(base.shape[1], dtype=torch.float32)
    with tiny_backend.ablating([Ablation(layer=2, component="heads", indices=[1], mode="scale",
                                         factor=2.0)]):
        scaled = tiny_backend.capture(TEXTS, [site], Pooling())[site]
    torch.testing.assert_close(scaled[:, d_head:2 * d_head], 2 * base[:, d_head:2 * d_head])
    torch.testing.assert_close(scaled[:, :d_head], base[:, :d_head])
    with tiny_backend.ablating([Ablation(layer=2, component="heads", indices=[0], mode="mean",
                                         means=means)]):
        meaned = tiny_backend.capture(TEXTS, [site], Pooling())[site]
    torch.testing.assert_close(meaned[:, :d_head], means[:d_head].expand(len(TEXTS), -1))


def test_per_row_ablation_touches_only_its_rows(tiny_backend: Backend) -> None:
    site = Site(layer=2)
    texts = [TEXTS[1]] * 2
    base = tiny_backend.capture(texts, [site], Pooling())[site]
    with tiny_backend.ablating([Ablation(layer=1, component="heads", indices=[0], rows=(1,))]):
        out = tiny_backend.capture(texts, [site], Pooling(), batch_size=2)[site]
    torch.testing.assert_close(out[0], base[0])
    assert not torch.allclose(out[1], base[1])


def test_bad_sites_and_shapes_raise_typed_errors(tiny_backend: Backend) -> None:
    with pytest.raises(UnknownSiteError, match=r"layers 0\.\.2"):
        tiny_backend.capture(TEXTS, [Site(layer=7)], Pooling())
    with pytest.raises(DimensionMismatchError, match="width 5"):
        tiny_backend.editing([Edit(site=Site(layer=0), vector=torch.ones(5))])
    with pytest.raises(UnknownSiteError, match="out of range"):
        tiny_backend.ablating([Ablation(layer=0, component="heads", indices=[99])])


def test_weights_have_documented_shapes(tiny_backend: Backend) -> None:
    d = tiny_backend.dims
    assert tiny_backend.mlp_out_weights(1).shape == (d.d_mlp, d.d_model)
    assert tiny_backend.head_out_weights(1).shape == (d.n_heads, d.d_head, d.d_model)


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


def test_cached_and_uncached_generation_agree_under_steering(tiny_backend: Backend) -> None:
    vector = torch.randn(tiny_backend.dims.d_model, generator=torch.Generator().manual_seed(1))
    plain = tiny_backend.generate("abc", max_new_tokens=6)
    with tiny_backend.editing([Edit(site=Site(layer=1), vector=vector, start=plain.prompt_len)]):
        cached = tiny_backend.generate("abc", max_new_tokens=6, use_cache=True)
        uncached = tiny_backend.generate("abc", max_new_tokens=6, use_cache=False)
    assert cached.token_ids == uncached.token_ids


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
