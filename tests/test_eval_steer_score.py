"""Steering evaluation scores a continuation on the generated token ids themselves."""

from __future__ import annotations

import math

import numpy as np
import torch

from amygdala.backends._registry import get_backend
from amygdala.intervene._eval_steer import _score
from amygdala.intervene._readout import ReadoutStats
from tests.conftest import tiny_llama
from tests.test_gaps_backends import tiny_vectors


def test_perplexity_is_over_exactly_the_generated_tokens() -> None:
    backend = get_backend("torch", tiny_llama())
    generation = backend.generate("The cat sat", max_new_tokens=6)
    vs = tiny_vectors()
    stats = ReadoutStats(concepts=vs.concepts, mean={1: np.zeros(2, np.float32)},
                         std={1: np.ones(2, np.float32)}, n_tokens=10, key="k")
    scored = _score(backend, vs, stats, 1, generation)
    # Independent: the Hugging Face model on the same ids, mean NLL of the new tokens.
    ids = torch.tensor([generation.token_ids])
    with torch.no_grad():
        logits = backend.loaded.model(input_ids=ids).logits[0]  # type: ignore[attr-defined]
    p = generation.prompt_len
    logp = torch.log_softmax(logits[p - 1:-1].double(), dim=-1)
    nll = -logp[torch.arange(ids.shape[1] - p), ids[0, p:]].mean()
    assert math.isclose(scored.perplexity, float(torch.exp(nll)), rel_tol=1e-4)
