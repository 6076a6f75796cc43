"""The checks of one backend (`CHECKS`): capture, forward passes, edits, ablations,
errors, weights and identity."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Final

import torch

from amygdala._types import POINTS, Pooling, Site
from amygdala.backends._protocol import Ablation, Backend, Edit
from amygdala.errors import DimensionMismatchError, UnknownSiteError
from amygdala.testing._common import (
    PROMPT,
    RESIDUAL,
    TEXTS,
    _close,
    _differs,
    _InsideBlockError,
    _layers,
    _vector,
)

__all__ = [
    "CHECKS",
    "check_ablation_modes",
    "check_batching_invariance",
    "check_cached_generation_under_steering",
    "check_capture_shapes",
    "check_edit_positions_are_absolute",
    "check_edits_at_every_residual_point",
    "check_forward_stop_at",
    "check_hooks_removed_after_exceptions",
    "check_identity",
    "check_identity_edit",
    "check_logits_of_ids",
    "check_neuron_ablation_is_local",
    "check_per_row_ablation",
    "check_pooled_mean_is_token_mean",
    "check_typed_errors",
    "check_weight_shapes",
]

# ----- capture ----------------------------------------------------------------------------


def check_capture_shapes(backend: Backend) -> None:
    """`capture` and `capture_batches` give float32 ``[n, width]`` at every point."""
    dims = backend.dims
    sites = [Site(layer=1, point=p) for p in POINTS]
    out = backend.capture(list(TEXTS), sites, Pooling(), batch_size=2)
    for site in sites:
        got = out[site]
        want = (len(TEXTS), dims.width(site.point))
        if tuple(got.shape) != want or got.dtype != torch.float32:
            raise AssertionError(f"capture at {site}: expected float32 {want}, got "
                                 f"{got.dtype} {tuple(got.shape)}")
        if not bool(torch.isfinite(got).all()):
            raise AssertionError(f"capture at {site} has NaN or infinite values")
    seen: list[int] = []
    for batch in backend.capture_batches(list(TEXTS), sites, Pooling(), batch_size=2):
        seen += batch.indices
        for site in sites:
            _close(batch.pooled[site], out[site][batch.indices], f"capture_batches at {site}")
            if tuple(batch.token_norm[site].shape) != (len(batch.indices),):
                raise AssertionError(f"capture_batches token_norm at {site}: expected shape "
                                     f"({len(batch.indices)},), got "
                                     f"{tuple(batch.token_norm[site].shape)}")
    if sorted(seen) != list(range(len(TEXTS))):
        raise AssertionError(f"capture_batches must yield every text once, got indices {seen}")


def check_batching_invariance(backend: Backend) -> None:
    """Pooled activations do not depend on the batch size (right padding, causal model)."""
    site = Site(layer=_layers(backend)[1])
    for pooling in (Pooling(kind="last"), Pooling()):
        one = backend.capture(list(TEXTS), [site], pooling, batch_size=1)[site]
        many = backend.capture(list(TEXTS), [site], pooling, batch_size=len(TEXTS))[site]
        _close(many, one, f"{pooling.key} pooling, batch size {len(TEXTS)} vs 1",
               rtol=1e-5, atol=1e-5)


def check_pooled_mean_is_token_mean(backend: Backend) -> None:
    """Mean pooling equals the mean of `capture_tokens` after ``skip`` tokens."""
    site = Site(layer=0, point="resid_mid")
    pooled = backend.capture(list(TEXTS), [site], Pooling(skip=2))[site]
    tokens = backend.capture_tokens(list(TEXTS), [site])
    for i, per_text in enumerate(tokens):
        _close(pooled[i], per_text[site][2:].mean(0), f"text {i}: pooled vs token mean",
               rtol=1e-5, atol=1e-5)


# ----- forward passes -----------------------------------------------------------------


def _ids(backend: Backend) -> list[list[int]]:
    tok: Any = backend.tokenizer
    return [list(tok(t, add_special_tokens=True)["input_ids"]) for t in TEXTS]


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def check_logits_of_ids(backend: Backend) -> None:
    """`logits` of token-id lists and of an id tensor equal `logits` of the texts."""
    texts = backend.logits(list(TEXTS))
    rows = _ids(backend)
    _close(backend.logits(rows), texts, "logits of id lists vs of texts")
    ids, mask = _padded(rows)
    _close(backend.logits(ids, mask), texts, "logits of an id tensor vs of texts")
    lengths = [len(r) for r in rows]
    for i, n in enumerate(lengths):
        if bool(texts[i, n:].any()):
            raise AssertionError(f"logits at the padding of row {i} are not zero")


def check_forward_stop_at(backend: Backend) -> None:
    """`forward` with ``stop_at`` returns the traced activation and runs no later layer."""
    early, last = _layers(backend)
    ids, mask = _padded(_ids(backend))
    plain = backend.forward(ids, mask).float().cpu()
    _close(plain * mask.unsqueeze(-1), backend.logits(list(TEXTS)), "forward() vs logits()")
    for point in POINTS:
        site = Site(layer=early, point=point)
        later = Site(layer=last)
        with backend.tracing([site, later]) as trace:
            got = backend.forward(ids, mask, stop_at=site)
        if trace.steps[later]:
            raise AssertionError(f"forward(stop_at={site}) still ran layer {last}")
        want = (ids.shape[0], ids.shape[1], backend.dims.width(point))
        if tuple(got.shape) != want:
            raise AssertionError(f"forward(stop_at={site}) shape {tuple(got.shape)}, "
                                 f"expected {want}")
        _close(got.float().cpu(), trace.stacked(site).float().cpu(),
               f"forward(stop_at={site}) vs tracing {site}")


# ----- edits ------------------------------------------------------------------------------


def check_identity_edit(backend: Backend) -> None:
    """A zero edit at every residual point of every layer leaves the logits unchanged."""
    before = backend.logits(list(TEXTS))
    zero = torch.zeros(backend.dims.d_model)
    edits = [Edit(site=Site(layer=layer, point=p), vector=zero)
             for layer in range(backend.dims.n_layers) for p in RESIDUAL]
    with backend.editing(edits):
        during = backend.logits(list(TEXTS))
    _close(during, before, "logits under zero edits")


def check_edits_at_every_residual_point(backend: Backend) -> None:
    """A non-zero edit reads back exactly at its site, moves the logits, and is removed.

    At every residual point of every layer, from position 2 on.
    """
    rows = _ids(backend)
    ids, mask = _padded(rows)
    sites = [Site(layer=layer, point=p) for layer in range(backend.dims.n_layers)
             for p in RESIDUAL]
    with backend.tracing(sites) as trace:
        plain = backend.logits(ids, mask)
    for k, site in enumerate(sites):
        vector = _vector(backend.dims.d_model, seed=k)
        with backend.editing([Edit(site=site, vector=vector, start=2)]), \
                backend.tracing([site]) as edited_trace:
            edited = backend.logits(ids, mask)
        for row, n in enumerate(len(r) for r in rows):
            before = trace.stacked(site)[row, :n].float().cpu()
            after = edited_trace.stacked(site)[row, :n].float().cpu()
            _close(after[:2], before[:2], f"{site}, text {row}, before the edit's start")
            _close(after[2:], before[2:] + vector, f"{site}, text {row}: plain + vector",
                   rtol=1e-5, atol=1e-5)
        _differs(edited, plain, f"logits under an edit at {site}", by=1e-3)
    _close(backend.logits(ids, mask), plain, "logits after the edits")


def check_edit_positions_are_absolute(backend: Backend) -> None:
    """``Edit.start`` counts from the sequence's first token."""
    site = Site(layer=0)
    vector = torch.ones(backend.dims.d_model)
    plain = backend.capture_tokens(list(TEXTS[1:2]), [site])[0][site]
    with backend.editing([Edit(site=site, vector=vector, start=3, stop=5)]):
        tokens = backend.capture_tokens(list(TEXTS[1:2]), [site])[0][site]
    _close(tokens[:3], plain[:3], "positions before start")
    _close(tokens[3:5], plain[3:5] + 1.0, "positions in [start, stop)")
    _close(tokens[5:], plain[5:], "positions from stop on")


def check_hooks_removed_after_exceptions(backend: Backend) -> None:
    """Every context manager removes its hooks when its block raises."""
    early, _ = _layers(backend)
    before = backend.logits(list(TEXTS))
    calls: list[int] = []
    blocks: dict[str, Callable[[], AbstractContextManager[Any]]] = {
        "editing": lambda: backend.editing(
            [Edit(site=Site(layer=early, point=p), vector=torch.ones(backend.dims.d_model))
             for p in RESIDUAL]),
        "ablating": lambda: backend.ablating(
            [Ablation(layer=early, component="heads", indices=[0, 1]),
             Ablation(layer=early, component="neurons", indices=[0], mode="scale", factor=3)]),
        "tracing": lambda: backend.tracing([Site(layer=early, point=p) for p in POINTS]),
        "observing": lambda: backend.observing([Site(layer=early)],
                                               lambda _ids, _acts: calls.append(1)),
    }
    for name, block in blocks.items():
        inside: Any = None
        try:
            with block() as inside:
                raise _InsideBlockError(name)
        except _InsideBlockError:
            pass
        _close(backend.logits(list(TEXTS)), before, f"logits after {name} raised")
        if name == "tracing" and any(inside.steps.values()):
            raise AssertionError("tracing still records after its block raised")
    if calls:
        raise AssertionError(f"observing still called its function {len(calls)} times "
                             "after its block raised")


def check_cached_generation_under_steering(backend: Backend) -> None:
    """Under an edit from the first generated position, KV-cached and uncached greedy
    decoding give the same tokens."""
    vector = _vector(backend.dims.d_model, seed=1, scale=1.0)
    plain = backend.generate(PROMPT, max_new_tokens=6)
    with backend.editing([Edit(site=Site(layer=1), vector=vector, start=plain.prompt_len)]):
        cached = backend.generate(PROMPT, max_new_tokens=6, use_cache=True)
        uncached = backend.generate(PROMPT, max_new_tokens=6, use_cache=False)
    if cached.token_ids != uncached.token_ids:
        raise AssertionError(f"cached {cached.token_ids} != uncached {uncached.token_ids}")
    if plain.token_ids[:plain.prompt_len] != cached.token_ids[:plain.prompt_len]:
        raise AssertionError("the prompt's token ids changed under the edit")


# ----- ablations --------------------------------------------------------------------------


def check_neuron_ablation_is_local(backend: Backend) -> None:
    """Zeroing neurons at layer 1 changes nothing upstream and zeroes exactly them."""
    layers = range(min(3, backend.dims.n_layers))
    sites = [Site(layer=layer, point=p) for layer in layers for p in POINTS]
    before = backend.capture(list(TEXTS), sites, Pooling())
    with backend.ablating([Ablation(layer=1, component="neurons", indices=range(10))]):
        after = backend.capture(list(TEXTS), sites, Pooling())
    for site in sites:
        if site.layer < 1 or (site.layer == 1 and site.point in
                              ("resid_pre", "resid_mid", "attn_heads")):
            _close(after[site], before[site], f"{site} is upstream of the ablation")
    _differs(after[Site(layer=1)], before[Site(layer=1)], "resid_post.1 under the ablation")
    neurons = after[Site(layer=1, point="mlp_neurons")]
    if not bool((neurons[:, :10] == 0).all()):
        raise AssertionError("zero-ablated neurons are not zero at mlp_neurons.1")


def check_ablation_modes(backend: Backend) -> None:
    """``scale`` multiplies, ``mean`` replaces by the given means, other heads stay."""
    _, last = _layers(backend)
    site = Site(layer=last, point="attn_heads")
    base = backend.capture(list(TEXTS), [site], Pooling())[site]
    d_head = backend.dims.d_head
    with backend.ablating([Ablation(layer=last, component="heads", indices=[1], mode="scale",
                                    factor=2.0)]):
        scaled = backend.capture(list(TEXTS), [site], Pooling())[site]
    _close(scaled[:, d_head:2 * d_head], 2 * base[:, d_head:2 * d_head], "scaled head 1")
    _close(scaled[:, :d_head], base[:, :d_head], "head 0 under a scale of head 1")
    means = torch.arange(base.shape[1], dtype=torch.float32)
    with backend.ablating([Ablation(layer=last, component="heads", indices=[0], mode="mean",
                                    means=means)]):
        meaned = backend.capture(list(TEXTS), [site], Pooling())[site]
    _close(meaned[:, :d_head], means[:d_head].expand(len(TEXTS), -1), "mean-ablated head 0")
    with backend.ablating([Ablation(layer=last, component="heads", indices=[0])]):
        zeroed = backend.capture(list(TEXTS), [site], Pooling())[site]
    _close(zeroed[:, :d_head], torch.zeros(len(TEXTS), d_head), "zero-ablated head 0")


def check_per_row_ablation(backend: Backend) -> None:
    """``Ablation.rows`` changes only the batch rows it names."""
    _, last = _layers(backend)
    site = Site(layer=last)
    texts = [TEXTS[1]] * 2
    base = backend.capture(texts, [site], Pooling())[site]
    with backend.ablating([Ablation(layer=0, component="heads", indices=[0], rows=(1,))]):
        out = backend.capture(texts, [site], Pooling(), batch_size=2)[site]
    _close(out[0], base[0], "row 0 (not ablated)")
    _differs(out[1], base[1], "row 1 (ablated)")


# ----- errors and weights -----------------------------------------------------------------


def _raises(error: type[Exception], text: str, fn: Callable[[], object], what: str) -> None:
    try:
        fn()
    except error as exc:
        if text not in str(exc):
            raise AssertionError(f"{what}: the message should contain {text!r}, got "
                                 f"{str(exc)!r}") from None
        return
    except Exception as exc:
        raise AssertionError(f"{what}: expected {error.__name__}, got "
                             f"{type(exc).__name__}: {exc}") from None
    raise AssertionError(f"{what}: expected {error.__name__}, nothing was raised")


def check_typed_errors(backend: Backend) -> None:
    """Bad sites, widths and indices raise typed errors that name the valid range."""
    n = backend.dims.n_layers
    _raises(UnknownSiteError, f"layers 0..{n - 1}",
            lambda: backend.capture(list(TEXTS), [Site(layer=n + 4)], Pooling()),
            "capture at a layer the model does not have")
    _raises(DimensionMismatchError, "width 5",
            lambda: backend.editing([Edit(site=Site(layer=0), vector=torch.ones(5))]),
            "an edit vector of the wrong width")
    _raises(UnknownSiteError, "out of range",
            lambda: backend.ablating([Ablation(layer=0, component="heads",
                                               indices=[backend.dims.n_heads + 95])]),
            "a head index the model does not have")
    ids, mask = _padded(_ids(backend))
    _raises(UnknownSiteError, f"layers 0..{n - 1}",
            lambda: backend.forward(ids, mask, stop_at=Site(layer=n + 4)),
            "forward(stop_at=) a layer the model does not have")


def check_weight_shapes(backend: Backend) -> None:
    """`mlp_out_weights` is ``[d_mlp, d_model]``, `head_out_weights` ``[heads, d_head,
    d_model]``."""
    d = backend.dims
    got = tuple(backend.mlp_out_weights(1).shape)
    if got != (d.d_mlp, d.d_model):
        raise AssertionError(f"mlp_out_weights shape {got}, expected {(d.d_mlp, d.d_model)}")
    got = tuple(backend.head_out_weights(1).shape)
    if got != (d.n_heads, d.d_head, d.d_model):
        raise AssertionError(
            f"head_out_weights shape {got}, expected {(d.n_heads, d.d_head, d.d_model)}")


def check_identity(backend: Backend) -> None:
    """The backend names its model: non-empty ``model_id``, a string fingerprint."""
    if not (isinstance(backend.model_id, str) and backend.model_id):
        raise AssertionError(f"model_id must be a non-empty string, got {backend.model_id!r}")
    if not isinstance(backend.fingerprint, str):
        raise AssertionError(f"fingerprint must be a string, got {backend.fingerprint!r}")


CHECKS: Final[Mapping[str, Callable[[Backend], None]]] = {
    "identity": check_identity,
    "capture_shapes": check_capture_shapes,
    "batching_invariance": check_batching_invariance,
    "pooled_mean_is_token_mean": check_pooled_mean_is_token_mean,
    "logits_of_ids": check_logits_of_ids,
    "forward_stop_at": check_forward_stop_at,
    "identity_edit": check_identity_edit,
    "edits_at_every_residual_point": check_edits_at_every_residual_point,
    "edit_positions_are_absolute": check_edit_positions_are_absolute,
    "hooks_removed_after_exceptions": check_hooks_removed_after_exceptions,
    "cached_generation_under_steering": check_cached_generation_under_steering,
    "neuron_ablation_is_local": check_neuron_ablation_is_local,
    "ablation_modes": check_ablation_modes,
    "per_row_ablation": check_per_row_ablation,
    "typed_errors": check_typed_errors,
    "weight_shapes": check_weight_shapes,
}
