"""The `Backend` protocol and the value objects its operations take."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Literal, NamedTuple, Protocol

import attrs
import torch
from jaxtyping import Float

from amygdala._types import ModelDims, Pooling, Site
from amygdala.errors import DimensionMismatchError, NonFiniteError, UnknownSiteError

__all__ = [
    "Ablation",
    "AblationMode",
    "Backend",
    "CapturedBatch",
    "Component",
    "Edit",
    "Generation",
    "TokenBatch",
    "TokenInputs",
    "Trace",
]

Component = Literal["neurons", "heads"]
AblationMode = Literal["zero", "mean", "scale"]
# What `Backend.logits` runs on: texts, token-id lists, or a ``[batch, seq]`` id tensor.
TokenInputs = Sequence[str] | Sequence[Sequence[int]] | torch.Tensor


def _as_float_vector(value: object) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float32)
    if tensor.ndim != 1:
        raise DimensionMismatchError(
            f"an edit vector must be 1-D [width], got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise NonFiniteError("vector contains NaN or infinity; check how it was computed")
    return tensor


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@attrs.frozen(kw_only=True)
class Edit:
    """Add ``vector`` to the activation at ``site`` for absolute positions [start, stop).

    Positions count from the first token of the whole sequence, also under a KV
    cache: during generation, decode step t sees only position ``prompt_len + t``.
    """

    site: Site
    vector: Float[torch.Tensor, " width"] = attrs.field(converter=_as_float_vector)
    start: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    stop: int | None = None


@attrs.frozen(kw_only=True)
class Ablation:
    """Zero, mean-replace or scale chosen MLP neurons or attention heads at one layer.

    Attributes:
        layer: the block whose neurons/heads are changed.
        component: ``"neurons"`` (inputs of the MLP down projection) or ``"heads"``
            (per-head outputs before the attention output projection).
        indices: neuron or head indices.
        mode: ``zero``; ``mean`` (replace by ``means``, the component's mean
            activation, shape [d_mlp] or [heads * d_head]); ``scale`` (multiply by ``factor``).
        rows: batch rows to change (all when None): lets one batched pass try a
            different ablation on each row.
    """

    layer: int = attrs.field(validator=attrs.validators.ge(0))
    component: Component = attrs.field(validator=attrs.validators.in_(("neurons", "heads")))
    indices: tuple[int, ...] = attrs.field(converter=_int_tuple)
    mode: AblationMode = attrs.field(
        default="zero", validator=attrs.validators.in_(("zero", "mean", "scale"))
    )
    factor: float = 0.0
    means: torch.Tensor | None = None
    rows: tuple[int, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if self.mode == "mean" and self.means is None:
            raise ValueError(
                "mean ablation needs `means`: the component's mean activation over "
                "reference texts (capture the mlp_neurons/attn_heads site and average)"
            )

    @property
    def site(self) -> Site:
        """The site whose activations this ablation rewrites."""
        return Site(layer=self.layer, point="mlp_neurons" if self.component == "neurons"
                    else "attn_heads")


@attrs.frozen(kw_only=True)
class Generation:
    """One generated continuation."""

    prompt: str
    text: str
    token_ids: tuple[int, ...]
    prompt_len: int


@attrs.define
class Trace:
    """Activations recorded at sites, one tensor per forward call (see `Backend.tracing`)."""

    sites: tuple[Site, ...]
    steps: dict[Site, list[torch.Tensor]] = attrs.field(factory=dict)

    def stacked(self, site: Site) -> Float[torch.Tensor, "batch seq width"]:
        """Concatenate the recorded calls along the sequence axis."""
        if site not in self.steps:
            raise UnknownSiteError(f"site {site} was not traced; traced: {list(self.sites)}")
        return torch.cat(self.steps[site], dim=1)


class TokenBatch(NamedTuple):
    """One batch of `Backend.iter_batches`: right-padded token ids of some texts.

    Attributes:
        indices: positions of its texts in the list given to ``iter_batches``.
        ids: ``[batch, seq]`` token ids (long), padding on the right.
        mask: ``[batch, seq]``, 1 on real tokens, 0 on padding.
    """

    indices: list[int]
    ids: torch.Tensor
    mask: torch.Tensor


@attrs.frozen(kw_only=True)
class CapturedBatch:
    """One forward pass of `HookedBackend.capture_batches`.

    Attributes:
        indices: positions of its texts in the list given to ``capture_batches``.
        pooled: ``{site: [batch, width]}`` pooled activations, float32.
        token_norm: ``{site: [batch]}`` median norm of the pooled tokens, float32.
    """

    indices: list[int]
    pooled: dict[Site, torch.Tensor]
    token_norm: dict[Site, torch.Tensor]


class Backend(Protocol):
    """What amygdala needs from a model: identity, forward passes, capture, edits, ablations,
    weights, generation.

    Every context manager removes its hooks on exit, exceptions included.
    `amygdala.testing.check_backend` checks an implementation against this contract.
    """

    name: str

    # ----- identity --------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The name the model was loaded by (an alias, a hub id or a path)."""
        ...

    @property
    def fingerprint(self) -> str:
        """A digest of the model's config, weights and (when not float32) dtype.

        Activations and vectors from models with different fingerprints never mix.
        """
        ...

    @property
    def dims(self) -> ModelDims:
        """The model's sizes."""
        ...

    @property
    def tokenizer(self) -> object:
        """The model's tokenizer (Hugging Face interface)."""
        ...

    # ----- forward passes --------------------------------------------------------------
    def iter_batches(self, texts: Sequence[str], batch_size: int) -> Iterator[TokenBatch]:
        """Tokenise ``texts`` and yield right-padded batches sorted by token length."""
        ...

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, *, stop_at: Site | None = None
    ) -> torch.Tensor:
        """Run the model on ``[batch, seq]`` token ids (``mask`` 1 on real tokens).

        Without ``stop_at`` return the logits ``[batch, seq, vocab]``; with it, stop as
        soon as that site has been computed (later layers never run) and return its
        activation ``[batch, seq, width]``. Edits and ablations active around the call
        apply. The result is detached, on the model's device, in the model's dtype.
        """
        ...

    def logits(
        self, inputs: TokenInputs, mask: torch.Tensor | None = None
    ) -> Float[torch.Tensor, "batch seq vocab"]:
        """Logits of texts, of token-id lists, or of a ``[batch, seq]`` id tensor.

        Rows keep the given order; padded positions are zero; float32 on the CPU.
        ``mask`` goes with an id tensor only (default: every position is real).
        """
        ...

    # ----- capture -----------------------------------------------------------------------
    def capture(
        self, texts: Sequence[str], sites: Sequence[Site], pooling: Pooling,
        *, batch_size: int = 16,
    ) -> dict[Site, Float[torch.Tensor, "n width"]]: ...

    def capture_batches(
        self, texts: Sequence[str], sites: Sequence[Site], pooling: Pooling,
        *, batch_size: int = 16,
    ) -> Iterator[CapturedBatch]: ...

    def capture_tokens(
        self, texts: Sequence[str], sites: Sequence[Site], *, batch_size: int = 16
    ) -> list[dict[Site, Float[torch.Tensor, "seq width"]]]: ...

    # ----- hooks as context managers ---------------------------------------------------
    def editing(self, edits: Sequence[Edit]) -> AbstractContextManager[None]: ...

    def ablating(self, ablations: Sequence[Ablation]) -> AbstractContextManager[None]: ...

    def tracing(self, sites: Sequence[Site]) -> AbstractContextManager[Trace]: ...

    def observing(
        self, sites: Sequence[Site],
        fn: Callable[[torch.Tensor | None, dict[Site, torch.Tensor]], None],
    ) -> AbstractContextManager[None]: ...

    # ----- weights and generation ------------------------------------------------------
    def mlp_out_weights(self, layer: int) -> Float[torch.Tensor, "d_mlp d_model"]: ...

    def head_out_weights(self, layer: int) -> Float[torch.Tensor, "heads d_head d_model"]: ...

    def prompt_ids(self, prompt: str, *, chat: bool = False) -> torch.Tensor: ...

    def generate(
        self, prompt: str, *, max_new_tokens: int = 40, do_sample: bool = False,
        temperature: float = 1.0, seed: int = 0, chat: bool = False, use_cache: bool = True,
    ) -> Generation: ...
