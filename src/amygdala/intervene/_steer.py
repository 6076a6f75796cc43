"""Steering: add concept directions to the residual stream, or scale a concept's circuit.

Two modes share one shape, a context manager around ordinary generation:

- `steer` adds ``alpha * resid_norm[layer] * direction`` at chosen layers and
  positions (``all``, ``prompt`` or ``generated``), for one or several concepts.
  ``alpha`` is in units of the layer's typical per-token residual norm, so the
  same alpha means about the same push at every layer.
- `modulate` scales the neurons and heads of a concept's circuit
  (``Circuit.ablations(mode="scale", factor=s)``) instead of adding a vector.

Positions are absolute (the backend's `Edit` counts from the first token of the
whole sequence), so steering means the same with and without a KV cache.
``generated`` steers positions ``>= prompt_len``: the first new token is chosen
from the unsteered prompt, and every later one sees the edit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

from amygdala._types import Site
from amygdala.backends._registry import Ablation, Backend, Edit, Generation
from amygdala.errors import CircuitMissingError, UnknownConceptError
from amygdala.vectors._run import RunContext, RunDir, best_layer
from amygdala.vectors._set import SteeringVectorSet

__all__ = [
    "POSITIONS",
    "CircuitMissingError",
    "Positions",
    "RunContext",
    "circuit_ablations",
    "default_layer",
    "modulate",
    "open_run",
    "prompt_length",
    "steer",
    "steered_generate",
    "steering_edits",
]

Positions = Literal["all", "prompt", "generated"]
POSITIONS: tuple[Positions, ...] = get_args(Positions)


def default_layer(vectors: SteeringVectorSet, run_dir: Path | str | None = None) -> int:
    """The steering layer to use when none is given: the run's best layer.

    `amygdala.vectors.best_layer` on ``RUN_DIR/evaluation.json`` (the layer the nested
    evaluation recommends for the vectors' method, when the set has it), else the middle
    of the set's layers.

    >>> import numpy as np
    >>> vs = SteeringVectorSet(concepts=["a"], layers=[0, 1, 2],
    ...     directions=np.ones((1, 3, 2)), raw_norm=np.ones((1, 3)), resid_norm=np.ones(3),
    ...     mean=np.zeros((3, 2)), std=np.ones((3, 2)), method="paired", normalisation="raw")
    >>> default_layer(vs)
    1
    """
    if run_dir is None:
        return best_layer(None, vectors.method, vectors.layers).layer
    return RunDir(run_dir).best_layer(vectors).layer


def _span(positions: Positions, prompt_len: int | None) -> tuple[int, int | None]:
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
    if positions == "all":
        return 0, None
    if prompt_len is None or prompt_len < 0:
        raise ValueError(
            f"positions={positions!r} needs prompt_len (the prompt's token count); "
            "pass it, use steered_generate (which computes it), or positions='all'"
        )
    return (prompt_len, None) if positions == "generated" else (0, prompt_len)


def steering_edits(
    vectors: SteeringVectorSet, alphas: Mapping[str, float], *,
    layers: Sequence[int] | None = None, positions: Positions = "all",
    prompt_len: int | None = None,
) -> list[Edit]:
    """Build the backend edits that steer ``alphas`` (``{concept: alpha}``) at ``layers``.

    Vectors of several concepts at one layer are summed into one edit.

    Args:
        vectors: the steering vectors.
        alphas: strength per concept, in units of the layer's typical residual norm.
        layers: resid_post layers to steer (default: `default_layer`).
        positions: ``all``, ``prompt`` (positions < prompt_len) or ``generated``.
        prompt_len: token count of the prompt; needed unless positions is ``all``.

    Raises:
        UnknownConceptError: a concept is not in the set (the message lists them).
        UnknownSiteError: a layer has no vectors.
    """
    start, stop = _span(positions, prompt_len)
    chosen = list(layers) if layers is not None else [default_layer(vectors)]
    if not alphas:
        raise UnknownConceptError(
            f"no concepts to steer; pass {{concept: alpha}} with concepts from "
            f"{', '.join(vectors.concepts)}"
        )
    edits = []
    for layer in chosen:
        total = sum(vectors.vector(c, layer).steering(float(a)) for c, a in alphas.items())
        edits.append(Edit(site=Site(layer=layer), vector=total, start=start, stop=stop))
    return edits


@contextmanager
def steer(
    backend: Backend, vectors: SteeringVectorSet, alphas: Mapping[str, float], *,
    layers: Sequence[int] | None = None, positions: Positions = "all",
    prompt_len: int | None = None,
) -> Iterator[list[Edit]]:
    """Steer every forward call inside the block; hooks are removed on every exit.

    Args:
        backend: the model's backend.
        vectors: the steering vectors (from the same model).
        alphas: ``{concept: alpha}``; alpha in units of the layer's residual norm.
        layers: layers to steer (default: `default_layer`).
        positions: ``all``, ``prompt`` or ``generated`` (the last two need ``prompt_len``).
        prompt_len: the prompt's token count (`prompt_length`).

    Yields:
        The edits in force.

    >>> with steer(backend, vectors, {"joyful": 4.0}, layers=[12]):  # doctest: +SKIP
    ...     print(backend.generate("Describe your morning.").text)
    """
    edits = steering_edits(vectors, alphas, layers=layers, positions=positions,
                           prompt_len=prompt_len)
    with backend.editing(edits):
        yield edits


@contextmanager
def modulate(backend: Backend, ablations: Sequence[Ablation]) -> Iterator[None]:
    """Scale a circuit's neurons and heads inside the block (at every position).

    >>> with modulate(backend, circuit_ablations(run, "joyful", 3.0)):  # doctest: +SKIP
    ...     print(backend.generate("Describe your morning.").text)
    """
    with backend.ablating(ablations):
        yield


def circuit_ablations(run_dir: Path | str, concept: str, factor: float) -> list[Ablation]:
    """Ablations that multiply ``concept``'s circuit by ``factor`` (``> 1`` enhances it).

    Reads ``RUN_DIR/circuits/<concept>.json`` with `amygdala.diagnose._circuits.Circuit`.

    Raises:
        CircuitMissingError: no circuit file; ``amygdala circuits RUN_DIR`` writes them.
    """
    path = RunDir(run_dir).circuit(concept)
    if not path.is_file():
        raise CircuitMissingError(
            f"no circuit for {concept!r} at {path}; run `amygdala circuits {run_dir}` first, "
            "or steer with a vector (alpha) instead"
        )
    from amygdala.diagnose._circuits import Circuit  # type: ignore[import-not-found,unused-ignore]

    circuit = Circuit.load(path)
    return list(circuit.ablations(mode="scale", factor=float(factor)))


def prompt_length(backend: Backend, prompt: str, *, chat: bool = False) -> int:
    """Token count of ``prompt`` as `Backend.generate` will feed it (chat template too)."""
    return int(backend.prompt_ids(prompt, chat=chat).shape[1])


def steered_generate(
    backend: Backend, prompt: str, *, vectors: SteeringVectorSet | None = None,
    alphas: Mapping[str, float] | None = None, layers: Sequence[int] | None = None,
    positions: Positions = "all", ablations: Sequence[Ablation] = (),
    max_new_tokens: int = 40, chat: bool = False, use_cache: bool | None = None,
    do_sample: bool = False, temperature: float = 1.0, seed: int = 0,
) -> Generation:
    """Generate with vector steering and/or circuit modulation (greedy by default).

    With neither ``alphas`` nor ``ablations`` this is plain generation.

    Args:
        backend: the model's backend.
        prompt: the user's text.
        vectors: steering vectors (needed with ``alphas``).
        alphas: ``{concept: alpha}``.
        layers: steering layers (default: `default_layer`).
        positions: which positions the vectors are added at.
        ablations: circuit modulation (`circuit_ablations`), applied at every position.
        use_cache: KV cache on or off; ``None`` keeps the backend's default (the
            transformer_lens backend decodes without the cache, see its docs).
        max_new_tokens: as in `Backend.generate`.
        chat: as in `Backend.generate`.
        do_sample: as in `Backend.generate`.
        temperature: as in `Backend.generate`.
        seed: as in `Backend.generate`.
    """
    options: dict[str, Any] = {} if use_cache is None else {"use_cache": use_cache}
    with _steering(backend, prompt, vectors, alphas, layers, positions, ablations, chat):
        return backend.generate(prompt, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                temperature=temperature, seed=seed, chat=chat, **options)


@contextmanager
def _steering(
    backend: Backend, prompt: str, vectors: SteeringVectorSet | None,
    alphas: Mapping[str, float] | None, layers: Sequence[int] | None, positions: Positions,
    ablations: Sequence[Ablation], chat: bool,
) -> Iterator[None]:
    active = {c: a for c, a in (alphas or {}).items() if a != 0.0}
    if active and vectors is None:
        raise ValueError("alphas need vectors: pass vectors=SteeringVectorSet.load(RUN_DIR)")
    with backend.ablating(ablations):
        if not active or vectors is None:
            yield
            return
        prompt_len = None if positions == "all" else prompt_length(backend, prompt, chat=chat)
        with steer(backend, vectors, active, layers=layers, positions=positions,
                   prompt_len=prompt_len):
            yield


def open_run(
    run_dir: Path | str, *, backend: Backend | None = None, device: str | None = None,
    dtype: str | None = None,
) -> RunContext:
    """Load ``RUN_DIR``'s vectors and the model/backend named in its ``run.json``.

    The same as ``RunDir(run_dir).open(...)`` (`amygdala.vectors.RunDir.open`).

    Args:
        run_dir: a directory written by ``amygdala train``.
        backend: reuse an already built backend (must be the run's model).
        device: where to load the model (default ``auto``: CUDA when available).
        dtype: the model's dtype (default: the one the run was trained in, else float32).

    Raises:
        VectorFileError: the vectors are missing or malformed.
        UnknownSiteError: the backend's model does not match the vectors.
    """
    return RunDir(run_dir).open(backend=backend, device=device, dtype=dtype)
