"""The training pipeline: corpus -> store -> vectors (-> evaluation), and its run directory."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from amygdala._codec import from_data, to_data
from amygdala._io import write_atomic
from amygdala._types import Pooling, Site
from amygdala.backends._device import DtypeName, dtype_name, resolve_dtype
from amygdala.backends._loading import DEFAULT_MODEL, LoadedModel, cache_dir, load_model
from amygdala.backends._registry import Backend, get_backend
from amygdala.corpus._model import Corpus
from amygdala.errors import UnknownSiteError
from amygdala.store._store import ActivationStore, StoreDtype
from amygdala.vectors._extract import (
    PROBE_SHRINKAGE,
    ExtractionInput,
    Method,
    Normalisation,
    extract,
    reference_ids,
)
from amygdala.vectors._files import RUN_FILE
from amygdala.vectors._set import SteeringVectorSet

__all__ = ["Session", "TrainConfig", "TrainResult", "capture_corpus", "open_session", "train"]

# Reference texts used to measure the typical per-token residual norm.
_NORM_TEXTS = 16


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("amygdala-lens")
    except PackageNotFoundError:
        return "unknown"


def _dtype_name(value: str) -> DtypeName:
    return dtype_name(resolve_dtype(value))


def _optional_layers(values: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)


@attrs.frozen(kw_only=True)
class TrainConfig:
    """Everything that decides what `train` computes.

    Attributes:
        model: model name (default SmolLM2-135M-Instruct) or path.
        backend: ``torch`` or ``transformer_lens``.
        method: extraction method (see `amygdala.METHODS`; default ``probe``, the best
            baseline-free read-out on the shipped corpus, see docs/evaluation.md).
        normalisation: ``standardise`` (default) or ``raw``.
        layers: layers to extract (default: all).
        pooling: token pooling of the stored activations.
        batch_size: texts per forward pass.
        store: activation store root (default: ``<cache>/activations``).
        store_dtype: ``float32`` or ``float16`` on disk.
        device: where the model runs: ``auto`` (default: CUDA when available, else
            CPU), ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        dtype: the model's parameter dtype: ``float32`` (default), ``bfloat16`` or
            ``float16``. Pooled statistics are float32 either way; the dtype is part
            of the model fingerprint, so each dtype has its own activation store.
        shrinkage: the ``probe``'s covariance shrinkage; None (default): the library's
            train job (`amygdala.train`) chooses it on inner folds of the nested evaluation
            and refits with it (`PROBE_SHRINKAGE` when there is no evaluation).
    """

    model: str = DEFAULT_MODEL
    backend: str = "torch"
    method: Method = "probe"
    normalisation: Normalisation = "standardise"
    layers: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_layers)
    pooling: Pooling = attrs.field(factory=Pooling)
    batch_size: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    store: Path | None = None
    store_dtype: StoreDtype = "float32"
    device: str = "auto"
    dtype: DtypeName = attrs.field(default="float32", converter=_dtype_name)
    shrinkage: float | None = attrs.field(default=None)

    @shrinkage.validator
    def _check_shrinkage(self, _attribute: object, value: float | None) -> None:
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(f"shrinkage must lie strictly between 0 and 1, got {value}; "
                             "leave it unset to choose it on inner folds")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (``run.json``'s ``config``; pooling as its key)."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of `to_json`; missing or null fields take their defaults, so the
        ``run.json`` of older releases (no device, dtype or shrinkage) and of
        ``amygdala import-gguf`` (model, backend, method, normalisation, layers) load."""
        return from_data(cls, {k: v for k, v in data.items() if v is not None})


@attrs.frozen(kw_only=True)
class Session:
    """A loaded model with its backend and store, reusable across calls."""

    loaded: LoadedModel
    backend: Backend
    store: ActivationStore


def open_session(config: TrainConfig) -> Session:
    """Load the model, build the backend and open the store for ``config``."""
    loaded = load_model(config.model, device=config.device, dtype=config.dtype)
    backend = get_backend(config.backend, loaded)
    root = config.store if config.store is not None else cache_dir() / "activations"
    store = ActivationStore(root, fingerprint=loaded.fingerprint, pooling=config.pooling,
                            dtype=config.store_dtype)
    return Session(loaded=loaded, backend=backend, store=store)


def _progress_bar(total_texts: int, enabled: bool) -> Any:
    if not enabled or total_texts == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total_texts, desc="capture", unit="text", file=sys.stderr)


def capture_corpus(
    session: Session, corpus: Corpus, layers: Sequence[int], *, batch_size: int = 16,
    progress: bool = False,
) -> tuple[ExtractionInput, int]:
    """Make sure every corpus text is stored at ``layers``; return them and the count captured."""
    dims = session.backend.dims
    for layer in layers:
        dims.check(Site(layer=layer))
    sites = [Site(layer=layer) for layer in layers]
    texts = [t.text for t in corpus.texts]
    missing = len(session.store.missing(texts, sites))
    bar = _progress_bar(missing, progress)

    def tick(done: int, _total: int) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()

    try:
        captured = session.store.ensure(session.backend, texts, sites, batch_size=batch_size,
                                        progress=tick)
    finally:
        if bar is not None:
            bar.close()
    acts = session.store.load(texts, sites, ids=[t.id for t in corpus.texts])
    x = np.stack([acts[s] for s in sites], axis=1)
    return ExtractionInput(x=x, ids=acts.ids, layers=tuple(layers)), captured


def typical_token_norm(session: Session, corpus: Corpus, layers: Sequence[int],
                       pooling: Pooling) -> np.ndarray:
    """Typical per-token residual norm at each layer: the median, over the reference
    texts, of each text's median token norm (tokens from ``pooling.skip`` on).

    The capture stores every text's median token norm next to its activations, so on
    a warm store this reads numbers and runs no forward pass. Texts captured by an
    older amygdala lack them: those (at most `_NORM_TEXTS`) are run once and their
    norms stored. A ``pooling`` other than the store's is computed, not stored.
    """
    by_id = {t.id: t.text for t in corpus.texts}
    texts = [by_id[i] for i in reference_ids(corpus)[:_NORM_TEXTS]]
    sites = [Site(layer=layer) for layer in layers]
    # The stored norms count tokens from the store's pooling.skip on.
    same = pooling == session.store.pooling
    norms = (session.store.token_norms(texts, sites) if same
             else np.full((len(texts), len(sites)), np.nan, np.float32))
    lacking = [i for i in range(len(texts)) if np.isnan(norms[i]).any()]
    if lacking:
        todo = [texts[i] for i in lacking]
        found: dict[Site, torch.Tensor] = {s: torch.empty(len(todo)) for s in sites}
        for batch in session.backend.capture_batches(todo, sites, pooling):
            for site in sites:
                found[site][batch.indices] = batch.token_norm[site]
        if same:
            session.store.put_token_norms(todo, found)
        for row, i in enumerate(lacking):
            norms[i] = [float(found[s][row]) for s in sites]
    return np.median(norms, axis=0).astype(np.float32)


@attrs.frozen(kw_only=True)
class TrainResult:
    """What `train` produced."""

    vectors: SteeringVectorSet
    data: ExtractionInput
    captured: int
    seconds: float
    run_dir: Path | None


def train(
    corpus: Corpus, *, config: TrainConfig = TrainConfig(), out: Path | str | None = None,
    session: Session | None = None, progress: bool = False,
) -> TrainResult:
    """Turn a corpus into a `SteeringVectorSet` (and a run directory when ``out`` is given).

    Args:
        corpus: the loaded corpus.
        config: model, backend, method, layers...
        out: run directory to write ``vectors.*`` and ``run.json`` into.
        session: a session from `open_session` to reuse (skips loading the model).
        progress: show a progress bar on stderr.

    Returns:
        The vectors, the activations they came from, and bookkeeping.

    >>> corpus = Corpus.load("paired")  # doctest: +SKIP
    >>> result = train(corpus, out="runs/demo")  # doctest: +SKIP
    >>> result.vectors.vector("afraid", 20).direction.shape  # doctest: +SKIP
    (576,)
    """
    start = time.perf_counter()
    session = session or open_session(config)
    n_layers = session.backend.dims.n_layers
    layers = list(config.layers) if config.layers is not None else list(range(n_layers))
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise UnknownSiteError(
            f"layers {bad} do not exist; this model has layers 0..{n_layers - 1}")
    data, captured = capture_corpus(session, corpus, layers, batch_size=config.batch_size,
                                    progress=progress)
    raw = extract(data, corpus, method=config.method, normalisation=config.normalisation,
                  shrinkage=PROBE_SHRINKAGE if config.shrinkage is None else config.shrinkage)
    resid_norm = typical_token_norm(session, corpus, layers, config.pooling)
    provenance = {
        "model_id": session.loaded.model_id, "model_fingerprint": session.loaded.fingerprint,
        "corpus_hash": corpus.content_hash, "corpus_root": str(corpus.root.resolve()),
        "counts": dict(raw.counts), "pooling": config.pooling.key, "backend": config.backend,
        "amygdala_version": _version(),
    }
    vectors = SteeringVectorSet(
        concepts=raw.concepts, layers=layers, directions=raw.directions, raw_norm=raw.raw_norm,
        resid_norm=resid_norm, mean=raw.mean, std=raw.std,
        method=config.method, normalisation=config.normalisation, provenance=provenance,
        readers=raw.readers, offsets=raw.offsets,
    )
    seconds = time.perf_counter() - start
    run_dir = None
    if out is not None:
        run_dir = Path(out)
        vectors.save(run_dir)
        write_run_json(run_dir, config=config, corpus=corpus, session=session,
                       captured=captured, seconds=seconds)
    return TrainResult(vectors=vectors, data=data, captured=captured, seconds=seconds,
                       run_dir=run_dir)


def write_run_json(run_dir: Path, *, config: TrainConfig, corpus: Corpus, session: Session,
                   captured: int, seconds: float, extra: dict[str, Any] | None = None) -> None:
    """Describe a run in ``run_dir/run.json`` (atomically)."""
    record = {
        "amygdala_version": _version(), "config": config.to_json(),
        "corpus": {"root": str(corpus.root.resolve()), "hash": corpus.content_hash,
                   "scenarios": len(corpus.scenarios), "stories": len(corpus.stories),
                   "neutral": len(corpus.neutral), "concepts": list(corpus.concepts)},
        "model": {"id": session.loaded.model_id, "fingerprint": session.loaded.fingerprint,
                  "dims": attrs.asdict(session.backend.dims)},
        "store": str(session.store.path), "captured_texts": captured,
        "seconds": round(seconds, 2),
        "python": platform.python_version(), "torch": torch.__version__,
        **(extra or {}),
    }
    write_atomic(run_dir / RUN_FILE, (json.dumps(record, indent=2) + "\n").encode())
