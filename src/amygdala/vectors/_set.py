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

from amygdala._io import write_atomic
from amygdala._views import View
from amygdala.errors import (
    DimensionMismatchError,
    NonFiniteError,
    UnknownConceptError,
    UnknownSiteError,
    VectorFileError,
)
from amygdala.vectors._bundle import ReadoutBundle
from amygdala.vectors._files import VECTORS_ARRAYS, VECTORS_META

__all__ = ["FORMAT_VERSION", "SteeringVector", "SteeringVectorSet", "derived_readers"]

FORMAT_VERSION = 2
# Format 1 files lack readers and offsets; they are derived from the directions
# (exact for every method of that time except ``probe``, which then read with its
# writing direction).
READABLE_VERSIONS = (1, 2)


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


def derived_readers(directions: np.ndarray, mean: np.ndarray,
                    std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Readers and offsets of a method whose reading vector is its writing direction.

    The method-space vector is ``unit(direction / std)``; its score of ``h`` is
    ``unit(direction / std) . (h - mean) / std``.
    """
    u = np.asarray(directions, np.float64) / np.asarray(std, np.float64)[None]
    u /= np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-30)
    readers = u / np.asarray(std, np.float64)[None]
    offsets = -np.einsum("cld,ld->cl", readers, np.asarray(mean, np.float64))
    return readers.astype(np.float32), offsets.astype(np.float32)


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _check_arrays(instance: SteeringVectorSet) -> None:
    """Shapes and finiteness of the given arrays: before any reader is derived from them."""
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


def _check_readers(instance: SteeringVectorSet) -> None:
    c, n_layers = instance.raw_norm.shape
    readers, offsets = instance.all_readers, instance.all_offsets
    if readers.shape != instance.directions.shape or offsets.shape != (c, n_layers):
        raise DimensionMismatchError(
            f"readers must be [concepts, layers, d] {instance.directions.shape} and offsets "
            f"[concepts, layers] {(c, n_layers)}; got {readers.shape} and {offsets.shape}")
    for name in ("all_readers", "all_offsets"):
        if not np.isfinite(getattr(instance, name)).all():
            raise NonFiniteError(f"{name} contains NaN or inf")


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
        readers: ``[concepts, layers, d_model]`` raw-space reading weights and
        offsets: ``[concepts, layers]``: ``readers[c, l] @ h + offsets[c, l]`` is the
            method's score of ``h`` (`RawDirections.readers`). When not given they are
            derived from the directions: ``unit(direction / std) / std``, offset
            ``-reader . mean`` (the score of every method whose reading and writing
            vectors coincide).
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
    readers_: np.ndarray | None = attrs.field(default=None, eq=False, alias="readers")
    offsets_: np.ndarray | None = attrs.field(default=None, eq=False, alias="offsets")

    def __attrs_post_init__(self) -> None:
        _check_arrays(self)
        if self.readers_ is None or self.offsets_ is None:
            readers, offsets = derived_readers(self.directions, self.mean, self.std)
            object.__setattr__(self, "readers_", readers)
            object.__setattr__(self, "offsets_", offsets)
        _check_readers(self)

    @property
    def all_readers(self) -> np.ndarray:
        """``[concepts, layers, d_model]`` raw-space reading weights (see `readers`)."""
        assert self.readers_ is not None
        return self.readers_

    @property
    def all_offsets(self) -> np.ndarray:
        """``[concepts, layers]`` offsets of the readers."""
        assert self.offsets_ is not None
        return self.offsets_

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
            readers=self.all_readers[np.ix_(ci, li)], offsets=self.all_offsets[np.ix_(ci, li)],
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
        """``[concepts, d_model]`` raw-space reading weights at ``layer``.

        ``readers(layer) @ h + offsets(layer)`` is the method's own score of ``h``
        (for a method in standardised space ``unit(v) . (h - mean) / std``). They are not
        renormalised per concept in raw space, so the argmax across concepts is the
        method's.
        """
        return self.all_readers[:, self.layer_index(layer)].astype(np.float32)

    def offsets(self, layer: int) -> np.ndarray:
        """``[concepts]`` offsets of `readers` at ``layer`` (the score of the reference mean
        is zero)."""
        return self.all_offsets[:, self.layer_index(layer)].astype(np.float32)

    # ----- files -----------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write ``vectors.safetensors`` and ``vectors.json`` atomically; return the dir."""
        out = Path(directory)
        arrays = {"directions": self.directions, "raw_norm": self.raw_norm,
                  "resid_norm": self.resid_norm, "mean": self.mean, "std": self.std,
                  "readers": self.all_readers, "offsets": self.all_offsets}
        blob = save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()})
        write_atomic(out / VECTORS_ARRAYS, blob)
        meta = {"format_version": FORMAT_VERSION, "concepts": list(self.concepts),
                "layers": list(self.layers), "method": self.method,
                "normalisation": self.normalisation, "site": "resid_post",
                "provenance": dict(self.provenance)}
        write_atomic(out / VECTORS_META, (json.dumps(meta, indent=2) + "\n").encode())
        return out

    @classmethod
    def load(cls, directory: Path | str) -> SteeringVectorSet:
        """Load a set written by `save`.

        Raises:
            VectorFileError: files missing, malformed or from a newer format.
        """
        path = Path(directory)
        meta_path, array_path = path / VECTORS_META, path / VECTORS_ARRAYS
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
        version = meta.get("format_version")
        if version not in READABLE_VERSIONS:
            raise VectorFileError(
                f"{meta_path} has format_version {version}, this amygdala reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}; upgrade amygdala or retrain"
            )
        if version >= 2 and ("readers" not in arrays or "offsets" not in arrays):
            raise VectorFileError(
                f"{array_path} is format {version} but lacks readers/offsets; the file is "
                "incomplete: retrain with `amygdala train`")
        try:
            return cls(concepts=meta["concepts"], layers=meta["layers"],
                       directions=arrays["directions"], raw_norm=arrays["raw_norm"],
                       resid_norm=arrays["resid_norm"], mean=arrays["mean"], std=arrays["std"],
                       method=meta["method"], normalisation=meta["normalisation"],
                       provenance=meta.get("provenance", {}), readers=arrays.get("readers"),
                       offsets=arrays.get("offsets"))
        except KeyError as exc:
            raise VectorFileError(f"{path} lacks field {exc}; the files are incomplete") from exc
        except (DimensionMismatchError, NonFiniteError) as exc:
            raise VectorFileError(f"vectors in {path} are inconsistent: {exc}") from exc

    def export_readout(self, directory: Path | str, **stats: Any) -> Path:
        """Write ``readout.safetensors`` + ``readout.json``: `readout_bundle` then save.

        ``**stats`` are the arguments of `readout_bundle`.
        """
        return self.readout_bundle(**stats).save(directory)

    def readout_bundle(
        self, *, neutral_mean: Mapping[int, np.ndarray],
        neutral_std: Mapping[int, np.ndarray], n_neutral_tokens: int, skip: int = 2,
        recommended_layers: Sequence[int] = (), band: Sequence[int] = (),
        shared: Mapping[str, Any] | None = None, view: View = "z",
    ) -> ReadoutBundle:
        """The read-out bundle (`amygdala.vectors._bundle`) of these vectors.

        Per layer the readers and offsets (``readers @ h + offsets`` is the method's
        score) and the neutral per-token mean and std of each concept's score, so a
        server reproduces ``amygdala read``'s z-scores. ``amygdala train --export-readout``
        measures the neutral statistics (`amygdala.intervene.bundle_from_stats`).

        Args:
            neutral_mean: ``{layer: [concepts]}`` mean score over neutral tokens.
            neutral_std: ``{layer: [concepts]}`` its spread.
            n_neutral_tokens: tokens behind the statistics.
            skip: leading positions left out of them.
            recommended_layers: layer(s) to read by default (default: the middle layer).
            band: a band of layers for the multi-layer read-out.
            shared: the shared-component measurement to record.
            view: the recommended view, ``z`` or ``relative`` (`amygdala._views`).

        Raises:
            ViewError: ``view`` is neither.
        """
        return ReadoutBundle(
            concepts=self.concepts, layers=self.layers,
            readers={x: self.readers(x) for x in self.layers},
            offsets={x: self.offsets(x) for x in self.layers},
            neutral_mean={x: np.asarray(neutral_mean[x], np.float32) for x in self.layers},
            neutral_std={x: np.asarray(neutral_std[x], np.float32) for x in self.layers},
            skip=skip, n_neutral_tokens=n_neutral_tokens,
            fit_pooling=str(self.provenance.get("pooling", "unknown")),
            recommended_layers=list(recommended_layers) or [self.layers[len(self.layers) // 2]],
            band=band, view=view, method=self.method, normalisation=self.normalisation,
            shared=dict(shared or {}), provenance=self.provenance)
