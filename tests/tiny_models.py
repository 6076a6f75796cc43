"""Tiny random models of every architecture the torch backend maps, built from configs.

Each has 3 layers, d_model 32, 4 heads of width 8 and an MLP of 64 neurons, and uses
the byte tokenizer of `tests.conftest`; nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import torch

from amygdala.backends._loading import LoadedModel, fingerprint

# Shared sizes. head_dim is given explicitly: Gemma's default is 256.
_COMMON: dict[str, Any] = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "max_position_embeddings": 256, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1,
}


def _config(arch: str, vocab: int) -> Any:
    import transformers as tf

    common = {**_COMMON, "vocab_size": vocab}
    if arch == "llama":
        return tf.LlamaConfig(**common)
    if arch == "mistral":
        return tf.MistralConfig(**common, sliding_window=None)
    if arch == "qwen2":
        return tf.Qwen2Config(**common)
    if arch == "qwen3":
        return tf.Qwen3Config(**common)
    if arch == "gemma":
        return tf.GemmaConfig(**common)
    if arch == "gemma2":
        return tf.Gemma2Config(**common, sliding_window=16, query_pre_attn_scalar=8)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(**common, sliding_window=16, query_pre_attn_scalar=8)
    if arch == "phi3":
        return tf.Phi3Config(**{k: v for k, v in common.items() if k != "head_dim"})
    if arch == "olmo":
        return tf.OlmoConfig(**{k: v for k, v in common.items() if k != "head_dim"})
    if arch == "olmo2":
        return tf.Olmo2Config(**{k: v for k, v in common.items() if k != "head_dim"})
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=vocab, n_embd=32, n_inner=64, n_layer=3, n_head=4,
                             n_positions=256, bos_token_id=1, eos_token_id=1, pad_token_id=0)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                num_hidden_layers=3, num_attention_heads=4,
                                max_position_embeddings=256, bos_token_id=1, eos_token_id=1,
                                pad_token_id=0, use_parallel_residual=True)
    raise KeyError(f"no tiny config for {arch!r}; expected one of {', '.join(TINY_ARCHS)}")


# Architecture name -> the model class the torch backend maps.
TINY_ARCHS: dict[str, str] = {
    "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM", "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM", "phi3": "Phi3ForCausalLM", "olmo": "OlmoForCausalLM",
    "olmo2": "Olmo2ForCausalLM", "gpt2": "GPT2LMHeadModel", "gpt_neox": "GPTNeoXForCausalLM",
}


def tiny_model(arch: str, tokenizer: Any, seed: int = 0) -> LoadedModel:
    """A 3-layer random model of ``arch`` (a key of `TINY_ARCHS`), eager attention, eval mode."""
    import transformers as tf

    config = _config(arch, len(tokenizer))
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(tf, TINY_ARCHS[arch])(config).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, model_id=f"tiny-{arch}",
                       fingerprint=fingerprint(model), source="")
