"""llama.cpp control vectors (GGUF): export one concept, import any control vector.

Layout, as llama.cpp reads it (``llama-cli --control-vector FILE`` or
``--control-vector-scaled FILE:SCALE``):

- key ``general.architecture = "controlvector"``, ``controlvector.model_hint`` (the model
  family, e.g. ``llama``) and ``controlvector.layer_count`` (number of tensors);
- one float32 tensor ``direction.{L}`` of width ``d_model`` per steered layer.

llama.cpp adds ``direction.{L}`` to the output of 0-based block ``L`` (its loader puts
``direction.N`` at row ``N - 1`` of a buffer that the graph indexes from layer 1, and the
graph adds row ``il`` at the end of block ``il``). That is amygdala's ``resid_post`` of
layer ``L`` and Hugging Face's ``hidden_states[L + 1]``; repeng writes the same layout.
``direction.0`` is rejected by llama.cpp's loader, so layer 0 is never written (with a
warning). The tensor is the full vector added at every position: ``strength *
resid_norm[L] * direction``, with ``strength`` in units of the layer's typical residual
norm, like ``amygdala steer --alpha``.

amygdala also writes ``amygdala.*`` keys (concept, strength, per-layer residual norms,
method, model fingerprint) that llama.cpp ignores; `import_gguf` uses them to rebuild the
exact set, and falls back to the tensors' own norms for files from repeng or llama.cpp.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from amygdala._io import write_atomic_with
from amygdala.errors import (
    DimensionMismatchError,
    MissingDependencyError,
    UnknownSiteError,
    VectorFileError,
)
from amygdala.vectors._set import SteeringVectorSet

__all__ = [
    "DEFAULT_GGUF_BAND",
    "DEFAULT_GGUF_STRENGTH",
    "default_gguf_layers",
    "export_gguf",
    "import_gguf",
]

# Strength per layer, in units of that layer's typical residual norm. Steering one layer
# of SmolLM2 is useful at 0.05-0.3 and repeats tokens from 0.5 (docs/steering.md); a
# control vector adds at every layer of its band, and the additions accumulate in the
# residual stream, so the per-layer default is the single-layer range divided by the band.
# Measured with the default band (`amygdala eval-steer --gguf-band 5`, docs/steering.md):
# 0.02 and 0.04 stay fluent, 0.08 breaks every concept tried; 0.04 is the largest fluent one.
DEFAULT_GGUF_STRENGTH = 0.04
# Layers written by default: this many consecutive layers centred on the steering layer.
DEFAULT_GGUF_BAND = 5
_ARCH = "controlvector"


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - gguf is a dependency
        raise MissingDependencyError(
            f"GGUF control vectors need the 'gguf' package ({exc}); `pip install gguf`"
        ) from exc
    return gguf


def default_gguf_layers(vectors: SteeringVectorSet, center: int | None = None, *,
                        band: int = DEFAULT_GGUF_BAND) -> list[int]:
    """The layers a control vector covers by default.

    Args:
        vectors: the set to export from.
        center: the steering layer (default: the middle of the set's layers, as
            `amygdala.intervene.default_layer` picks without an evaluation).
        band: how many of the set's layers to take around ``center``.

    Returns:
        Up to ``band`` of the set's layers nearest to ``center`` (ties to the lower
        layer), in increasing order, never layer 0.

    >>> import numpy as np
    >>> vs = SteeringVectorSet(concepts=["a"], layers=range(30),
    ...     directions=np.ones((1, 30, 2)), raw_norm=np.ones((1, 30)), resid_norm=np.ones(30),
    ...     mean=np.zeros((30, 2)), std=np.ones((30, 2)), method="paired", normalisation="raw")
    >>> default_gguf_layers(vs)
    [13, 14, 15, 16, 17]
    """
    usable = [layer for layer in vectors.layers if layer > 0]
    if not usable:
        return []
    mid = vectors.layers[len(vectors.layers) // 2] if center is None else center
    nearest = sorted(usable, key=lambda layer: (abs(layer - mid), layer))[:band]
    return sorted(nearest)


def export_gguf(vectors: SteeringVectorSet, path: Path | str, concept: str, *,
                layers: Sequence[int] | None = None,
                strength: float = DEFAULT_GGUF_STRENGTH,
                model_hint: str = "llama") -> Path:
    """Write a llama.cpp control vector for one concept (see the module docstring).

    Args:
        vectors: the set holding ``concept``.
        path: the ``.gguf`` file to write (atomically).
        concept: which concept.
        layers: layers to write (default `default_gguf_layers`); layer 0 is skipped
            with a warning on stderr because llama.cpp rejects ``direction.0``.
        strength: per-layer strength in units of the layer's typical residual norm.
        model_hint: ``controlvector.model_hint``, the model family (``llama`` for SmolLM2).

    Returns:
        The path written.

    Raises:
        UnknownConceptError: ``concept`` is not in the set.
        UnknownSiteError: a layer is not in the set, or no layer is left to write.
    """
    gguf = _gguf()
    ci = vectors.concept_index(concept)
    chosen = list(layers) if layers is not None else default_gguf_layers(vectors)
    for layer in chosen:
        vectors.layer_index(layer)
    if 0 in chosen:
        print("warning: layer 0 is not written to the control vector: llama.cpp rejects "
              "direction.0 (steer the output of block 0 with `amygdala steer` instead)",
              file=sys.stderr)
        chosen = [layer for layer in chosen if layer != 0]
    if not chosen:
        raise UnknownSiteError(
            f"no layer to write for {concept!r}: expected layers >= 1 of {list(vectors.layers)}"
        )
    norms = [float(vectors.resid_norm[vectors.layer_index(layer)]) for layer in chosen]

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(str(tmp), _ARCH)
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(chosen))
        writer.add_string("amygdala.concept", concept)
        writer.add_float32("amygdala.strength", float(strength))
        writer.add_string("amygdala.layers", json.dumps(chosen))
        writer.add_string("amygdala.resid_norm", json.dumps(norms))
        writer.add_string("amygdala.raw_norm", json.dumps(
            [float(vectors.raw_norm[ci, vectors.layer_index(layer)]) for layer in chosen]))
        writer.add_string("amygdala.method", vectors.method)
        writer.add_string("amygdala.model_fingerprint",
                          str(vectors.provenance.get("model_fingerprint", "")))
        for layer in chosen:
            # Exactly what `amygdala steer` adds at this layer (unit direction x norm x
            # strength), so the file and the torch backend steer alike.
            vector = vectors.vector(concept, layer).steering(float(strength))
            writer.add_tensor(f"direction.{layer}", np.asarray(vector, np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return write_atomic_with(path, write)


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    return None if field is None else field.contents()


def import_gguf(path: Path | str, *, concept: str | None = None) -> SteeringVectorSet:
    """Read a llama.cpp control vector (written by amygdala, repeng or llama.cpp).

    ``direction.{L}`` becomes the vector of layer ``L`` (the output of 0-based block
    ``L``, as llama.cpp applies it). Files written by `export_gguf` come back with their
    concept, residual norms and method, so ``vector.steering(strength)`` reproduces the
    file's tensors. For other files the residual norm of each layer is taken to be the
    tensor's own norm (``resid_norm``): strength 1 then adds exactly the file's vector,
    which is what ``llama-cli --control-vector`` adds.

    Args:
        path: the ``.gguf`` file.
        concept: name of the concept (default: the file's ``amygdala.concept``, else
            its file name without ``.gguf``).

    Returns:
        A one-concept `SteeringVectorSet` with method ``gguf`` (or the exporter's),
        ``raw`` normalisation, zero mean and unit spread.

    Raises:
        VectorFileError: the file is not a control vector, or names a layer twice or
            badly, or holds a zero or non-finite vector.
        DimensionMismatchError: its tensors have different widths.
    """
    gguf = _gguf()
    source = Path(path)
    try:
        reader = gguf.GGUFReader(str(source))
    except (OSError, ValueError) as exc:
        raise VectorFileError(f"cannot read {source} as GGUF: {exc}") from exc
    arch = _field(reader, "general.architecture")
    if arch != _ARCH:
        raise VectorFileError(
            f"{source} has general.architecture {arch!r}, expected {_ARCH!r}: it is not a "
            "control vector (a model file?); export one with `amygdala train --export-gguf`"
        )
    found: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        prefix, _, number = tensor.name.partition(".")
        if prefix != "direction" or not number.isdigit() or int(number) == 0:
            raise VectorFileError(
                f"{source} holds tensor {tensor.name!r}; a control vector holds only "
                "direction.N with N >= 1 (the output of 0-based block N)"
            )
        layer = int(number)
        if layer in found:
            raise VectorFileError(f"{source} holds direction.{layer} twice")
        found[layer] = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
    if not found:
        raise VectorFileError(f"{source} holds no direction.N tensor")
    layers = sorted(found)
    widths = {found[layer].shape[0] for layer in layers}
    if len(widths) != 1:
        raise DimensionMismatchError(f"{source}: direction tensors of widths {sorted(widths)}")
    vectors = np.stack([found[layer] for layer in layers])
    norms = np.linalg.norm(vectors, axis=1)
    if not np.isfinite(vectors).all() or (norms == 0).any():
        raise VectorFileError(f"{source} holds a zero or non-finite direction")
    strength = _field(reader, "amygdala.strength")
    saved_layers = _field(reader, "amygdala.layers")
    saved_norms = _field(reader, "amygdala.resid_norm")
    saved_raw = _field(reader, "amygdala.raw_norm")
    ours = (strength is not None and saved_norms is not None and saved_raw is not None
            and json.loads(saved_layers or "[]") == layers)
    if ours:
        resid_norm = np.asarray(json.loads(saved_norms), dtype=np.float32)
        raw_norm = np.asarray(json.loads(saved_raw), dtype=np.float32)
    else:
        resid_norm = norms.astype(np.float32)
        raw_norm = np.ones_like(norms)
    name = concept or _field(reader, "amygdala.concept") or source.name.removesuffix(".gguf")
    d = widths.pop()
    provenance = {
        "source": "gguf", "file": str(source.resolve()),
        "model_hint": _field(reader, "controlvector.model_hint"),
        "model_fingerprint": _field(reader, "amygdala.model_fingerprint") or None,
        "strength_unit": ("typical residual norm (from the exporter)" if ours
                          else "the file's own vector norm per layer"),
    }
    if ours:
        provenance["exported_strength"] = float(strength)
    return SteeringVectorSet(
        concepts=[str(name)], layers=layers, directions=(vectors / norms[:, None])[None],
        raw_norm=raw_norm[None].astype(np.float32), resid_norm=resid_norm,
        mean=np.zeros((len(layers), d), np.float32), std=np.ones((len(layers), d), np.float32),
        method=str(_field(reader, "amygdala.method") or "gguf"), normalisation="raw",
        provenance=provenance,
    )

