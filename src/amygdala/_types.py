"""Backend-neutral names for places in a model and for how tokens are pooled.

Dimension names used in shape annotations across the package:

- ``batch``: texts in a batch; ``n``: texts in a collection
- ``seq``: token positions; ``d_model``: residual width; ``d_mlp``: MLP neurons
- ``heads``: attention heads; ``d_head``: per-head width; ``width``: a site's width
"""

from __future__ import annotations

from typing import Literal, get_args

import attrs

from amygdala._codec import register
from amygdala.errors import PoolingError, UnknownSiteError

__all__ = ["POINTS", "ModelDims", "Point", "Pooling", "PoolingKind", "Site"]

Point = Literal["resid_pre", "resid_mid", "resid_post", "mlp_neurons", "attn_heads"]
POINTS: tuple[Point, ...] = get_args(Point)
PoolingKind = Literal["mean", "last"]


def _check_point(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in POINTS:
        raise UnknownSiteError(
            f"unknown site point {value!r}; expected one of {', '.join(POINTS)}"
        )


def _non_negative(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise UnknownSiteError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True, order=True)
class Site:
    """A place in a model: a layer and a point inside that layer's block.

    ``resid_*`` sites have width ``d_model``; ``mlp_neurons`` is the input of the
    MLP's down projection (width ``d_mlp``); ``attn_heads`` is the input of the
    attention output projection, heads concatenated (width ``heads * d_head``).

    >>> Site(layer=3)
    Site(layer=3, point='resid_post')
    >>> str(Site.parse("mlp_neurons.5"))
    'mlp_neurons.5'
    """

    layer: int = attrs.field(validator=_non_negative)
    point: Point = attrs.field(default="resid_post", validator=_check_point)

    def __str__(self) -> str:
        return f"{self.point}.{self.layer}"

    @classmethod
    def parse(cls, text: str) -> Site:
        """Parse ``"point.layer"`` (or a bare layer number, meaning ``resid_post``).

        Raises:
            UnknownSiteError: the text is not of that form.
        """
        point, _, layer = text.rpartition(".")
        if not layer.isdigit():
            raise UnknownSiteError(
                f"cannot parse site {text!r}; expected 'POINT.LAYER' such as "
                f"'resid_post.12', with POINT one of {', '.join(POINTS)}"
            )
        return cls(layer=int(layer), point=point or "resid_post")  # type: ignore[arg-type]


def _check_pooling_kind(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in ("mean", "last"):
        raise PoolingError(f"unknown pooling kind {value!r}; expected 'mean' or 'last'")


def _check_skip(_: object, __: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise PoolingError(f"pooling skip must be >= 0 (tokens to skip), got {value}")


@attrs.frozen(kw_only=True)
class Pooling:
    """How per-token activations become one vector per text.

    ``mean`` averages the real (non-padding) tokens after skipping the first
    ``skip`` (early positions carry "attention sink" activations that are huge and
    text-independent); ``last`` takes the last real token.

    >>> Pooling().key
    'mean_skip2'
    """

    kind: PoolingKind = attrs.field(default="mean", validator=_check_pooling_kind)
    skip: int = attrs.field(default=2, validator=_check_skip)

    @property
    def key(self) -> str:
        """A short stable name, used in store keys and file names."""
        return f"mean_skip{self.skip}" if self.kind == "mean" else "last"

    @classmethod
    def parse(cls, text: str) -> Pooling:
        """Parse a key such as ``mean_skip2``, ``mean`` or ``last``."""
        if text == "last":
            return cls(kind="last", skip=0)
        if text == "mean":
            return cls()
        if text.startswith("mean_skip") and text[9:].isdigit():
            return cls(kind="mean", skip=int(text[9:]))
        raise PoolingError(
            f"cannot parse pooling {text!r}; expected 'mean', 'mean_skipN' or 'last'")


# In files a pooling is its key (``run.json``'s ``"pooling": "mean_skip2"``).
register(Pooling, encode=lambda pooling: pooling.key, decode=lambda key: Pooling.parse(str(key)))


@attrs.frozen(kw_only=True)
class ModelDims:
    """The sizes of a decoder-only transformer that sites and weights depend on."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    d_head: int

    def width(self, point: Point) -> int:
        """Return the width of a site at ``point``."""
        if point == "mlp_neurons":
            return self.d_mlp
        if point == "attn_heads":
            return self.n_heads * self.d_head
        return self.d_model

    def check(self, site: Site) -> None:
        """Raise `UnknownSiteError` if ``site`` is outside this model."""
        if site.layer >= self.n_layers:
            raise UnknownSiteError(
                f"site {site} is out of range: this model has layers 0..{self.n_layers - 1}; "
                f"pass a layer below {self.n_layers}"
            )
