"""Backends by name: a `BackendSpec` per backend, imported on first use (see `get_backend`).

After fsspec's and einops' registries: a backend's module and its third-party library
are imported only when the backend is asked for, and a missing library becomes a
`MissingDependencyError` that says what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from amygdala.backends._loading import LoadedModel
from amygdala.backends._protocol import Ablation, Backend, Edit, Generation, Trace
from amygdala.errors import BackendError, MissingDependencyError

if TYPE_CHECKING:
    from amygdala.backends._architectures import ArchitectureMap

__all__ = ["BACKENDS", "Ablation", "Backend", "BackendSpec", "Edit", "Generation", "Trace",
           "available_backends", "get_backend", "register_backend"]


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _check_target(_: object, __: attrs.Attribute[str], value: str) -> None:
    module, sep, name = value.partition(":")
    if not (module and sep and name.isidentifier()):
        raise BackendError(
            f"a backend target must be 'package.module:ClassName', got {value!r}")


@attrs.frozen(kw_only=True)
class BackendSpec:
    """One registered backend.

    Attributes:
        name: what ``--backend`` and `get_backend` take.
        target: ``"package.module:ClassName"``; the class is called with a `LoadedModel`.
        requires: modules that must import for the backend to work (its third-party
            libraries; the target module itself imports them lazily).
        install_hint: the command that installs ``requires``.
        description: one line for `amygdala backends`.

    >>> BackendSpec(name="torch", target="amygdala.backends.torch_hooks:TorchHooksBackend",
    ...             requires=("torch",), install_hint="pip install torch").module
    'amygdala.backends.torch_hooks'
    """

    name: str
    target: str = attrs.field(validator=_check_target)
    requires: tuple[str, ...] = attrs.field(converter=_str_tuple, default=())
    install_hint: str = ""
    description: str = ""

    @property
    def module(self) -> str:
        """The module that defines the backend class."""
        return self.target.partition(":")[0]

    def missing(self) -> str | None:
        """Return why the backend cannot be imported here, or None when it can.

        Imports every module of ``requires``, then the target module.
        """
        for module in (*self.requires, self.module):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                return f"cannot import {module}: {exc}"
        return None

    def load(self) -> type[Any]:
        """Import and return the backend class.

        Raises:
            MissingDependencyError: a required library does not import (the message
                carries ``install_hint``).
        """
        reason = self.missing()
        if reason is not None:
            hint = f"; install it with `{self.install_hint}`" if self.install_hint else ""
            raise MissingDependencyError(f"backend {self.name!r} is not usable: {reason}{hint}")
        cls: type[Any] = getattr(importlib.import_module(self.module),
                                 self.target.partition(":")[2])
        return cls


_BUILT_IN = (
    BackendSpec(
        name="torch", target="amygdala.backends.torch_hooks:TorchHooksBackend",
        requires=("torch", "transformers"), install_hint="pip install torch transformers",
        description="raw PyTorch forward hooks on Hugging Face modules (Llama, Mistral, Qwen, "
        "Gemma, Phi-3, OLMo, GPT-2, GPT-NeoX; any other with an ArchitectureMap)"),
    BackendSpec(
        name="transformer_lens", target="amygdala.backends.transformer_lens:TransformerLensBackend",
        requires=("transformer_lens.model_bridge",),
        install_hint="pip install 'transformer-lens>=4'",
        description="TransformerLens 4.x TransformerBridge hook points"),
)

# name -> spec. Modules are imported on first use only.
BACKENDS: Final[dict[str, BackendSpec]] = {spec.name: spec for spec in _BUILT_IN}


def register_backend(spec: BackendSpec, *, replace: bool = False) -> None:
    """Add a backend to the registry (`get_backend`, ``--backend``, `amygdala backends`).

    Raises:
        BackendError: a backend of that name exists and ``replace`` is False.
    """
    if spec.name in BACKENDS and not replace:
        raise BackendError(
            f"a backend named {spec.name!r} is already registered; pick another name or "
            "pass replace=True")
    BACKENDS[spec.name] = spec


def available_backends() -> dict[str, str]:
    """Return ``{name: description}`` for every registered backend."""
    return {name: spec.description for name, spec in BACKENDS.items()}


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
        MissingDependencyError: the backend's library is not installed (the message
            says how to install it).
    """
    if name not in BACKENDS:
        raise BackendError(
            f"unknown backend {name!r}; expected one of {', '.join(sorted(BACKENDS))}"
        )
    options: dict[str, Any] = {}
    if architecture is not None:
        if name != "torch":
            raise BackendError(
                f"architecture= is for the torch backend; backend {name!r} finds modules "
                "itself. Drop the argument or use backend='torch'")
        options["architecture"] = architecture
    backend: Backend = BACKENDS[name].load()(loaded, **options)
    return backend
