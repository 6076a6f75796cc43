"""Interop: steering-vectors' and repeng's in-memory vectors, and a Hub-style folder.

All three other formats put one vector per layer at the *output of decoder block
L*, which is amygdala's ``resid_post`` of layer ``L``:

- steering-vectors (``steering_vectors.SteeringVector``, ``layer_type="decoder_block"``):
  ``layer_activations[L]`` is added (times ``multiplier``) to block L's output;
- repeng (``repeng.ControlVector``): ``directions[L]`` is added (times the control
  coefficient) to ``model.layers[L]``'s output; repeng trains with negative layer
  ids (``-1`` is the last block), so imports need the model's layer count for those.

Exports hold ``alpha * resid_norm[L] * direction`` (the vector `steer` adds at that
alpha), so multiplier / coefficient 1 reproduces amygdala's steering. Imports take
each layer's own vector norm as its ``resid_norm`` (as `import_gguf` does): alpha 1
adds exactly the imported vector.

``save_pretrained`` / ``from_pretrained`` write and read a local folder in the Hugging
Face Hub layout (``config.json``, the weights as safetensors, ``README.md`` model card
with metadata), ready for ``huggingface_hub.upload_folder``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from amygdala._io import write_atomic
from amygdala.errors import (
    DimensionMismatchError,
    MissingDependencyError,
    VectorFileError,
)
from amygdala.vectors._files import VECTORS_ARRAYS, VECTORS_META
from amygdala.vectors._set import SteeringVectorSet

__all__ = [
    "HUB_FORMAT",
    "from_control_vector",
    "from_pretrained",
    "from_steering_vector",
    "save_pretrained",
    "to_control_vector",
    "to_steering_vector",
]

HUB_FORMAT = "amygdala-vectors/1"


def _chosen_layers(vectors: SteeringVectorSet, layers: Sequence[int] | None) -> list[int]:
    chosen = list(vectors.layers) if layers is None else [int(x) for x in layers]
    for layer in chosen:
        vectors.layer_index(layer)
    return chosen


def _steering(vectors: SteeringVectorSet, concept: str, alpha: float,
              layers: Sequence[int] | None) -> dict[int, np.ndarray]:
    return {layer: vectors.vector(concept, layer).steering(alpha).astype(np.float32)
            for layer in _chosen_layers(vectors, layers)}


def _from_layer_vectors(found: Mapping[int, np.ndarray], *, concept: str, method: str,
                        provenance: dict[str, Any], what: str) -> SteeringVectorSet:
    if not found:
        raise VectorFileError(f"{what} holds no layer vector")
    layers = sorted(found)
    widths = {found[layer].shape[0] for layer in layers}
    if len(widths) != 1:
        raise DimensionMismatchError(f"{what}: vectors of widths {sorted(widths)} at layers "
                                     f"{layers}; expected one d_model")
    stacked = np.stack([found[layer] for layer in layers]).astype(np.float32)
    norms = np.linalg.norm(stacked, axis=1)
    if not np.isfinite(stacked).all() or (norms == 0).any():
        raise VectorFileError(f"{what} holds a zero or non-finite vector")
    d = widths.pop()
    return SteeringVectorSet(
        concepts=[concept], layers=layers, directions=(stacked / norms[:, None])[None],
        raw_norm=np.ones((1, len(layers)), np.float32), resid_norm=norms.astype(np.float32),
        mean=np.zeros((len(layers), d), np.float32), std=np.ones((len(layers), d), np.float32),
        method=method, normalisation="raw",
        provenance={**provenance, "strength_unit": "the imported vector's own norm per layer"},
    )


# ----- steering-vectors -----------------------------------------------------------------


def _steering_vectors_module() -> Any:
    try:
        import steering_vectors
    except Exception as exc:  # an installed but broken package fails in many ways
        raise MissingDependencyError(
            f"steering-vectors cannot be imported ({type(exc).__name__}: {exc}); install it "
            "with `pip install 'amygdala-lens[steering-vectors]'` (or `pip install "
            "steering-vectors`)") from exc
    return steering_vectors


def to_steering_vector(vectors: SteeringVectorSet, concept: str, *, alpha: float = 0.1,
                       layers: Sequence[int] | None = None) -> Any:
    """Export one concept as a ``steering_vectors.SteeringVector`` (decoder-block layers).

    ``sv.apply(model, multiplier=1.0)`` then adds what ``steer(backend, vectors,
    {concept: alpha}, layers=layers)`` adds.

    Args:
        vectors: the set.
        concept: the concept to export.
        alpha: strength in units of each layer's typical residual norm.
        layers: layers to include (default: every layer of the set).

    Raises:
        MissingDependencyError: steering-vectors is not installed.
        UnknownConceptError: ``concept`` is not in the set.
        UnknownSiteError: a layer is not in the set.
    """
    module = _steering_vectors_module()
    import torch

    per_layer = _steering(vectors, concept, alpha, layers)
    return module.SteeringVector(
        layer_activations={layer: torch.from_numpy(v) for layer, v in per_layer.items()},
        layer_type="decoder_block",
    )


def from_steering_vector(vector: Any, *, concept: str,
                         model_id: str | None = None) -> SteeringVectorSet:
    """Import a ``steering_vectors.SteeringVector`` (``layer_type="decoder_block"``).

    Args:
        vector: the steering-vectors object.
        concept: the name to give it.
        model_id: the model it was trained on, for provenance.

    Raises:
        VectorFileError: another layer type, a negative layer, or zero/non-finite vectors.
        DimensionMismatchError: layers of different widths.
    """
    layer_type = getattr(vector, "layer_type", "decoder_block")
    if layer_type != "decoder_block":
        raise VectorFileError(
            f"steering vector has layer_type {layer_type!r}; amygdala steers the residual "
            "stream at decoder-block outputs, so only layer_type='decoder_block' imports")
    found: dict[int, np.ndarray] = {}
    for layer, tensor in dict(vector.layer_activations).items():
        if int(layer) < 0:
            raise VectorFileError(f"steering vector has layer {layer}; expected layers >= 0")
        found[int(layer)] = np.asarray(tensor.detach().float().cpu().numpy()).reshape(-1)
    return _from_layer_vectors(found, concept=concept, method="steering-vectors",
                               provenance={"source": "steering-vectors", "model_id": model_id},
                               what="the steering vector")


# ----- repeng ----------------------------------------------------------------------------


def _repeng_module() -> Any:
    try:
        import repeng
    except Exception as exc:  # repeng 0.4 fails with AttributeError under NumPy 2
        raise MissingDependencyError(
            f"repeng cannot be imported ({type(exc).__name__}: {exc}); install it with "
            "`pip install 'amygdala-lens[repeng]'` (repeng 0.4 needs NumPy < 2)") from exc
    return repeng


def to_control_vector(vectors: SteeringVectorSet, concept: str, *, alpha: float = 0.1,
                      layers: Sequence[int] | None = None,
                      model_type: str | None = None) -> Any:
    """Export one concept as a ``repeng.ControlVector``.

    ``ControlModel.set_control(cv, 1.0)`` then adds what ``steer`` adds at ``alpha``.

    Args:
        vectors: the set.
        concept: the concept to export.
        alpha: strength in units of each layer's typical residual norm.
        layers: layers to include (default: every layer of the set).
        model_type: repeng's ``model_type`` (default: the set's model id).

    Raises:
        MissingDependencyError: repeng is not installed or does not import.
    """
    module = _repeng_module()
    per_layer = _steering(vectors, concept, alpha, layers)
    name = model_type or str(vectors.provenance.get("model_id") or "unknown")
    return module.ControlVector(model_type=name, directions=per_layer)


def from_control_vector(vector: Any, *, concept: str,
                        n_layers: int | None = None) -> SteeringVectorSet:
    """Import a ``repeng.ControlVector`` (``directions[L]`` at block L's output).

    Args:
        vector: the repeng object.
        concept: the name to give it.
        n_layers: the model's layer count; needed when the vector uses negative layer
            ids (repeng's default: ``-1`` is the last block).

    Raises:
        VectorFileError: negative layers without ``n_layers``, a layer out of range, or
            zero/non-finite vectors.
        DimensionMismatchError: layers of different widths.
    """
    found: dict[int, np.ndarray] = {}
    for key, value in dict(vector.directions).items():
        layer = int(key)
        if layer < 0:
            if n_layers is None:
                raise VectorFileError(
                    f"control vector uses negative layer {layer} (counted from the end); "
                    "pass n_layers=model.config.num_hidden_layers to place it")
            layer += n_layers
        if layer < 0 or (n_layers is not None and layer >= n_layers):
            raise VectorFileError(f"control vector layer {key} is outside 0..{n_layers}")
        if layer in found:
            raise VectorFileError(f"control vector names layer {layer} twice")
        found[layer] = np.asarray(value, dtype=np.float32).reshape(-1)
    model_type = getattr(vector, "model_type", None)
    return _from_layer_vectors(found, concept=concept, method="repeng",
                               provenance={"source": "repeng", "model_type": model_type},
                               what="the control vector")


# ----- Hugging Face Hub-style folder -----------------------------------------------------


def _model_card(vectors: SteeringVectorSet) -> str:
    p = vectors.provenance
    base = p.get("model_id")
    lines = ["---", "library_name: amygdala", "tags:", "- steering-vectors", "- emotion",
             "- interpretability"]
    if base and not Path(str(base)).is_absolute():
        lines.append(f"base_model: {base}")
    lines += ["---", "", f"# Steering vectors: {', '.join(vectors.concepts)}", "",
              f"Trained with amygdala ({vectors.method}, {vectors.normalisation}) on "
              f"{base or 'an unrecorded model'} (fingerprint "
              f"{p.get('model_fingerprint', 'unknown')}), layers "
              f"{vectors.layers[0]}-{vectors.layers[-1]} (resid_post).", "",
              "```python", "from amygdala.vectors import from_pretrained",
              "vectors = from_pretrained('PATH')", "```", ""]
    return "\n".join(lines)


def save_pretrained(vectors: SteeringVectorSet, directory: Path | str) -> Path:
    """Write ``vectors`` as a Hub-style folder: ``config.json``, weights, ``README.md``.

    The weights are the same ``vectors.safetensors`` + ``vectors.json`` that
    `SteeringVectorSet.save` writes; ``config.json`` says what the folder holds and
    ``README.md`` is a model card with Hub metadata. Every file is written atomically.
    """
    out = vectors.save(directory)
    config = {
        "format": HUB_FORMAT, "library_name": "amygdala", "concepts": list(vectors.concepts),
        "layers": list(vectors.layers), "site": "resid_post",
        "d_model": int(vectors.directions.shape[2]), "method": vectors.method,
        "normalisation": vectors.normalisation,
        "model_id": vectors.provenance.get("model_id"),
        "model_fingerprint": vectors.provenance.get("model_fingerprint"),
        "files": [VECTORS_ARRAYS, VECTORS_META],
    }
    write_atomic(out / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    write_atomic(out / "README.md", _model_card(vectors).encode())
    return out


def from_pretrained(directory: Path | str) -> SteeringVectorSet:
    """Read a folder written by `save_pretrained` (e.g. a downloaded Hub snapshot).

    Raises:
        VectorFileError: not a local directory, no or a foreign ``config.json``, or the
            weights are missing or malformed.
    """
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise VectorFileError(
            f"{path} is not a local directory; from_pretrained reads local folders only. "
            "For a Hub repository, download it first: "
            "`huggingface_hub.snapshot_download(repo_id)` and pass the returned path")
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VectorFileError(f"cannot read {config_path} ({exc}); expected a folder "
                              "written by amygdala.vectors.save_pretrained") from exc
    if not isinstance(config, dict) or config.get("format") != HUB_FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise VectorFileError(
            f"{config_path} has format {found!r}, expected {HUB_FORMAT!r}: it is not an "
            "amygdala vector folder (a model checkpoint?)")
    vectors = SteeringVectorSet.load(path)
    if list(vectors.concepts) != config.get("concepts") or \
            list(vectors.layers) != config.get("layers"):
        raise VectorFileError(f"{config_path} does not match the vectors next to it "
                              "(concepts or layers differ); the folder was edited by hand")
    return vectors
