"""Stage 2, the backends: a loaded model and interchangeable ways to capture and edit it."""

from amygdala.backends._architectures import (
    ARCHITECTURES,
    ArchitectureMap,
    register_architecture,
)
from amygdala.backends._attach import attach
from amygdala.backends._hooked import HookedBackend, remover, resid_mid_shift
from amygdala.backends._loading import DEFAULT_MODEL, LoadedModel, load_model, model_dims
from amygdala.backends._protocol import Ablation, Backend, Edit, Generation, TokenBatch, Trace
from amygdala.backends._registry import (
    BACKENDS,
    BackendSpec,
    available_backends,
    get_backend,
    register_backend,
)

__all__ = [
    "ARCHITECTURES",
    "BACKENDS",
    "DEFAULT_MODEL",
    "Ablation",
    "ArchitectureMap",
    "Backend",
    "BackendSpec",
    "Edit",
    "Generation",
    "HookedBackend",
    "LoadedModel",
    "TokenBatch",
    "Trace",
    "attach",
    "available_backends",
    "get_backend",
    "load_model",
    "model_dims",
    "register_architecture",
    "register_backend",
    "remover",
    "resid_mid_shift",
]
