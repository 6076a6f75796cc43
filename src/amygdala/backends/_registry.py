"""Backends: interchangeable ways to capture and edit activations (see `get_backend`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from amygdala.backends._loading import LoadedModel
from amygdala.backends._protocol import Ablation, Backend, Edit, Generation, Trace
from amygdala.errors import BackendError, MissingDependencyError

if TYPE_CHECKING:
    from amygdala.backends._architectures import ArchitectureMap

__all__ = ["BACKENDS", "Ablation", "Backend", "Edit", "Generation", "Trace", "available_backends",
           "get_backend"]

# name -> (module, class, what it needs). Modules are imported on first use only.
BACKENDS: Final[dict[str, tuple[str, str, str]]] = {
    "torch": ("amygdala.backends.torch_hooks", "TorchHooksBackend",
              "raw PyTorch forward hooks on Hugging Face modules (Llama, Mistral, Qwen, "
              "Gemma, Phi-3, OLMo, GPT-2, GPT-NeoX; any other with an ArchitectureMap)"),
    "transformer_lens": ("amygdala.backends.transformer_lens", "TransformerLensBackend",
                         "TransformerLens 4.x TransformerBridge hook points"),
}


def available_backends() -> dict[str, str]:
    """Return ``{name: description}`` for every registered backend."""
    return {name: spec[2] for name, spec in BACKENDS.items()}


def get_backend(
    name: str, loaded: LoadedModel, *, architecture: ArchitectureMap | None = None
) -> Backend:
    """Build the backend called ``name`` around a loaded model.

    Args:
        name: a key of `BACKENDS` (``torch`` or ``transformer_lens``).
        loaded: the model.
        architecture: module paths for a model the torch backend does not know
            (see `amygdala.backends.ArchitectureMap`); torch backend only.

    Raises:
        BackendError: no backend of that name (the message lists them), or an
            ``architecture`` for a backend that does not use one.
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
    options: dict[str, Any] = {}
    if architecture is not None:
        if name != "torch":
            raise BackendError(
                f"architecture= is for the torch backend; backend {name!r} finds modules "
                "itself. Drop the argument or use backend='torch'")
        options["architecture"] = architecture
    backend: Backend = getattr(module, class_name)(loaded, **options)
    return backend
