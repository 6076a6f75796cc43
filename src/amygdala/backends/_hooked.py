"""Shared machinery of the hook-based backends.

A backend subclass says only how to reach a `Site` (`_attach`) and how to run a
forward pass (`_forward`); capture, pooling, edits, ablations, tracing and
generation are written once here, so both backends mean the same thing by them.
So are the two pieces of hook plumbing both need: `remover` (one callable that
removes several hook handles) and `resid_mid_shift` (how ``resid_mid`` is read and
written).

Every hook callback receives the site's activation as ``[batch, seq, width]``
and returns a replacement or ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

import torch
from jaxtyping import Float

from amygdala._types import ModelDims, Pooling, Site
from amygdala.backends._loading import LoadedModel
from amygdala.backends._protocol import (
    Ablation,
    CapturedBatch,
    Edit,
    Generation,
    TokenBatch,
    TokenInputs,
    Trace,
)
from amygdala.errors import BackendError, DimensionMismatchError, UnknownSiteError

__all__ = ["HookFn", "HookedBackend", "Observer", "Remover", "median_token_norm", "pool",
           "remover", "resid_mid_shift"]

HookFn = Callable[[torch.Tensor], torch.Tensor | None]
Remover = Callable[[], None]
# Called once per forward call with its input ids and the activations at the observed sites.
Observer = Callable[[torch.Tensor | None, dict[Site, torch.Tensor]], None]


class _StopForwardError(Exception):
    """Raised by the hook at `HookedBackend.forward`'s ``stop_at`` site: later layers are
    not needed."""


def remover(*handles: Any) -> Remover:
    """One callable that removes every torch hook handle given (``handle.remove()``)."""

    def remove() -> None:
        for handle in handles:
            handle.remove()

    return remove


def resid_mid_shift(
    fn: HookFn,
) -> tuple[Callable[[torch.Tensor], None], Callable[[torch.Tensor], torch.Tensor | None]]:
    """Read and write ``resid_mid`` through the block input and the attention output.

    ``resid_mid = resid_pre + attn_out``, where ``attn_out`` is what the block adds after
    attention. Writing the post-attention norm's input would not move the residual
    stream, so the write shifts ``attn_out`` instead. Returns ``(remember, shift)``: call
    ``remember(resid_pre)`` when the block input is known, then ``shift(attn_out)`` from
    the hook on the attention output; ``shift`` hands ``fn`` the sum and returns
    ``attn_out + (fn(mid) - mid)`` (or ``None`` when ``fn`` changes nothing).
    """
    seen: dict[str, torch.Tensor] = {}

    def remember(resid_pre: torch.Tensor) -> None:
        seen["pre"] = resid_pre

    def shift(attn_out: torch.Tensor) -> torch.Tensor | None:
        mid = seen.pop("pre") + attn_out
        new = fn(mid)
        return None if new is None else attn_out + (new - mid)

    return remember, shift


def pool(
    acts: Float[torch.Tensor, "batch seq width"], mask: torch.Tensor, pooling: Pooling
) -> Float[torch.Tensor, "batch width"]:
    """Pool per-token activations over real tokens (``mask`` is 1 on real tokens).

    Sums run in float32 whatever the model's dtype (in bfloat16 a sum of a few
    hundred tokens rounds, and a token count above 256 is not even representable);
    the result is float32.
    """
    acts = acts.float()
    lengths = mask.sum(dim=1)
    if pooling.kind == "last":
        return acts[torch.arange(acts.shape[0]), lengths - 1]
    keep = _kept(mask, pooling.skip).to(torch.float32)
    return (acts * keep.unsqueeze(-1)).sum(dim=1) / keep.sum(dim=1, keepdim=True)


def _kept(mask: torch.Tensor, skip: int) -> torch.Tensor:
    """``[batch, seq]`` bool: real tokens at positions ``>= skip``.

    Texts no longer than ``skip`` keep their last token rather than pooling nothing.
    """
    lengths = mask.sum(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    start = torch.minimum(torch.full_like(lengths, skip), lengths - 1).unsqueeze(1)
    return mask.bool() & (positions >= start)


def median_token_norm(
    acts: Float[torch.Tensor, "batch seq width"], mask: torch.Tensor, skip: int
) -> Float[torch.Tensor, " batch"]:
    """Per text, the median L2 norm of its tokens from position ``skip`` on (float32).

    The lower middle value for an even count (``torch.nanmedian``).
    """
    norms = acts.float().norm(dim=-1)
    norms = norms.masked_fill(~_kept(mask, skip), float("nan"))
    return torch.nanmedian(norms, dim=1).values


class HookedBackend:
    """Base of the concrete backends; not part of the public API."""

    name = "abstract"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._dims = loaded.dims
        self._offset = 0  # absolute position of the current forward call's first token
        self._positions: torch.Tensor | None = None

    # ----- what a subclass provides -------------------------------------------------
    def _hf_model(self) -> Any:
        return self.loaded.model

    def _attach(self, site: Site, fn: HookFn) -> Remover:
        raise NotImplementedError

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mlp_out_weights(self, layer: int) -> Float[torch.Tensor, "d_mlp d_model"]:
        """Return what each MLP neuron writes to the residual stream (W_down columns)."""
        raise NotImplementedError

    def head_out_weights(self, layer: int) -> Float[torch.Tensor, "heads d_head d_model"]:
        """Return each head's slice of the attention output projection (W_O)."""
        raise NotImplementedError

    # ----- properties ----------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The name the model was loaded by (an alias, a hub id or a path)."""
        return self.loaded.model_id

    @property
    def fingerprint(self) -> str:
        """A digest of the model's config, weights and (when not float32) dtype."""
        return self.loaded.fingerprint

    @property
    def dims(self) -> ModelDims:
        """The model's sizes."""
        return self._dims

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer."""
        return self.loaded.tokenizer

    def _track_offset(self, _module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        # Absolute positions of this call's tokens. Generation passes position_ids
        # (and a cache whose length is the offset); a plain forward starts at 0.
        self._positions = None
        position_ids = kwargs.get("position_ids")
        if isinstance(position_ids, torch.Tensor):
            self._positions = position_ids.detach().cpu()
            return
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        cache_position = kwargs.get("cache_position")
        if isinstance(cache_position, torch.Tensor) and cache_position.numel():
            self._offset = int(cache_position.reshape(-1)[0])
        elif cache is not None and hasattr(cache, "get_seq_length"):
            self._offset = int(cache.get_seq_length())
        else:
            self._offset = 0

    def _absolute_positions(self, seq: int) -> torch.Tensor:
        """Absolute positions of the current call: [rows or 1, seq]."""
        if self._positions is not None and self._positions.shape[-1] == seq:
            return self._positions.reshape(-1, seq)
        return (self._offset + torch.arange(seq)).unsqueeze(0)

    def _check_site(self, site: Site) -> None:
        self._dims.check(site)

    # ----- batching --------------------------------------------------------------------
    def iter_batches(self, texts: Sequence[str], batch_size: int) -> Iterator[TokenBatch]:
        """Yield `TokenBatch`es (indices, ids, mask), sorted by token length (stable).

        Padding is on the right, so under causal attention real tokens never see
        padding and pooled activations do not depend on the batch. A text given
        several times is tokenised once.
        """
        tok = self.tokenizer
        cache: dict[str, list[int]] = {}
        for text in texts:
            if text not in cache:
                cache[text] = list(tok(text, add_special_tokens=True)["input_ids"])
                if not cache[text]:
                    raise ValueError(
                        f"text {text[:40]!r} tokenises to nothing; remove empty texts")
        encoded = [cache[t] for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for begin in range(0, len(order), batch_size):
            idx = order[begin:begin + batch_size]
            ids, mask = self._pad([encoded[i] for i in idx])
            yield TokenBatch(indices=idx, ids=ids, mask=mask)

    def _pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token-id lists into ``(ids, mask)``, both ``[rows, longest]`` long."""
        pad = self.tokenizer.pad_token_id
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad if pad is not None else 0, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, values in enumerate(rows):
            ids[row, : len(values)] = torch.tensor(list(values), dtype=torch.long)
            mask[row, : len(values)] = 1
        return ids, mask

    # ----- forward passes --------------------------------------------------------------
    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, *, stop_at: Site | None = None
    ) -> torch.Tensor:
        """Run the model on ``[batch, seq]`` token ids (``mask`` 1 on real tokens).

        Args:
            ids: token ids, right-padded (see `iter_batches`); any device.
            mask: the attention mask, same shape.
            stop_at: a site to stop at: the pass ends as soon as it has been computed
                (later layers never run) and its activation is returned.

        Returns:
            Logits ``[batch, seq, vocab]`` without ``stop_at``, else the site's activation
            ``[batch, seq, width]``; detached, on the model's device, in its dtype.

        Raises:
            UnknownSiteError: ``stop_at`` is outside the model.
        """
        if stop_at is None:
            return self._forward(ids, mask)
        seen: list[torch.Tensor] = []

        def stop(acts: torch.Tensor) -> None:
            seen.append(acts.detach())
            raise _StopForwardError

        with self._hooks([(stop_at, stop)]), contextlib.suppress(_StopForwardError):
            self._forward(ids, mask)
        if not seen:
            raise BackendError(
                f"the forward pass never reached {stop_at}: the hook there was not called; "
                "is the backend's site map right for this model?")
        return seen[0]

    # ----- capture ---------------------------------------------------------------------
    def capture(
        self, texts: Sequence[str], sites: Sequence[Site], pooling: Pooling,
        *, batch_size: int = 16,
    ) -> dict[Site, Float[torch.Tensor, "n width"]]:
        """Capture pooled activations at ``sites`` for every text.

        Args:
            texts: the texts; order is kept in the result.
            sites: where to read.
            pooling: how tokens are pooled into one vector per text.
            batch_size: texts per forward pass.

        Returns:
            ``{site: tensor[n_texts, width]}`` in float32 on the CPU.
        """
        out = {s: torch.empty(len(texts), self._dims.width(s.point)) for s in sites}
        for batch in self.capture_batches(texts, sites, pooling, batch_size=batch_size):
            for site in sites:
                out[site][batch.indices] = batch.pooled[site]
        return out

    def capture_batches(
        self, texts: Sequence[str], sites: Sequence[Site], pooling: Pooling,
        *, batch_size: int = 16,
    ) -> Iterator[CapturedBatch]:
        """Capture batch by batch, tokenising each text once (length-sorted batches).

        Yields, per forward pass, the indices of its texts and, per site, their
        pooled activations and the median norm of their pooled tokens (float32).
        """
        for site in sites:
            self._check_site(site)
        for idx, input_ids, mask in self.iter_batches(texts, batch_size):
            with self.tracing(sites) as trace:
                self.forward(input_ids, mask)
            pooled, norms = {}, {}
            for site in sites:
                acts = trace.stacked(site)
                # The mask is built on the CPU; the model may run on a GPU.
                on = mask.to(acts.device)
                pooled[site] = pool(acts, on, pooling).cpu()
                norms[site] = median_token_norm(acts, on, pooling.skip).cpu()
            yield CapturedBatch(indices=idx, pooled=pooled, token_norm=norms)

    def capture_tokens(
        self, texts: Sequence[str], sites: Sequence[Site], *, batch_size: int = 16
    ) -> list[dict[Site, Float[torch.Tensor, "seq width"]]]:
        """Capture per-token activations (no pooling); one dict per text."""
        for site in sites:
            self._check_site(site)
        result: list[dict[Site, torch.Tensor]] = [{} for _ in texts]
        for idx, input_ids, mask in self.iter_batches(texts, batch_size):
            with self.tracing(sites) as trace:
                self.forward(input_ids, mask)
            lengths = mask.sum(dim=1).tolist()
            for site in sites:
                acts = trace.stacked(site).float().cpu()
                for row, i in enumerate(idx):
                    result[i][site] = acts[row, : lengths[row]].clone()
        return result

    def logits(
        self, inputs: TokenInputs, mask: torch.Tensor | None = None
    ) -> Float[torch.Tensor, "batch seq vocab"]:
        """Run the model once on all ``inputs`` and return the logits.

        Args:
            inputs: texts (tokenised with special tokens), token-id lists (used as
                they are, e.g. a `Generation`'s ``token_ids``), or a ``[batch, seq]``
                id tensor.
            mask: with an id tensor only: 1 on real tokens (default: all real).

        Returns:
            ``[batch, seq, vocab]`` float32 on the CPU, rows in the given order, right-
            padded, zero at padded positions.

        Raises:
            ValueError: no inputs, or ``mask`` given with texts or id lists.
        """
        ids, mask = self._as_ids(inputs, mask)
        logits = self.forward(ids, mask).float().cpu()  # the model may be on a GPU
        return logits * mask.cpu().unsqueeze(-1)

    def _as_ids(
        self, inputs: TokenInputs, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(inputs, torch.Tensor):
            if inputs.ndim != 2:
                raise DimensionMismatchError(
                    f"token ids must be [batch, seq], got shape {tuple(inputs.shape)}")
            return inputs, torch.ones_like(inputs) if mask is None else mask
        if mask is not None:
            raise ValueError("mask= goes with a tensor of token ids; texts and id lists are "
                             "padded here. Drop mask= or pass the ids as a tensor")
        if len(inputs) == 0:
            raise ValueError("logits needs at least one text or token-id list, got none")
        if all(isinstance(x, str) for x in inputs):
            texts = [str(x) for x in inputs]
            batch = next(self.iter_batches(texts, len(texts)))
            restore = torch.empty(len(texts), dtype=torch.long)
            restore[torch.tensor(batch.indices)] = torch.arange(len(texts))
            return batch.ids[restore], batch.mask[restore]
        rows = [[int(t) for t in x] for x in inputs]
        if not all(rows):
            raise ValueError("an empty token-id list: every row needs at least one token")
        return self._pad(rows)

    # ----- hooks as context managers ---------------------------------------------------
    @contextmanager
    def _hooks(
        self, pairs: Sequence[tuple[Site, HookFn]], *, track_positions: bool = False
    ) -> Iterator[None]:
        # Register everything first, then yield: a failure while registering
        # still removes what was registered (ExitStack unwinds on any exit).
        with ExitStack() as stack:
            if track_positions:
                stack.callback(remover(self._hf_model().register_forward_pre_hook(
                    self._track_offset, with_kwargs=True)))
                self._offset, self._positions = 0, None
            for site, fn in pairs:
                self._check_site(site)
                stack.callback(self._attach(site, fn))
            yield

    def tracing(self, sites: Sequence[Site]) -> AbstractContextManager[Trace]:
        """Record activations at ``sites`` for every forward call inside the block."""
        trace = Trace(sites=tuple(sites), steps={s: [] for s in sites})

        def recorder(site: Site) -> HookFn:
            def fn(acts: torch.Tensor) -> None:
                trace.steps[site].append(acts.detach())

            return fn

        @contextmanager
        def run() -> Iterator[Trace]:
            with torch.inference_mode(), self._hooks([(s, recorder(s)) for s in sites]):
                yield trace

        return run()

    def observing(self, sites: Sequence[Site], fn: Observer) -> AbstractContextManager[None]:
        """Call ``fn(input_ids, {site: acts})`` once per forward call inside the block.

        ``fn`` runs as soon as the last of ``sites`` has been computed (before the
        rest of the forward pass), with the call's ``input_ids`` ``[batch, seq]``
        and each site's activation ``[batch, seq, width]``. An exception raised by
        ``fn`` aborts the forward call (and a surrounding `generate`); the hooks are
        removed on every exit. This is what a live monitor needs: `tracing` keeps
        everything until the end, ``observing`` hands each step over as it happens.
        """
        wanted = tuple(dict.fromkeys(sites))
        state: dict[str, Any] = {"ids": None, "acts": {}}

        def remember_ids(_module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            state["ids"], state["acts"] = ids, {}

        def recorder(site: Site) -> HookFn:
            def record(acts: torch.Tensor) -> None:
                state["acts"][site] = acts.detach()
                if len(state["acts"]) == len(wanted):
                    ready, state["acts"] = state["acts"], {}
                    fn(state["ids"], ready)
            return record

        @contextmanager
        def run() -> Iterator[None]:
            with ExitStack() as stack:
                stack.callback(remover(self._hf_model().register_forward_pre_hook(
                    remember_ids, with_kwargs=True)))
                stack.enter_context(self._hooks([(s, recorder(s)) for s in wanted]))
                yield

        return run()

    def editing(self, edits: Sequence[Edit]) -> AbstractContextManager[None]:
        """Add vectors at sites during every forward call inside the block."""
        for edit in edits:
            width = self._dims.width(edit.site.point)
            if edit.vector.shape[0] != width:
                raise DimensionMismatchError(
                    f"edit at {edit.site} has a vector of width {edit.vector.shape[0]}, but "
                    f"that site has width {width}; was it made for another model or layer?"
                )

        def adder(edit: Edit) -> HookFn:
            def fn(acts: torch.Tensor) -> torch.Tensor:
                positions = self._absolute_positions(acts.shape[1]).to(acts.device)
                stop = edit.stop if edit.stop is not None else torch.iinfo(torch.long).max
                on = ((positions >= edit.start) & (positions < stop)).to(acts.dtype)
                vector = edit.vector.to(device=acts.device, dtype=acts.dtype)
                return acts + on[..., None] * vector
            return fn

        return self._hooks([(e.site, adder(e)) for e in edits], track_positions=True)

    def ablating(self, ablations: Sequence[Ablation]) -> AbstractContextManager[None]:
        """Zero, mean-replace or scale neurons or heads during the block."""
        pairs: list[tuple[Site, HookFn]] = []
        for ablation in ablations:
            self._check_site(ablation.site)
            limit = self._dims.d_mlp if ablation.component == "neurons" else self._dims.n_heads
            bad = [i for i in ablation.indices if not 0 <= i < limit]
            if bad:
                raise UnknownSiteError(
                    f"{ablation.component} indices {bad[:5]} out of range at layer "
                    f"{ablation.layer}: valid indices are 0..{limit - 1}"
                )
            pairs.append((ablation.site, self._ablation_fn(ablation)))
        return self._hooks(pairs)

    def _ablation_fn(self, ablation: Ablation) -> HookFn:
        width = self._dims.width(ablation.site.point)
        columns = torch.tensor(ablation.indices, dtype=torch.long)
        if ablation.component == "heads":
            d_head = self._dims.d_head
            columns = (columns[:, None] * d_head + torch.arange(d_head)[None, :]).reshape(-1)
        means = ablation.means
        if means is not None and means.shape != (width,):
            raise DimensionMismatchError(
                f"mean ablation at layer {ablation.layer} needs means of shape ({width},), "
                f"got {tuple(means.shape)}"
            )

        def fn(acts: torch.Tensor) -> torch.Tensor:
            acts = acts.clone()
            rows = slice(None) if ablation.rows is None else list(ablation.rows)
            selected = acts[rows][..., columns]
            if ablation.mode == "zero":
                new = torch.zeros_like(selected)
            elif ablation.mode == "scale":
                new = selected * ablation.factor
            else:
                assert means is not None  # checked at construction
                new = means[columns].to(device=acts.device, dtype=acts.dtype).expand_as(selected)
            if ablation.rows is None:
                acts[..., columns] = new
            else:
                block = acts[rows]
                block[..., columns] = new
                acts[rows] = block
            return acts

        return fn

    # ----- generation ------------------------------------------------------------------
    def prompt_ids(self, prompt: str, *, chat: bool = False) -> torch.Tensor:
        """Token ids ``[1, seq]`` of ``prompt`` exactly as `generate` feeds it."""
        tok = self.tokenizer
        if chat and getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        else:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
        return ids  # type: ignore[no-any-return]

    def generate(
        self, prompt: str, *, max_new_tokens: int = 40, do_sample: bool = False,
        temperature: float = 1.0, seed: int = 0, chat: bool = False, use_cache: bool = True,
    ) -> Generation:
        """Generate a continuation of one prompt (KV cache on by default).

        Edits and ablations active around this call apply at every step, at
        absolute positions.
        """
        model = self._hf_model()
        ids = self.prompt_ids(prompt, chat=chat).to(model.device)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            with torch.inference_mode():
                out = model.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                    do_sample=do_sample, temperature=temperature if do_sample else None,
                    top_p=None, top_k=None, use_cache=use_cache,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
        finally:
            torch.random.set_rng_state(generator_state)
        new = out[0, ids.shape[1]:].tolist()
        return Generation(
            prompt=prompt, text=self.tokenizer.decode(new, skip_special_tokens=True),
            token_ids=tuple(out[0].tolist()), prompt_len=int(ids.shape[1]),
        )
