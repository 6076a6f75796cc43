"""Backends: interchangeable ways to capture and edit activations (see `get_backend`)."""

from __future__ import annotations

import importlib
from typing import Final

from amygdala.backends._loading import LoadedModel
from amygdala.backends._protocol import Ablation, Backend, Edit, Generation, Trace
from amygdala.errors import BackendError, MissingDependencyError

__all__ = ["BACKENDS", "Ablation", "Backend", "Edit", "Generation", "Trace", "available_backends",
           "get_backend"]

# name -> (module, class, what it needs). Modules are imported on first use only.
BACKENDS: Final[dict[str, tuple[str, str, str]]] = {
    "torch": ("amygdala.backends.torch_hooks", "TorchHooksBackend",
              "raw PyTorch forward hooks on Hugging Face modules (Llama family, GPT-2)"),
    "transformer_lens": ("amygdala.backends.transformer_lens", "TransformerLensBackend",
                         "TransformerLens 4.x TransformerBridge hook points"),
}


def available_backends() -> dict[str, str]:
    """Return ``{name: description}`` for every registered backend."""
    return {name: spec[2] for name, spec in BACKENDS.items()}


def get_backend(name: str, loaded: LoadedModel) -> Backend:
    """Build the backend called ``name`` around a loaded model.

    Raises:
        BackendError: no backend of that name (the message lists them).
        MissingDependencyError: the backend's library is not installed.
    """
    if name not in BACKENDS:
        raise BackendError(
            f"unknown backend {name!r}; expected one of {', '.join(sorted(BACKENDS))}"
        )
    module_name, class_name, _ = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(f"backend {name!r} cannot be imported: {exc}") from exc
    backend: Backend = getattr(module, class_name)(loaded)
    return backend
