"""Steering vectors: one unit direction per concept and layer, with scale and provenance.

Files: ``vectors.safetensors`` (arrays) + ``vectors.json`` (everything else).
Never pickle. Exports: a llama.cpp control-vector GGUF and a readout bundle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, final

import attrs
import numpy as np
from safetensors.numpy import load_file, save

from amygdala.errors import (
    DimensionMismatchError,
    NonFiniteError,
    UnknownConceptError,
    UnknownSiteError,
    VectorFileError,
)
from amygdala.store._store import write_atomic

__all__ = ["FORMAT_VERSION", "SteeringVector", "SteeringVectorSet"]

FORMAT_VERSION = 1


def _unit_vector(value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 1:
        raise DimensionMismatchError(f"a direction must be 1-D, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise NonFiniteError("direction contains NaN or inf")
    norm = float(np.linalg.norm(array))
    if norm == 0.0:
        raise ValueError("a direction cannot be the zero vector")
    return array / norm


@attrs.frozen(kw_only=True)
class SteeringVector:
    """One concept's direction at one layer.

    Attributes:
        concept: the concept name (or a formula such as ``joyful-sad``).
        layer: the layer whose residual stream (resid_post) it lives in.
        direction: unit vector in raw residual space (normalised on construction).
        raw_norm: norm of the raw mean difference it came from.
        resid_norm: typical per-token residual norm at this layer; steering
            strengths are in units of it.
        method: the extraction method.

    >>> v = SteeringVector(concept="a", layer=0, direction=[3.0, 4.0], raw_norm=5.0,
    ...                    resid_norm=10.0, method="paired")
    >>> v.direction.tolist()
    [0.6000000238418579, 0.800000011920929]
    >>> (v - v.evolve_direction([0.0, 1.0], concept="b")).concept
    'a-b'
    """

    concept: str
    layer: int
    direction: np.ndarray = attrs.field(converter=_unit_vector, eq=False)
    raw_norm: float
    resid_norm: float
    method: str

    def evolve_direction(self, direction: Any, *, concept: str) -> SteeringVector:
        """Return a copy with another direction and name."""
        return attrs.evolve(self, direction=direction, concept=concept)

    def cosine(self, other: SteeringVector) -> float:
        """Cosine similarity in raw residual space (`SteeringVectorSet.cosine_matrix`
        compares in the method's normalised space)."""
        self._check(other)
        return float(self.direction @ other.direction)

    def _check(self, other: SteeringVector) -> None:
        if other.direction.shape != self.direction.shape:
            raise DimensionMismatchError(
                f"{self.concept}@{self.layer} has width {self.direction.shape[0]}, "
                f"{other.concept}@{other.layer} has {other.direction.shape[0]}"
            )

    def __add__(self, other: SteeringVector) -> SteeringVector:
        self._check(other)
        return self.evolve_direction(self.direction + other.direction,
                                     concept=f"{self.concept}+{other.concept}")

    def __sub__(self, other: SteeringVector) -> SteeringVector:
        self._check(other)
        return self.evolve_direction(self.direction - other.direction,
                                     concept=f"{self.concept}-{other.concept}")

    def steering(self, alpha: float) -> np.ndarray:
        """The vector to add for strength ``alpha`` (in units of the residual norm)."""
        return alpha * self.resid_norm * self.direction


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _check_set(instance: SteeringVectorSet) -> None:
    c, n_layers, d = instance.directions.shape
    if c != len(instance.concepts) or n_layers != len(instance.layers):
        raise DimensionMismatchError(
            f"directions have shape {instance.directions.shape}, expected "
            f"[{len(instance.concepts)} concepts, {len(instance.layers)} layers, d]"
        )
    if instance.raw_norm.shape != (c, n_layers) or instance.resid_norm.shape != (n_layers,):
        raise DimensionMismatchError("raw_norm must be [concepts, layers], resid_norm [layers]")
    if instance.std.shape != (n_layers, d) or instance.mean.shape != (n_layers, d):
        raise DimensionMismatchError("mean and std must be [layers, d_model]")
    for name in ("directions", "raw_norm", "resid_norm", "std", "mean"):
        if not np.isfinite(getattr(instance, name)).all():
            raise NonFiniteError(f"{name} contains NaN or inf")
    if len(set(instance.concepts)) != len(instance.concepts):
        raise ValueError(f"duplicate concepts in {instance.concepts}")


@final
@attrs.frozen(kw_only=True)
class SteeringVectorSet:
    """Directions for several concepts at several layers, from one model and corpus.

    Attributes:
        concepts: concept names.
        layers: model layers (resid_post of each).
        directions: ``[concepts, layers, d_model]`` unit writing directions, raw space.
        raw_norm: ``[concepts, layers]``.
        resid_norm: ``[layers]`` typical per-token residual norm.
        mean: ``[layers, d_model]`` reference (neutral) mean, used to centre readouts.
        std: ``[layers, d_model]`` per-dimension spread used by the method
            (ones for ``raw`` normalisation).
        method: extraction method; ``normalisation``: raw or standardise.
        provenance: model id and fingerprint, corpus hash, counts, library version...
    """

    concepts: tuple[str, ...] = attrs.field(converter=_str_tuple)
    layers: tuple[int, ...] = attrs.field(converter=_int_tuple)
    directions: np.ndarray = attrs.field(eq=False)
    raw_norm: np.ndarray = attrs.field(eq=False)
    resid_norm: np.ndarray = attrs.field(eq=False)
    mean: np.ndarray = attrs.field(eq=False)
    std: np.ndarray = attrs.field(eq=False)
    method: str
    normalisation: str
    provenance: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        _check_set(self)

    # ----- selection -------------------------------------------------------------------
    def concept_index(self, concept: str) -> int:
        """Index of ``concept``; raises `UnknownConceptError` listing the known ones."""
        if concept not in self.concepts:
            from difflib import get_close_matches

            close = get_close_matches(concept, self.concepts, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownConceptError(
                f"unknown concept {concept!r}{hint}; this set has: {', '.join(self.concepts)}"
            )
        return self.concepts.index(concept)

    def layer_index(self, layer: int) -> int:
        """Index of ``layer``; raises `UnknownSiteError` listing the available ones."""
        if layer not in self.layers:
            raise UnknownSiteError(
                f"no vectors at layer {layer}; this set has layers {list(self.layers)}"
            )
        return self.layers.index(layer)

    def vector(self, concept: str, layer: int) -> SteeringVector:
        """One concept's vector at one layer."""
        c, layer_i = self.concept_index(concept), self.layer_index(layer)
        return SteeringVector(
            concept=concept, layer=layer, direction=self.directions[c, layer_i],
            raw_norm=float(self.raw_norm[c, layer_i]),
            resid_norm=float(self.resid_norm[layer_i]), method=self.method,
        )

    def select(self, *, concepts: Sequence[str] | None = None,
               layers: Sequence[int] | None = None) -> SteeringVectorSet:
        """Keep a subset of concepts and/or layers."""
        ci = [self.concept_index(c) for c in concepts] if concepts else list(
            range(len(self.concepts)))
        li = [self.layer_index(x) for x in layers] if layers else list(range(len(self.layers)))
        return attrs.evolve(
            self, concepts=[self.concepts[i] for i in ci], layers=[self.layers[i] for i in li],
            directions=self.directions[np.ix_(ci, li)], raw_norm=self.raw_norm[np.ix_(ci, li)],
            resid_norm=self.resid_norm[li], mean=self.mean[li], std=self.std[li],
        )

    def method_space(self, layer: int) -> np.ndarray:
        """``[concepts, d_model]`` unit directions in the method's (normalised) space.

        Cosines between raw residual directions are dominated by the few massive
        activation dimensions; dividing by ``std`` undoes that. For ``raw``
        normalisation this is just `directions`.
        """
        u = self.directions[:, self.layer_index(layer)] / self.std[self.layer_index(layer)]
        unit: np.ndarray = u / np.linalg.norm(u, axis=-1, keepdims=True)
        return unit

    def cosine_matrix(self, layer: int) -> np.ndarray:
        """``[concepts, concepts]`` cosines at ``layer``, in the method's space."""
        u = self.method_space(layer)
        return u @ u.T  # type: ignore[no-any-return]

    def readers(self, layer: int) -> np.ndarray:
        """``[concepts, d_model]`` unit reading weights that act on raw residuals.

        A method working in standardised space scores ``u . (x - mean) / std``;
        its writing direction is ``u * std``, so the raw-space reader is
        ``direction / std**2`` (normalised). For raw normalisation they coincide.
        """
        li = self.layer_index(layer)
        w = self.directions[:, li] / self.std[li] ** 2
        unit: np.ndarray = (w / np.linalg.norm(w, axis=-1, keepdims=True)).astype(np.float32)
        return unit

    # ----- files -----------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write ``vectors.safetensors`` and ``vectors.json`` atomically; return the dir."""
        out = Path(directory)
        arrays = {"directions": self.directions, "raw_norm": self.raw_norm,
                  "resid_norm": self.resid_norm, "mean": self.mean, "std": self.std}
        blob = save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()})
        write_atomic(out / "vectors.safetensors", blob)
        meta = {"format_version": FORMAT_VERSION, "concepts": list(self.concepts),
                "layers": list(self.layers), "method": self.method,
                "normalisation": self.normalisation, "site": "resid_post",
                "provenance": dict(self.provenance)}
        write_atomic(out / "vectors.json", (json.dumps(meta, indent=2) + "\n").encode())
        return out

    @classmethod
    def load(cls, directory: Path | str) -> SteeringVectorSet:
        """Load a set written by `save`.

        Raises:
            VectorFileError: files missing, malformed or from a newer format.
        """
        path = Path(directory)
        meta_path, array_path = path / "vectors.json", path / "vectors.safetensors"
        if not meta_path.is_file() or not array_path.is_file():
            raise VectorFileError(
                f"expected vectors.json and vectors.safetensors in {path}; "
                "create them with `amygdala train CORPUS --out DIR`"
            )
        try:
            meta = json.loads(meta_path.read_text())
            arrays = load_file(str(array_path))
        except (json.JSONDecodeError, OSError, ValueError) as exc:
            raise VectorFileError(f"cannot read vectors in {path}: {exc}") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise VectorFileError(
                f"{meta_path} has format_version {meta.get('format_version')}, this amygdala "
                f"reads {FORMAT_VERSION}; upgrade amygdala or retrain"
            )
        try:
            return cls(concepts=meta["concepts"], layers=meta["layers"],
                       directions=arrays["directions"], raw_norm=arrays["raw_norm"],
                       resid_norm=arrays["resid_norm"], mean=arrays["mean"], std=arrays["std"],
                       method=meta["method"], normalisation=meta["normalisation"],
                       provenance=meta.get("provenance", {}))
        except KeyError as exc:
            raise VectorFileError(f"{path} lacks field {exc}; the files are incomplete") from exc

    # ----- exports -----------------------------------------------------------------------
    def export_gguf(self, path: Path | str, concept: str, *, alpha: float = 1.0,
                    model_hint: str = "llama") -> Path:
        """Write a llama.cpp control vector for one concept (repeng's layout).

        Tensor ``direction.{n}`` holds the vector for the output of 0-based block
        ``n - 1`` (Hugging Face ``hidden_states[n]``), scaled to ``alpha`` times the
        layer's typical residual norm. Load it with ``llama-cli --control-vector``.
        """
        import gguf

        ci = self.concept_index(concept)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        writer = gguf.GGUFWriter(str(tmp), "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(self.layers))
        for li, layer in enumerate(self.layers):
            vec = (alpha * self.resid_norm[li] * self.directions[ci, li]).astype(np.float32)
            writer.add_tensor(f"direction.{layer + 1}", vec)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(target)
        return target

    def export_readout(self, directory: Path | str, *, pooling: str = "per_token") -> Path:
        """Write ``readout.safetensors`` + ``readout.json`` for serving-side readout.

        One tensor ``layer_<idx>.vectors`` of shape ``[concepts, hidden]`` per layer:
        raw-space reading weights (normalisation folded in, see `readers`). A
        reader takes plain dot products with the hidden state at that layer's
        output; subtracting ``offsets[layer]`` centres scores on neutral text.
        """
        out = Path(directory)
        tensors, offsets = {}, {}
        for layer in self.layers:
            readers = self.readers(layer)
            tensors[f"layer_{layer}.vectors"] = readers
            offsets[str(layer)] = (readers @ self.mean[self.layer_index(layer)]).tolist()
        write_atomic(out / "readout.safetensors", save(tensors))
        meta = {
            "format_version": FORMAT_VERSION, "concepts": list(self.concepts),
            "layers": list(self.layers), "hidden_size": int(self.directions.shape[2]),
            "dtype": "float32", "site": "resid_post", "pooling": pooling,
            "normalisation": self.normalisation,
            "normalisation_folded": self.normalisation != "raw",
            "note": "vectors act on raw residual activations (output of each layer); "
                    "score = vectors @ hidden - offsets[layer]",
            "offsets": offsets, "provenance": dict(self.provenance),
        }
        write_atomic(out / "readout.json", (json.dumps(meta, indent=2) + "\n").encode())
        return out
