"""Hooked-backend gaps found by mutation testing (benchmarks/mutants.py): chat prompts
(one BOS), sampling (temperature; a model's own top_k/top_p left out), length-sorted
batches, the trace's sites, observing a positional call, ``resid_pre``/``resid_mid``
edits when a block gets its input by keyword, edit positions from each row's position_ids,
the generated text, the mean-ablation width check, and the weight maps.

Expected values come from the tokenizer, the model's own weights or greedy decoding,
never from the function under test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from amygdala._types import Point, Site
from amygdala.backends._registry import Ablation, Backend, Edit, get_backend
from amygdala.errors import DimensionMismatchError, UnknownSiteError
from tests.conftest import tiny_llama

PROMPT = "The cat sat"
# A chat template of our own: the tiny byte tokenizer ships without one.
TEMPLATE = ("{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}"
            "{% if add_generation_prompt %}A:{% endif %}")


@pytest.fixture(scope="module")
def backend() -> Backend:
    loaded = tiny_llama()
    loaded.tokenizer.chat_template = TEMPLATE
    return get_backend("torch", loaded)


def test_chat_prompts_use_the_template_with_the_generation_prompt(backend: Backend) -> None:
    tok: Any = backend.tokenizer
    chat = tok("<<The cat sat>>A:", add_special_tokens=False)["input_ids"]
    plain = tok(PROMPT)["input_ids"]
    assert backend.prompt_ids(PROMPT, chat=True)[0].tolist() == chat
    assert backend.prompt_ids(PROMPT)[0].tolist() == plain
    assert chat != plain


def test_sampling_at_a_tiny_temperature_is_greedy(backend: Backend) -> None:
    greedy = backend.generate(PROMPT, max_new_tokens=6).token_ids
    cold = backend.generate(PROMPT, max_new_tokens=6, do_sample=True, temperature=1e-3,
                            seed=1).token_ids
    hot = backend.generate(PROMPT, max_new_tokens=6, do_sample=True, temperature=1.0,
                           seed=1).token_ids
    assert cold == greedy
    assert hot != greedy  # the test can tell a temperature that is ignored


def test_sampling_ignores_the_top_k_and_top_p_a_model_ships_with(backend: Backend) -> None:
    # A shipped generation_config.json often sets top_k/top_p; generate samples from
    # softmax(logits / temperature) alone. Expected tokens: torch.multinomial by hand.
    model: Any = backend.loaded.model  # type: ignore[attr-defined]
    ids = backend.prompt_ids(PROMPT)
    with torch.inference_mode():
        logits = model(ids).logits[0, -1]
    config = model.generation_config
    saved = (config.top_k, config.top_p)
    config.top_k, config.top_p = 3, 0.05
    try:
        for temperature in (1.0, 0.7):
            got, want = [], []
            for seed in range(12):
                out = backend.generate(PROMPT, max_new_tokens=1, do_sample=True,
                                       temperature=temperature, seed=seed)
                got.append(out.token_ids[-1])
                torch.manual_seed(seed)
                probs = torch.softmax(logits / temperature, dim=-1)
                want.append(int(torch.multinomial(probs, 1)))
            assert got == want
            top3 = set(torch.topk(logits, 3).indices.tolist())
            assert set(want) - top3  # the draw can tell a top_k of 3 that leaks in
    finally:
        config.top_k, config.top_p = saved


def test_chat_prompts_keep_one_bos_when_the_tokenizer_adds_one() -> None:
    # Chat templates write the BOS themselves; a tokenizer that also adds one (Llama's
    # does) must not add a second when the templated text is tokenized.
    from tokenizers import processors

    loaded = tiny_llama()
    tok: Any = loaded.tokenizer
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)])
    tok.chat_template = "{{ bos_token }}" + TEMPLATE
    bos_backend = get_backend("torch", loaded)
    chat = [bos] + tok("<<The cat sat>>A:", add_special_tokens=False)["input_ids"]
    plain = [bos] + tok(PROMPT, add_special_tokens=False)["input_ids"]
    assert bos_backend.prompt_ids(PROMPT, chat=True)[0].tolist() == chat
    assert bos_backend.prompt_ids(PROMPT)[0].tolist() == plain


def test_batches_are_sorted_by_token_length(backend: Backend) -> None:
    texts = ["a much longer text than the others", "hi", "medium text", "hi", "x"]
    tok: Any = backend.tokenizer
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    batches = [(list(idx), ids) for idx, ids, _mask in backend.iter_batches(texts, 2)]
    assert [i for idx, _ in batches for i in idx] == order
    for idx, ids in batches:
        assert ids.shape[1] == max(lengths[i] for i in idx)


def test_a_trace_names_its_sites(backend: Backend) -> None:
    sites = [Site(layer=2), Site(layer=0, point="resid_mid")]
    with backend.tracing(sites) as trace:
        backend.logits([PROMPT])
    assert trace.sites == tuple(sites)
    assert [len(trace.steps[s]) for s in sites] == [1, 1]


def test_observing_sees_ids_passed_positionally(backend: Backend) -> None:
    seen: list[Any] = []
    ids = torch.tensor([[1, 40, 41, 42]])
    with backend.observing([Site(layer=1)], lambda i, acts: seen.append(i)):
        with torch.inference_mode():
            backend.loaded.model(ids)  # type: ignore[attr-defined]
    assert len(seen) == 1 and seen[0] is not None
    assert seen[0].tolist() == ids.tolist()


@pytest.mark.parametrize("point", ["resid_pre", "resid_mid"])
def test_an_edit_works_when_the_block_gets_its_input_by_keyword(
        backend: Backend, point: Point) -> None:
    # The HF families mapped today pass the block input positionally; a user map may not.
    model: Any = backend.loaded.model  # type: ignore[attr-defined]
    layer = model.model.layers[0]
    torch.manual_seed(0)
    h = torch.randn(1, 5, backend.dims.d_model)
    position_ids = torch.arange(5).unsqueeze(0)
    pe = model.model.rotary_emb(h, position_ids)
    vector = torch.ones(backend.dims.d_model)

    def run(by_keyword: bool) -> torch.Tensor:
        with torch.inference_mode():
            if by_keyword:
                out = layer(hidden_states=h, position_embeddings=pe, attention_mask=None,
                            position_ids=position_ids)
            else:
                out = layer(h, position_embeddings=pe, attention_mask=None,
                            position_ids=position_ids)
        return out[0] if isinstance(out, tuple) else out

    plain = run(by_keyword=True)
    with backend.editing([Edit(site=Site(layer=0, point=point), vector=vector)]):
        positional, keyword = run(by_keyword=False), run(by_keyword=True)
    torch.testing.assert_close(keyword, positional)
    assert not torch.allclose(keyword, plain)


def test_weight_maps_are_the_model_weights_in_residual_orientation(backend: Backend) -> None:
    model: Any = backend.loaded.model  # type: ignore[attr-defined]
    d = backend.dims
    for layer in (0, 2):
        block = model.model.layers[layer]
        down = block.mlp.down_proj.weight.detach()  # [d_model, d_mlp] (out, in)
        o_proj = block.self_attn.o_proj.weight.detach()  # [d_model, heads * d_head]
        np.testing.assert_array_equal(backend.mlp_out_weights(layer).numpy(),
                                      down.T.numpy())
        heads = backend.head_out_weights(layer)
        assert tuple(heads.shape) == (d.n_heads, d.d_head, d.d_model)
        for head in range(d.n_heads):
            np.testing.assert_array_equal(
                heads[head].numpy(), o_proj[:, head * d.d_head:(head + 1) * d.d_head].T.numpy())
    with pytest.raises(UnknownSiteError):
        backend.head_out_weights(d.n_layers)


def test_edit_positions_follow_the_position_ids_of_each_row(backend: Backend) -> None:
    # A batched call that passes position_ids (left padding): an edit on absolute
    # positions [2, 4) lands on tokens 2-3 of the unpadded row and 4-5 of the row padded
    # by two. resid_pre of layer 1 is what layer 0 wrote, so it shows the edit alone.
    model: Any = backend.loaded.model  # type: ignore[attr-defined]
    ids = torch.tensor([[40, 41, 42, 43, 44, 45], [0, 0, 50, 51, 52, 53]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 3]])
    vector = torch.linspace(-1.0, 1.0, backend.dims.d_model)
    seen = Site(layer=1, point="resid_pre")

    def run(edits: list[Edit]) -> torch.Tensor:
        with backend.tracing([seen]) as trace, backend.editing(edits), torch.inference_mode():
            model(input_ids=ids, attention_mask=mask, position_ids=position_ids)
        return trace.steps[seen][0]

    shift = run([Edit(site=Site(layer=0), vector=vector, start=2, stop=4)]) - run([])
    expected = torch.zeros(2, 6, backend.dims.d_model)
    expected[0, 2:4] = vector
    expected[1, 4:6] = vector
    torch.testing.assert_close(shift, expected, rtol=0, atol=1e-5)


def test_generated_text_is_the_decoded_new_tokens(backend: Backend) -> None:
    out = backend.generate(PROMPT, max_new_tokens=5)
    tok: Any = backend.tokenizer
    new = list(out.token_ids[out.prompt_len:])
    assert len(new) == 5
    assert out.text == tok.decode(new, skip_special_tokens=True)
    assert out.prompt_len == len(tok(PROMPT)["input_ids"])


def test_mean_ablation_with_means_of_the_wrong_width_names_both_shapes(
        backend: Backend) -> None:
    bad = Ablation(layer=0, component="neurons", indices=[0], mode="mean",
                   means=torch.zeros(5))
    with pytest.raises(DimensionMismatchError,
                       match=rf"needs means of shape \({backend.dims.d_mlp},\), got \(5,\)$"):
        backend.ablating([bad])


def test_edit_positions_continue_from_a_cache_passed_by_keyword(backend: Backend) -> None:
    # A decode call with only a KV cache (no position_ids): its tokens sit after the
    # cached ones, so an edit at absolute position 5 lands on the second new token.
    from transformers import DynamicCache

    model: Any = backend.loaded.model  # type: ignore[attr-defined]
    ids = torch.tensor([[40, 41, 42, 43, 44, 45]])
    vector = torch.linspace(1.0, -1.0, backend.dims.d_model)
    seen = Site(layer=1, point="resid_pre")

    def decode_step(edits: list[Edit]) -> torch.Tensor:
        cache = DynamicCache(config=model.config)
        with backend.editing(edits), torch.inference_mode():
            model(input_ids=ids[:, :4], cache=cache, use_cache=True)
            with backend.tracing([seen]) as trace:
                model(input_ids=ids[:, 4:], cache=cache, use_cache=True)
        return trace.steps[seen][0]

    shift = decode_step([Edit(site=Site(layer=0), vector=vector, start=5, stop=6)])
    shift = shift - decode_step([])
    expected = torch.zeros(1, 2, backend.dims.d_model)
    expected[0, 1] = vector
    torch.testing.assert_close(shift, expected, rtol=0, atol=1e-5)


def test_mean_ablation_on_a_bfloat16_model_writes_the_means() -> None:
    # Means come as float32; a bfloat16 model's activations must get them in bfloat16
    # (torch refuses to index-assign across dtypes).
    loaded = tiny_llama()
    loaded.model.to(torch.bfloat16)  # type: ignore[attr-defined]
    half = get_backend("torch", loaded)
    means = torch.linspace(-2.0, 2.0, half.dims.d_mlp)
    site = Site(layer=1, point="mlp_neurons")
    ablation = Ablation(layer=1, component="neurons", indices=[3, 7], mode="mean", means=means)
    with half.ablating([ablation]), half.tracing([site]) as trace:
        half.logits([PROMPT])
    acts = trace.steps[site][0]
    assert acts.dtype == torch.bfloat16
    torch.testing.assert_close(acts[..., [3, 7]].float(),
                               means[[3, 7]].to(torch.bfloat16).float().expand(*acts.shape[:2], 2))


def test_forward_stops_at_the_site_and_returns_its_activation(backend: Backend) -> None:
    # forward(stop_at=site) returns what a trace of a full pass records there, and the
    # layers after it never run (a trace at the last layer sees nothing).
    ids = torch.tensor([[40, 41, 42, 43, 44]])
    mask = torch.ones_like(ids)
    site = Site(layer=1, point="resid_pre")
    last = Site(layer=backend.dims.n_layers - 1, point="resid_post")
    with backend.tracing([site]) as full:
        backend.forward(ids, mask)
    with backend.tracing([last]) as after:
        got = backend.forward(ids, mask, stop_at=site)
    torch.testing.assert_close(got, full.steps[site][0], rtol=0, atol=0)
    assert after.steps[last] == []
