"""The read-out bundle: everything a server needs to reproduce ``amygdala read``.

Files (safetensors + JSON, never pickle):

- ``readout.safetensors``: per layer ``layer_<L>.readers`` ``[concepts, hidden]`` and
  ``layer_<L>.offsets`` ``[concepts]``; ``readers @ h + offsets`` is the method's own
  score of a hidden state ``h`` (no per-concept renormalisation);
- ``readout.json``: concept order, layers, the neutral per-token mean and standard
  deviation of each concept's score per layer (z-scores), the pooling the vectors were
  fit with, the recommended layer(s), band and view (``z`` or ``relative``,
  `amygdala._views`), and the share of each concept's score variance that the component
  shared by all concepts explains. Field list:
  ``docs/steering.md`` (the read-out bundle).

`ReadoutBundle.zscores` is the reference implementation of the z-scores, a band of
layers (mean z over the band) and the relative read-out (each concept minus the mean over
concepts); ``amygdala read`` computes the same numbers through `zscore_tokens`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from safetensors.numpy import load_file, save

from amygdala._io import write_atomic
from amygdala._views import View, check_view, view_from_file
from amygdala.errors import DimensionMismatchError, UnknownSiteError, VectorFileError
from amygdala.vectors._files import READOUT_ARRAYS, READOUT_META

__all__ = [
    "BUNDLE_FORMAT",
    "ReadoutBundle",
    "relative",
    "shared_variance",
]

# 3: the recommended view is named "z" (format 2 called it "raw"); format 2 still loads.
BUNDLE_FORMAT = 3
_READABLE = (2, 3)
SCORE = ("score[c] = readers[c] . h + offsets[c]; "
         "z[c] = (score[c] - neutral.mean[c]) / neutral.std[c]")


def relative(z: np.ndarray) -> np.ndarray:
    """Relative z-scores: each concept minus the mean over concepts (last axis)."""
    return z - z.mean(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def shared_variance(z: np.ndarray) -> np.ndarray:
    """Per concept, the share of its variance explained by the mean over concepts.

    Args:
        z: ``[items, concepts]`` z-scores (tokens or texts).

    Returns:
        ``[concepts]`` squared correlation of each column with the row mean (the R^2 of
        regressing it on the shared component); NaN for a constant column.
    """
    shared = z.mean(axis=1)
    zc = z - z.mean(axis=0)
    sc = shared - shared.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (zc * sc[:, None]).sum(0) / np.sqrt((zc**2).sum(0) * (sc**2).sum())
    return r**2  # type: ignore[no-any-return]


def _strs(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(x) for x in items)


def _ints(items: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(x) for x in items)


@attrs.frozen(kw_only=True)
class ReadoutBundle:
    """Readers, offsets and neutral statistics per layer: a self-contained read-out.

    Attributes:
        concepts: column order of every score.
        layers: layers with readers.
        readers: ``{layer: [concepts, hidden]}`` raw-space reading weights.
        offsets: ``{layer: [concepts]}``.
        neutral_mean: ``{layer: [concepts]}`` mean score over neutral tokens.
        neutral_std: ``{layer: [concepts]}`` its standard deviation.
        skip: leading token positions left out of the neutral statistics.
        n_neutral_tokens: tokens the statistics came from.
        fit_pooling: the token pooling the vectors were fit with.
        recommended_layers: the layer(s) to read (from ``evaluation.json`` when present).
        band: a recommended band of layers for the multi-layer read-out (may be empty).
        view: the recommended view, ``z`` or ``relative`` (the one with the higher nested
            detection AUC in ``evaluation.json``; ``z`` when not measured).
        method, normalisation: of the vectors.
        shared: share of each concept's score variance explained by the mean over
            concepts (``{"layer": L, "per_concept": {...}, "mean": x, "measured_on": ...}``),
            empty when not measured.
        provenance: of the vectors.
    """

    concepts: tuple[str, ...] = attrs.field(converter=_strs)
    layers: tuple[int, ...] = attrs.field(converter=_ints)
    readers: Mapping[int, np.ndarray] = attrs.field(eq=False)
    offsets: Mapping[int, np.ndarray] = attrs.field(eq=False)
    neutral_mean: Mapping[int, np.ndarray] = attrs.field(eq=False)
    neutral_std: Mapping[int, np.ndarray] = attrs.field(eq=False)
    skip: int
    n_neutral_tokens: int
    fit_pooling: str
    recommended_layers: tuple[int, ...] = attrs.field(converter=_ints)
    band: tuple[int, ...] = attrs.field(default=(), converter=_ints)
    view: View = attrs.field(default="z", converter=check_view)
    method: str
    normalisation: str
    shared: Mapping[str, Any] = attrs.field(factory=dict)
    provenance: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        c = len(self.concepts)
        for layer in self.layers:
            for name, shape in (("readers", None), ("offsets", (c,)), ("neutral_mean", (c,)),
                                ("neutral_std", (c,))):
                array = getattr(self, name).get(layer)
                if array is None:
                    raise DimensionMismatchError(f"bundle lacks {name} at layer {layer}")
                want = shape or (c, array.shape[-1])
                if array.shape != want:
                    raise DimensionMismatchError(
                        f"{name} at layer {layer} has shape {array.shape}, expected {want}")

    def _check_layers(self, layers: Sequence[int]) -> None:
        missing = [x for x in layers if x not in self.layers]
        if missing:
            raise UnknownSiteError(f"the bundle has no readers at layers {missing}; it has "
                                   f"{list(self.layers)}")

    def scores(self, layer: int, hidden: np.ndarray) -> np.ndarray:
        """Method scores ``[tokens, concepts]`` of hidden states ``[tokens, hidden]``."""
        self._check_layers([layer])
        h = np.asarray(hidden, np.float32)
        return h @ self.readers[layer].T + self.offsets[layer]  # type: ignore[no-any-return]

    def zscores(self, hidden: Mapping[int, np.ndarray], *, layers: Sequence[int] | None = None,
                relative_to_mean: bool = False) -> np.ndarray:
        """Z-scores ``[tokens, concepts]``: the mean over ``layers`` of each layer's z.

        Args:
            hidden: ``{layer: [tokens, hidden]}`` residual stream at each layer's output.
            layers: the layers (a band) to average; default the recommended layer(s).
            relative_to_mean: subtract the mean over concepts (the relative read-out).
        """
        chosen = list(layers) if layers is not None else list(self.recommended_layers)
        self._check_layers(chosen)
        z = np.mean([(self.scores(x, hidden[x]) - self.neutral_mean[x]) / self.neutral_std[x]
                     for x in chosen], axis=0)
        return relative(z) if relative_to_mean else z

    # ----- files -----------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write ``readout.safetensors`` and ``readout.json`` atomically; return the dir."""
        out = Path(directory)
        tensors: dict[str, np.ndarray] = {}
        for layer in self.layers:
            tensors[f"layer_{layer}.readers"] = np.ascontiguousarray(self.readers[layer],
                                                                     np.float32)
            tensors[f"layer_{layer}.offsets"] = np.ascontiguousarray(self.offsets[layer],
                                                                     np.float32)
        write_atomic(out / READOUT_ARRAYS, save(tensors))
        hidden = int(self.readers[self.layers[0]].shape[1]) if self.layers else 0
        meta = {
            "format_version": BUNDLE_FORMAT, "concepts": list(self.concepts),
            "layers": list(self.layers), "hidden_size": hidden, "dtype": "float32",
            "site": "resid_post", "score": SCORE,
            "readout_pooling": "per_token", "fit_pooling": self.fit_pooling,
            "skip": self.skip, "n_neutral_tokens": self.n_neutral_tokens,
            "neutral": {str(x): {"mean": np.asarray(self.neutral_mean[x]).tolist(),
                                 "std": np.asarray(self.neutral_std[x]).tolist()}
                        for x in self.layers},
            "recommended_layers": list(self.recommended_layers), "band": list(self.band),
            "band_rule": "z = mean over the band's layers of each layer's z",
            "relative_rule": "relative z[c] = z[c] - mean over concepts of z",
            "recommended_view": self.view,
            "shared_component": dict(self.shared),
            "method": self.method, "normalisation": self.normalisation,
            "provenance": dict(self.provenance),
        }
        write_atomic(out / READOUT_META, (json.dumps(meta, indent=2) + "\n").encode())
        return out

    @classmethod
    def load(cls, directory: Path | str) -> ReadoutBundle:
        """Read a bundle written by `save`.

        Raises:
            VectorFileError: files missing, malformed or of another format.
        """
        path = Path(directory)
        meta_path, array_path = path / READOUT_META, path / READOUT_ARRAYS
        try:
            meta = json.loads(meta_path.read_text())
            arrays = load_file(str(array_path))
        except (OSError, json.JSONDecodeError, ValueError) as exc:
            raise VectorFileError(
                f"cannot read a readout bundle in {path}: {exc}; write one with `amygdala "
                "train CORPUS --out DIR --export-readout`") from exc
        if meta.get("format_version") not in _READABLE:
            raise VectorFileError(
                f"{meta_path} has format_version {meta.get('format_version')}, this amygdala "
                f"reads {' and '.join(map(str, _READABLE))} (format 1 bundles had unit-norm "
                "readers and no neutral statistics); re-export with `amygdala train ... "
                "--export-readout`")
        view = view_from_file(meta.get("recommended_view", "z"))
        if view is None:
            raise VectorFileError(
                f"{meta_path} names recommended_view {meta.get('recommended_view')!r}; "
                "expected z or relative (or raw, the old name of z): fix the field or "
                "re-export the bundle")
        try:
            layers = [int(x) for x in meta["layers"]]
            neutral = meta["neutral"]
            return cls(
                concepts=meta["concepts"], layers=layers,
                readers={x: arrays[f"layer_{x}.readers"] for x in layers},
                offsets={x: arrays[f"layer_{x}.offsets"] for x in layers},
                neutral_mean={x: np.asarray(neutral[str(x)]["mean"], np.float32)
                              for x in layers},
                neutral_std={x: np.asarray(neutral[str(x)]["std"], np.float32)
                             for x in layers},
                skip=int(meta["skip"]), n_neutral_tokens=int(meta["n_neutral_tokens"]),
                fit_pooling=meta["fit_pooling"], recommended_layers=meta["recommended_layers"],
                band=meta.get("band", []), view=view,
                method=meta["method"],
                normalisation=meta["normalisation"], shared=meta.get("shared_component", {}),
                provenance=meta.get("provenance", {}))
        except (KeyError, TypeError) as exc:
            raise VectorFileError(f"readout bundle in {path} lacks field {exc}; re-export "
                                  "it") from exc
