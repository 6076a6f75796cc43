"""The torch backend's architecture maps: what resid_mid is in each layout, user maps, errors.

The conformance suite (tests/test_backends.py) runs on every architecture through the
``tiny_backend`` fixture; these tests check the per-layout meaning of the sites against
the Hugging Face modules themselves.
"""

from __future__ import annotations

import attrs
import pytest
import torch

from amygdala._types import Site
from amygdala.backends import ARCHITECTURES, ArchitectureMap, register_architecture
from amygdala.backends._architectures import _USER
from amygdala.backends._loading import LoadedModel, fingerprint
from amygdala.backends._registry import Edit, get_backend
from amygdala.backends.torch_hooks import TorchHooksBackend
from amygdala.errors import BackendError, UnsupportedArchitectureError
from tests.conftest import tiny_arch, tiny_llama
from tests.tiny_models import TINY_ARCHS

TEXT = ["He read the letter twice, then folded it."]
LAYER = 1


def _mlp_write(backend: TorchHooksBackend, neurons: torch.Tensor) -> torch.Tensor:
    """What the block adds to the residual stream after the MLP, from its own modules."""
    block = backend._layers[LAYER]
    with torch.no_grad():
        out = block.get_submodule(backend.arch.mlp_out)(neurons)
        if backend.arch.layout in ("sandwich_norm", "post_norm"):
            out = block.post_feedforward_layernorm(out)
    return out  # type: ignore[no-any-return]


def _sites(backend: TorchHooksBackend) -> dict[str, torch.Tensor]:
    sites = [Site(layer=LAYER, point=p)
             for p in ("resid_pre", "resid_mid", "resid_post", "mlp_neurons")]
    tokens = backend.capture_tokens(TEXT, sites)[0]
    return {s.point: tokens[s] for s in sites}


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_resid_mid_is_what_the_mlp_is_added_to(arch: str) -> None:
    backend = get_backend("torch", tiny_arch(arch))
    assert isinstance(backend, TorchHooksBackend)
    acts = _sites(backend)
    torch.testing.assert_close(acts["resid_post"] - acts["resid_mid"],
                               _mlp_write(backend, acts["mlp_neurons"]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_resid_mid_write_moves_the_stream(arch: str) -> None:
    backend = get_backend("torch", tiny_arch(arch))
    assert isinstance(backend, TorchHooksBackend)
    plain = _sites(backend)
    vector = torch.randn(backend.dims.d_model, generator=torch.Generator().manual_seed(3))
    with backend.editing([Edit(site=Site(layer=LAYER, point="resid_mid"), vector=vector)]):
        edited = _sites(backend)
    torch.testing.assert_close(edited["resid_pre"], plain["resid_pre"])
    # The edit lands in the stream: resid_post = old resid_mid + v + the MLP's write.
    expected = plain["resid_mid"] + vector + _mlp_write(backend, edited["mlp_neurons"])
    torch.testing.assert_close(edited["resid_post"], expected, rtol=1e-4, atol=1e-5)
    moved = not torch.allclose(edited["mlp_neurons"], plain["mlp_neurons"])
    # A parallel block's MLP reads resid_pre, so a resid_mid edit does not reach it.
    assert moved == (backend.arch.layout != "parallel")


def test_every_listed_family_has_a_map_and_a_tiny_model() -> None:
    assert set(TINY_ARCHS.values()) <= set(ARCHITECTURES)
    for name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                 "Qwen3ForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
                 "Phi3ForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM", "GPT2LMHeadModel",
                 "GPTNeoXForCausalLM"):
        assert name in ARCHITECTURES


def _gpt_neo() -> LoadedModel:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(0)
    tok = tiny_llama().tokenizer
    config = GPTNeoConfig(vocab_size=len(tok), hidden_size=32, num_layers=3, num_heads=4,
                          intermediate_size=64, attention_types=[[["global"], 3]],
                          max_position_embeddings=256, bos_token_id=1, eos_token_id=1,
                          pad_token_id=0)
    config._attn_implementation = "eager"
    model = GPTNeoForCausalLM(config).eval()
    return LoadedModel(model=model, tokenizer=tok, model_id="neo",
                       fingerprint=fingerprint(model), source="")


NEO_MAP = ArchitectureMap(blocks="transformer.h", attn="attn", heads="attn.attention.out_proj",
                          mlp_in="mlp", mlp_out="mlp.c_proj")


def test_unknown_architecture_says_how_to_add_a_map() -> None:
    with pytest.raises(UnsupportedArchitectureError,
                       match=r"GPTNeoForCausalLM.*LlamaForCausalLM.*architecture=ArchitectureMap"):
        get_backend("torch", _gpt_neo())


def test_a_user_map_makes_an_unknown_architecture_work() -> None:
    backend = get_backend("torch", _gpt_neo(), architecture=NEO_MAP)
    assert isinstance(backend, TorchHooksBackend)
    acts = _sites(backend)
    torch.testing.assert_close(acts["resid_post"] - acts["resid_mid"],
                               _mlp_write(backend, acts["mlp_neurons"]), rtol=1e-4, atol=1e-5)


def test_registered_map_is_used_for_its_class() -> None:
    try:
        register_architecture("GPTNeoForCausalLM", NEO_MAP)
        backend = get_backend("torch", _gpt_neo())
        assert isinstance(backend, TorchHooksBackend) and backend.arch == NEO_MAP
    finally:
        _USER.pop("GPTNeoForCausalLM", None)


def test_a_wrong_path_names_the_field_and_the_modules_there() -> None:
    bad = attrs.evolve(ARCHITECTURES["LlamaForCausalLM"], mlp_out="mlp.w2")
    with pytest.raises(UnsupportedArchitectureError, match=r"mlp_out='mlp\.w2'.*down_proj"):
        get_backend("torch", tiny_llama(), architecture=bad)
    with pytest.raises(UnsupportedArchitectureError, match=r"blocks='layers'.*model, lm_head"):
        get_backend("torch", tiny_llama(),
                    architecture=attrs.evolve(bad, blocks="layers"))


def test_architecture_is_for_the_torch_backend_only() -> None:
    with pytest.raises(BackendError, match="torch backend"):
        get_backend("transformer_lens", tiny_llama(),
                    architecture=ARCHITECTURES["LlamaForCausalLM"])


def test_map_paths_must_be_dotted_module_paths() -> None:
    with pytest.raises(ValueError, match="dotted module path"):
        ArchitectureMap(blocks="model.layers", attn="", heads="o", mlp_in="m", mlp_out="d")


@pytest.mark.parametrize("arch", [a for a in TINY_ARCHS if a != "llama"])
def test_torch_maps_agree_with_transformer_lens_where_the_bridge_wraps_the_model(
        arch: str) -> None:
    # An independent reading of every site: TransformerLens's own hook points
    # (resid_mid = hook_resid_pre + hook_attn_out) on a second copy of the same weights.
    from amygdala._types import POINTS, Pooling

    try:
        lens = get_backend("transformer_lens", tiny_arch(arch))
    except BackendError as exc:
        pytest.skip(f"TransformerLens cannot wrap {arch}: {str(exc)[:80]}")
    ours = get_backend("torch", tiny_arch(arch))
    sites = [Site(layer=LAYER, point=p) for p in POINTS]
    a = ours.capture(TEXT, sites, Pooling())
    b = lens.capture(TEXT, sites, Pooling())
    for site in sites:
        torch.testing.assert_close(a[site], b[site], rtol=1e-4, atol=1e-5)
