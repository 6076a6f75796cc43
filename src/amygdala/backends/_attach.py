"""Wrap a model the user already loaded (any device, any dtype) in a backend.

`load_model` is one way in; people coming from steering-vectors, repeng or plain
``transformers`` already hold a model and its tokenizer. `attach` builds the
`LoadedModel` around them (fingerprint computed from the weights) and returns the
backend, so `steer`, `read`, `Monitor` and capture work on it unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from amygdala.backends._loading import LoadedModel, fingerprint
from amygdala.backends._registry import Backend, get_backend
from amygdala.errors import BackendError

if TYPE_CHECKING:
    from amygdala.backends._architectures import ArchitectureMap

__all__ = ["attach", "wrap_model"]


def _check_model(model: Any) -> None:
    if not hasattr(model, "config") or not hasattr(model, "get_submodule"):
        raise BackendError(
            f"attach needs a Hugging Face causal LM (a torch.nn.Module with .config), got "
            f"{type(model).__name__}; load one with "
            "transformers.AutoModelForCausalLM.from_pretrained(...)"
        )


def wrap_model(model: Any, tokenizer: Any, *, model_id: str | None = None,
               with_fingerprint: bool = True, prepare: bool = True) -> LoadedModel:
    """Describe an already loaded model as a `LoadedModel`.

    Args:
        model: a Hugging Face causal LM, on any device, in any dtype.
        tokenizer: its tokenizer, or None when only steering (no capture) is needed.
        model_id: a name for provenance (default: the config's ``_name_or_path``,
            else the class name).
        with_fingerprint: compute the weights' fingerprint (milliseconds on small
            models; skipped by `steering`, which stores nothing).
        prepare: put the model in eval mode and give a tokenizer without a pad token
            its end-of-sequence token (what capture needs); `steering` leaves the
            model as it is.

    Raises:
        BackendError: ``model`` is not a Hugging Face model.
    """
    _check_model(model)
    if prepare:
        # Dropout in train mode would make captured activations random.
        model.eval()
        if tokenizer is not None and getattr(tokenizer, "pad_token", None) is None:
            tokenizer.pad_token = tokenizer.eos_token
    name_or_path = str(getattr(model.config, "_name_or_path", "") or "")
    source = name_or_path if name_or_path and Path(name_or_path).is_dir() else ""
    return LoadedModel(
        model=model, tokenizer=tokenizer,
        model_id=model_id or name_or_path or type(model).__name__,
        fingerprint=fingerprint(model) if with_fingerprint else "",
        source=source,
    )


def attach(
    model: Any, tokenizer: Any, backend: str = "torch", *,
    architecture: ArchitectureMap | None = None, model_id: str | None = None,
) -> Backend:
    """Wrap a model you already loaded in an amygdala backend.

    The model stays where it is (CPU or GPU, float32, bfloat16 or float16); inputs
    are moved to its device and captured activations come back as float32 on the
    CPU. The model is put in eval mode, and a tokenizer without a pad token gets
    its end-of-sequence token as pad token (capture pads batches on the right).

    Args:
        model: a Hugging Face causal LM (``AutoModelForCausalLM.from_pretrained``).
        tokenizer: its tokenizer.
        backend: ``"torch"`` (hooks on the model's own modules; see
            `amygdala.backends.ARCHITECTURES`) or ``"transformer_lens"`` (wraps the
            model in a TransformerLens bridge, which replaces its modules in place).
        architecture: module paths for an architecture the torch backend does not
            know (`amygdala.backends.ArchitectureMap`).
        model_id: a name recorded in the provenance of vectors trained through it.

    Returns:
        The backend; pass it to `amygdala.steer`, `amygdala.read`, `Monitor`,
        `ActivationStore.ensure` or a `Session`.

    Raises:
        BackendError: ``model`` is not a Hugging Face model, or the backend is unknown.
        UnsupportedArchitectureError: the torch backend has no map for the model.

    >>> from transformers import AutoModelForCausalLM, AutoTokenizer  # doctest: +SKIP
    >>> model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")  # doctest: +SKIP
    >>> backend = attach(model, AutoTokenizer.from_pretrained(path))  # doctest: +SKIP
    """
    loaded = wrap_model(model, tokenizer, model_id=model_id)
    return get_backend(backend, loaded, architecture=architecture)
