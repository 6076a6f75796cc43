"""A run directory: where every file of a run lives, its config, its loader, its best layer.

``amygdala train CORPUS --out RUN_DIR`` (and `amygdala.train(..., out=RUN_DIR)`) writes

=====================================  ======================================================
``vectors.safetensors``, ``vectors.json``  the `SteeringVectorSet`
``run.json``                           the `TrainConfig` under ``config``, corpus, model, timing
``evaluation.json``                    the nested held-out evaluation (`amygdala.evaluate`);
                                       its ``recommended_layer`` is the run's best layer
``quality.json``                       the `QualityReport` (``--quality-report``)
``readout.safetensors``, ``readout.json``  the read-out bundle (``--export-readout``)
``readout_stats.json``                 cached neutral per-token statistics of the read-out
``<concept>.gguf``                     llama.cpp control vectors (``--export-gguf``)
``circuits/<concept>.json``            circuits (``amygdala circuits``), with ``summary.json``
                                       and ``overlap.json``
``steering.json``                      the steering evaluation (``amygdala eval-steer``)
=====================================  ======================================================

`RunDir` is the one owner of those names: other modules ask it for paths instead of
spelling them, `RunDir.open` is the one loader (vectors plus a backend on the run's model),
`RunDir.config` the one reader of ``run.json``'s config and `best_layer` the one rule for
"the run's layer": the layer the nested evaluation recommends for the vectors' method, else
the middle of the set's layers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from amygdala._io import write_json
from amygdala.backends._registry import Backend, get_backend
from amygdala.corpus._model import Corpus
from amygdala.errors import CorpusError, UnknownSiteError, VectorFileError
from amygdala.vectors._files import (
    CIRCUIT_OVERLAP_FILE,
    CIRCUIT_SUMMARY_FILE,
    CIRCUITS_DIR,
    EVALUATION_FILE,
    QUALITY_FILE,
    READOUT_ARRAYS,
    READOUT_META,
    READOUT_STATS_FILE,
    RUN_FILE,
    STEERING_FILE,
    VECTORS_ARRAYS,
    VECTORS_META,
    circuit_file,
)
from amygdala.vectors._set import SteeringVectorSet
from amygdala.vectors._train import Session, TrainConfig, open_session

__all__ = [
    "LayerChoice",
    "RunContext",
    "RunCorpus",
    "RunDir",
    "best_layer",
    "config_from_json",
]

LayerSource = Literal["evaluation", "middle"]


@attrs.frozen(kw_only=True)
class LayerChoice:
    """The run's layer and where it came from.

    Attributes:
        layer: the layer.
        source: ``evaluation`` (the nested evaluation's recommended layer) or ``middle``
            (the middle of the vectors' layers: no evaluation names a layer they have).
        reason: one sentence saying where the layer came from, for logs.
    """

    layer: int
    source: LayerSource
    reason: str


def best_layer(evaluation: Mapping[str, Any] | None, method: str,
               layers: Sequence[int]) -> LayerChoice:
    """The one best-layer rule: the evaluation's recommended layer, else the middle layer.

    Reads ``recommended_layer[method]`` of an ``evaluation.json`` dict (format 1 files:
    ``best[method]["layer"]``). Only the vectors' own method counts; a layer the vectors
    lack is ignored. Without one, the middle of ``layers`` (``layers[len // 2]``).

    Args:
        evaluation: the parsed ``evaluation.json`` (``Evaluation.to_json()``), or None.
        method: the vectors' extraction method.
        layers: the vectors' layers.

    Returns:
        The layer, ``evaluation`` or ``middle``, and a sentence saying why.

    Raises:
        ValueError: ``layers`` is empty.

    >>> best_layer({"recommended_layer": {"paired": 20}}, "paired", [10, 20, 30]).layer
    20
    >>> best_layer(None, "paired", [10, 20, 30]).source
    'middle'
    """
    if not layers:
        raise ValueError("best_layer needs the vectors' layers; got none")
    why = "no evaluation"
    if evaluation is not None:
        recommended = (evaluation.get("recommended_layer") or {}).get(method)
        if recommended is None:
            recommended = (((evaluation.get("best") or {}).get(method)) or {}).get("layer")
        if isinstance(recommended, int) and recommended in layers:
            return LayerChoice(layer=recommended, source="evaluation",
                               reason=f"the evaluation's recommended layer for {method!r}")
        why = (f"the evaluation's layer {recommended} for {method!r} is not among the "
               "vectors' layers" if isinstance(recommended, int)
               else f"the evaluation has no layer for method {method!r}")
    middle = int(layers[len(layers) // 2])
    return LayerChoice(layer=middle, source="middle", reason=f"the middle layer ({why})")


def config_from_json(config: Mapping[str, Any]) -> TrainConfig:
    """A `TrainConfig` from ``run.json``'s ``config`` (`TrainConfig.from_json`); missing
    fields take their defaults, so older run files load."""
    return TrainConfig.from_json(config)


@attrs.frozen(kw_only=True)
class RunContext:
    """A run directory opened for use: its vectors and a backend on its model."""

    run_dir: Path
    vectors: SteeringVectorSet
    backend: Backend
    config: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class RunCorpus:
    """The corpus a run was trained on, as found on disk now.

    Attributes:
        corpus: the corpus (the run's concepts only when that restores the recorded hash).
        root: where it was read from.
        changed: a sentence when its texts differ from the run's (hash mismatch), else None.
    """

    corpus: Corpus
    root: Path
    changed: str | None


@attrs.frozen
class RunDir:
    """The files of one run directory (see the module docstring).

    >>> run = RunDir("runs/demo")
    >>> str(run.evaluation), str(run.circuit("afraid"))
    ('runs/demo/evaluation.json', 'runs/demo/circuits/afraid.json')
    """

    root: Path = attrs.field(converter=Path)

    @property
    def vectors_arrays(self) -> Path:
        """``vectors.safetensors``."""
        return self.root / VECTORS_ARRAYS

    @property
    def vectors_meta(self) -> Path:
        """``vectors.json``."""
        return self.root / VECTORS_META

    @property
    def run_json(self) -> Path:
        """``run.json``."""
        return self.root / RUN_FILE

    @property
    def evaluation(self) -> Path:
        """``evaluation.json``."""
        return self.root / EVALUATION_FILE

    @property
    def quality(self) -> Path:
        """``quality.json``."""
        return self.root / QUALITY_FILE

    @property
    def readout_arrays(self) -> Path:
        """``readout.safetensors``."""
        return self.root / READOUT_ARRAYS

    @property
    def readout_meta(self) -> Path:
        """``readout.json``."""
        return self.root / READOUT_META

    @property
    def readout_stats(self) -> Path:
        """``readout_stats.json``."""
        return self.root / READOUT_STATS_FILE

    @property
    def steering(self) -> Path:
        """``steering.json``."""
        return self.root / STEERING_FILE

    @property
    def circuits(self) -> Path:
        """The ``circuits/`` directory."""
        return self.root / CIRCUITS_DIR

    def circuit(self, concept: str) -> Path:
        """``circuits/<concept>.json``."""
        return self.circuits / circuit_file(concept)

    @property
    def circuit_summary(self) -> Path:
        """``circuits/summary.json``."""
        return self.circuits / CIRCUIT_SUMMARY_FILE

    @property
    def circuit_overlap(self) -> Path:
        """``circuits/overlap.json``."""
        return self.circuits / CIRCUIT_OVERLAP_FILE

    def gguf(self, concept: str) -> Path:
        """``<concept>.gguf``."""
        return self.root / f"{concept}.gguf"

    def vectors(self) -> SteeringVectorSet:
        """The run's vectors (`SteeringVectorSet.load`)."""
        return SteeringVectorSet.load(self.root)

    def record(self, *, required: bool = False) -> dict[str, Any]:
        """``run.json`` as a dict (empty when it is missing and not ``required``).

        Raises:
            VectorFileError: it is missing (when ``required``) or not valid JSON.
        """
        path = self.run_json
        if not path.is_file():
            if required:
                raise VectorFileError(f"{path} is missing; this needs a run directory "
                                      "written by `amygdala train --out RUN_DIR`")
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise VectorFileError(f"cannot read {path} ({exc}); expected the JSON that "
                                  "`amygdala train` writes; retrain the run") from exc
        if not isinstance(data, dict):
            raise VectorFileError(f"{path} holds {type(data).__name__}, expected an object")
        return data

    def write_record(self, record: Mapping[str, Any]) -> Path:
        """Write ``run.json`` atomically (``record["config"]`` is `TrainConfig.to_json`)."""
        return write_json(self.run_json, dict(record))

    def config(self, *, required: bool = False) -> TrainConfig:
        """The run's `TrainConfig`, read from ``run.json`` (defaults when it is missing and
        not ``required``)."""
        return config_from_json(self.record(required=required).get("config") or {})

    def evaluation_json(self) -> dict[str, Any] | None:
        """``evaluation.json`` as a dict, or None when it is missing or unreadable."""
        try:
            data = json.loads(self.evaluation.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def best_layer(self, vectors: SteeringVectorSet | None = None) -> LayerChoice:
        """The run's layer for its vectors' method (`best_layer` on ``evaluation.json``)."""
        vectors = vectors if vectors is not None else self.vectors()
        return best_layer(self.evaluation_json(), vectors.method, vectors.layers)

    def open(self, *, backend: Backend | None = None, backend_name: str | None = None,
             device: str | None = None, dtype: str | None = None) -> RunContext:
        """Load the vectors and a backend on the model named in ``run.json``.

        Args:
            backend: reuse an already built backend (must be the run's model).
            backend_name: the backend to build (default: the run's).
            device: where to load the model (default ``auto``: CUDA when available).
            dtype: the model's dtype (default: the one the run was trained in).

        Raises:
            VectorFileError: the vectors are missing or malformed.
            UnknownSiteError: the backend's model does not match the vectors.
        """
        vectors = self.vectors()
        config = self.record().get("config") or {}
        if backend is None:
            from amygdala.backends._loading import load_model

            settings = config_from_json(config)
            loaded = load_model(settings.model, device=device or "auto",
                                dtype=dtype or settings.dtype)
            backend = get_backend(backend_name or settings.backend, loaded)
        dims = backend.dims
        width = vectors.directions.shape[2]
        if width != dims.d_model or max(vectors.layers) >= dims.n_layers:
            raise UnknownSiteError(
                f"vectors in {self.root} have width {width} and layers up to "
                f"{max(vectors.layers)}, but the model has d_model {dims.d_model} and "
                f"{dims.n_layers} layers; use the model the run was trained on")
        return RunContext(run_dir=self.root, vectors=vectors, backend=backend,
                          config=dict(config))

    def session(self, *, backend_name: str | None = None, device: str = "auto",
                dtype: str | None = None) -> Session:
        """A `Session` (model, backend, activation store) as the run was trained.

        Raises:
            VectorFileError: ``run.json`` is missing or unreadable.
        """
        config = self.config(required=True)
        return open_session(attrs.evolve(
            config, backend=backend_name or config.backend, device=device,
            dtype=dtype or config.dtype))

    def corpus(self, root: Path | str | None = None, *,
               concepts: Sequence[str] | None = None) -> RunCorpus:
        """The run's corpus: ``root``, else the one ``run.json`` (or the vectors) record.

        When the texts changed since the run, the run's ``concepts`` are selected if that
        restores the recorded hash; otherwise ``changed`` says so.

        Raises:
            CorpusError: no corpus there (the message names the recorded root).
        """
        record = self.record()
        recorded = (record.get("corpus") or {}).get("root")
        if recorded is None and self.vectors_meta.is_file():
            recorded = self.vectors().provenance.get("corpus_root")
        path = Path(root) if root is not None else Path(str(recorded or ""))
        try:
            corpus = Corpus.load(path)
        except CorpusError as exc:
            raise CorpusError(
                f"{exc} (the run {self.root} records the corpus root {recorded!r}, relative "
                "to where it was trained; pass the corpus path, or run from that "
                "directory)") from exc
        expected = (record.get("corpus") or {}).get("hash")
        changed = None
        if expected and corpus.content_hash != expected:
            keep = [c for c in (concepts or ()) if c in corpus.concepts]
            subset = corpus.select(keep) if keep else None
            if subset is not None and subset.content_hash == expected:
                corpus = subset
            else:
                changed = (f"the corpus at {path} changed since the run; diagnostics use its "
                           "current texts")
        return RunCorpus(corpus=corpus, root=path, changed=changed)
