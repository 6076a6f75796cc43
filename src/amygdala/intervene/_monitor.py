"""Monitor: the read-out while the model generates, one record per token.

Each record carries the token, its scores ``[layers][concepts]`` (raw reader
scores and z against the run's neutral statistics, computed by the same
functions `read` uses, so a record equals `read` on the same text), a smoothed
state (an exponential moving average of the z-scores averaged over the
monitored layers) and the events it triggered (`EventTracker`). Beside z, each record
carries the relative view (`amygdala.vectors._bundle.relative`, the rule of
``amygdala read --relative``: z minus the mean of z over all the run's concepts, at
the same layer and token); smoothing and events run on z or, with
``events_on="relative"``, on the relative view, where the component every concept
shares (which lifts all of them together on z) is removed. Views are named as
everywhere else (`amygdala._views`).

Defaults from the evaluation: a monitor on a run directory reads, unless told otherwise,
the layer or band of layers ``evaluation.json`` recommends for the read-out
(``recommended_read``, chosen on inner folds) and runs its events on, and shows, the
recommended view (the one with the higher detection AUC); without an evaluation it reads
the run's best layer (`default_layer`) on the z view. `Monitor.defaults` says where each
value came from.

How a token gets its scores: the residual stream at a token's position exists
once that token is fed back into the model, i.e. during the forward call that
chooses the *next* token. The monitor observes every forward call inside
`Backend.generate` (`Backend.observing`), so with the KV cache each call brings
exactly one new position; without it (the transformer_lens backend decodes
uncached by default, see `TransformerLensBackend.generate`) each call re-reads
the prefix and the monitor takes the last position. To score the last token
too, generation asks for one token more and stops as soon as the deepest
monitored layer of that extra call has run, so the extra cost is a partial
forward pass, not a token.

Generation runs under a per-backend lock: hooks act on the whole model, so two
monitored generations on one backend would see each other's steering.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch

from amygdala._types import Site
from amygdala._views import RELATIVE_RULE, Display, View, check_display, check_view
from amygdala.backends._registry import Backend, Generation
from amygdala.errors import UnknownConceptError, UnknownSiteError
from amygdala.intervene._display import SINK_TOKENS
from amygdala.intervene._events import EMA, Event, EventRule, EventTracker
from amygdala.intervene._readout import ReadoutStats, load_or_compute_stats, recommended_read
from amygdala.intervene._steer import Positions, RunContext, _steering, open_run
from amygdala.vectors._bundle import relative
from amygdala.vectors._run import RunDir, best_layer
from amygdala.vectors._set import SteeringVectorSet

__all__ = [
    "EVENT_FORMAT",
    "FinishReason",
    "LiveDefaults",
    "Monitor",
    "MonitorResult",
    "TokenRecord",
    "live_defaults",
]

# Version tag of the records `watch --jsonl` writes and the server streams.
# 2: token records may carry ``relative`` (and ``top`` entries a ``relative`` value);
# ``smoothed`` and events follow the start record's ``events_on`` (z or relative).
EVENT_FORMAT = "amygdala.live/2"
FinishReason = Literal["length", "stop", "cancelled"]


class _Stop(Exception):  # noqa: N818 - control flow, never leaves this module
    """Raised inside a hook once the last wanted token has been scored."""


class _Cancelled(Exception):  # noqa: N818 - control flow, never leaves this module
    """Raised inside a hook when the caller cancelled the run."""


def _round(a: np.ndarray | None, digits: int = 3) -> Any:
    if a is None:
        return None
    return np.round(a.astype(np.float64), digits).tolist()


@attrs.frozen(kw_only=True)
class TokenRecord:
    """The read-out of one token, as the model produced (or read) it.

    Attributes:
        position: absolute position in the sequence (prompt included).
        step: index among generated tokens, ``None`` for a prompt token.
        token_id: the token id.
        token: the token decoded on its own.
        text: the text this token adds to the output (incremental decoding: empty
            while a multi-byte character is incomplete, special tokens add nothing).
        sink: an attention-sink position (``position < Monitor.skip``): no scores.
        layers: row order of ``raw`` and ``z``.
        concepts: column order.
        raw: ``[layers, concepts]`` reader scores (NaN at sinks).
        z: ``[layers, concepts]`` z against neutral text (NaN at sinks).
        relative: ``[layers, concepts]`` z minus the mean of z over all the run's
            concepts (not only the reported ones) at the same layer (NaN at sinks).
        smoothed: ``[concepts]`` moving average, over tokens, of the layer-averaged z
            (or relative view, `Monitor.events_on`); generated tokens only, ``None`` for
            prompt tokens.
        active: concepts in the active state after this token.
        events: state changes this token triggered.
    """

    position: int
    step: int | None
    token_id: int
    token: str
    text: str
    sink: bool
    layers: tuple[int, ...]
    concepts: tuple[str, ...]
    raw: np.ndarray = attrs.field(eq=False, repr=False)
    z: np.ndarray = attrs.field(eq=False, repr=False)
    relative: np.ndarray = attrs.field(eq=False, repr=False)
    smoothed: np.ndarray | None = attrs.field(eq=False, repr=False, default=None)
    active: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()

    @property
    def band(self) -> np.ndarray:
        """``[concepts]``: z averaged over the monitored layers."""
        return self.z.mean(axis=0)  # type: ignore[no-any-return]

    @property
    def relative_band(self) -> np.ndarray:
        """``[concepts]``: the relative view averaged over the monitored layers."""
        return self.relative.mean(axis=0)  # type: ignore[no-any-return]

    def _order(self, k: int) -> list[int]:
        # The relative view subtracts one number per token from every concept's band,
        # so ranking by z and by the relative view agree.
        return [] if self.sink else [int(j) for j in np.argsort(-self.band)[:k]]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` concepts with the highest layer-averaged z (empty at sinks)."""
        band = self.band
        return [(self.concepts[j], float(band[j])) for j in self._order(k)]

    def to_json(self, *, top_k: int | None = None, raw: bool = False,
                view: Display = "z") -> dict[str, Any]:
        """The versioned record (`EVENT_FORMAT`): all scores, or only the top ``top_k``.

        Args:
            top_k: give ``top`` entries (concept and its layer-averaged value in each view
                shown) instead of the full tables.
            raw: also give the raw reader scores (full table only).
            view: ``z`` (the ``z`` table), ``relative`` (the ``relative`` table) or
                ``both``.

        Raises:
            ViewError: ``view`` is not one of `amygdala._views.DISPLAYS`.
        """
        check_display(view)
        out: dict[str, Any] = {
            "format": EVENT_FORMAT, "type": "token", "position": self.position,
            "step": self.step, "token_id": self.token_id, "token": self.token,
            "text": self.text, "sink": self.sink,
        }
        if top_k is not None:
            band, rel = self.band, self.relative_band
            out["top"] = []
            for j in self._order(top_k):
                entry: dict[str, Any] = {"concept": self.concepts[j]}
                if view != "relative":
                    entry["z"] = round(float(band[j]), 3)
                if view != "z":
                    entry["relative"] = round(float(rel[j]), 3)
                out["top"].append(entry)
        else:
            out["layers"], out["concepts"] = list(self.layers), list(self.concepts)
            if view != "relative":
                out["z"] = None if self.sink else _round(self.z)
            if view != "z":
                out["relative"] = None if self.sink else _round(self.relative)
            if raw:
                out["raw"] = None if self.sink else _round(self.raw)
        out["smoothed"] = _round(self.smoothed)
        out["active"] = list(self.active)
        out["events"] = [e.to_json() for e in self.events]
        return out


@attrs.frozen(kw_only=True)
class MonitorResult:
    """How a monitored generation ended.

    Attributes:
        generation: prompt, text and token ids (as `Backend.generate` gives them;
            a stop token is included in ``token_ids`` but not in ``text``).
        finish_reason: ``length`` (max_new_tokens reached), ``stop`` (a stop
            token) or ``cancelled`` (the caller cancelled).
        records: every record emitted, in order.
    """

    generation: Generation
    finish_reason: FinishReason
    records: tuple[TokenRecord, ...] = attrs.field(eq=False, repr=False)

    def footer(self) -> dict[str, Any]:
        """The closing record of a stream (``type: end``)."""
        return {"format": EVENT_FORMAT, "type": "end", "finish_reason": self.finish_reason,
                "text": self.generation.text,
                "generated_tokens": len(self.generation.token_ids)
                - self.generation.prompt_len}


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _backend_lock(backend: Backend) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(backend)
        if lock is None:
            lock = _LOCKS[backend] = threading.Lock()
        return lock


class _Detokenizer:
    """Incremental text of generated ids: each delta is what decoding one more id adds."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = str(self.tok.decode(self.ids, skip_special_tokens=True))
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""  # an incomplete character (or a merge): wait for more ids
        delta, self.emitted = text[len(self.emitted):], text
        return delta


@attrs.frozen(kw_only=True)
class LiveDefaults:
    """What a monitor reads when the caller does not say, and where each value came from.

    Attributes:
        layers: the layer, or band of layers, to read.
        view: the view events run on and records show.
        layers_from: where ``layers`` came from, for headers and startup lines.
        view_from: where ``view`` came from.
    """

    layers: tuple[int, ...]
    view: View
    layers_from: str
    view_from: str


def live_defaults(vectors: SteeringVectorSet, run_dir: Path | str | None) -> LiveDefaults:
    """The read-out ``evaluation.json`` recommends for ``vectors`` in ``run_dir``.

    Layers: the recommended band (or single layer) of the baseline-free read-out when the
    vectors have all of it; else the run's best layer (`default_layer`: the paired
    task's layer of an older evaluation, or the middle layer). View: the recommended view
    (``z`` when the file names none).

    >>> import numpy as np
    >>> vs = SteeringVectorSet(concepts=["a"], layers=[0, 1, 2],
    ...     directions=np.ones((1, 3, 2)), raw_norm=np.ones((1, 3)), resid_norm=np.ones(3),
    ...     mean=np.zeros((3, 2)), std=np.ones((3, 2)), method="paired", normalisation="raw")
    >>> d = live_defaults(vs, None)
    >>> d.layers, d.view, d.layers_from
    ((1,), 'z', 'the middle layer (no evaluation.json)')
    """
    rec = recommended_read(run_dir, vectors.method)
    wanted = rec.layers
    if wanted and all(x in vectors.layers for x in wanted):
        kind = f"band {wanted[0]}-{wanted[-1]}" if len(wanted) > 1 else f"layer {wanted[0]}"
        layers, layers_from = tuple(wanted), f"the recommended read-out {kind} in {rec.source}"
    else:
        choice = (best_layer(None, vectors.method, vectors.layers) if run_dir is None
                  else RunDir(run_dir).best_layer(vectors))
        layers, layers_from = (choice.layer,), choice.reason
        if run_dir is None or not RunDir(run_dir).evaluation.is_file():
            layers_from = "the middle layer (no evaluation.json)"
        elif wanted:
            layers_from += (f"; the read-out's layers {list(wanted)} are not all among the "
                            "vectors'")
    view_from = (f"the recommended view in {rec.source}" if rec.view_named
                 else "the z view (evaluation.json recommends none)")
    return LiveDefaults(layers=layers, view=rec.view, layers_from=layers_from,
                        view_from=view_from)


class Monitor:
    """Watch concepts while a model generates: per-token scores, smoothing, events.

    Args:
        run: a run directory (from ``amygdala train``), an opened `RunContext`, or
            a `SteeringVectorSet` (then ``backend`` and ``stats`` are required).
        backend: the model's backend (default: the run's model, loaded).
        layers: layers to read (default: the run's recommended read-out layer or band,
            see `live_defaults`; for a vector set, the middle layer).
        concepts: concepts to report (default: all of the run's).
        stats: neutral statistics (default: ``load_or_compute_stats`` of the run).
        corpus: corpus root for the neutral statistics when the run's is not found.
        window: span of the moving average, in tokens (1: no smoothing).
        rule: thresholds of the events (default `EventRule()`).
        events_on: the view the moving average and the events run on: ``z``, or
            ``relative`` (each concept against the others; on z a token that lifts
            every concept can make all of them enter at once). Default: the run's
            recommended view, else ``z``.
        view: what `watch` and the server show by default (``z``, ``relative`` or
            ``both``; default: the run's recommended view, else ``z``).

    Attributes:
        defaults: what the run's evaluation recommends (`LiveDefaults`), also where it was
            overridden.
        layers_from: where `layers` came from (the caller, or ``defaults.layers_from``).
        events_on_from: where `events_on` came from.

    Raises:
        UnknownSiteError: a layer has no vectors.
        UnknownConceptError: a concept is not in the run.
        ViewError: ``events_on`` is not ``z`` or ``relative``, or ``view`` no display.

    >>> monitor = Monitor("runs/demo", layers=[15])  # doctest: +SKIP
    >>> for record in monitor.stream("Tell me about your day.", chat=True):  # doctest: +SKIP
    ...     print(record.text, record.top(1), [e.kind for e in record.events])
    """

    def __init__(
        self, run: RunContext | Path | str | SteeringVectorSet, backend: Backend | None = None,
        *, layers: Sequence[int] | None = None, concepts: Sequence[str] | None = None,
        stats: ReadoutStats | None = None, corpus: Path | str | None = None,
        window: float = 4.0, rule: EventRule | None = None, events_on: View | None = None,
        view: Display | None = None,
    ) -> None:
        if events_on is not None:
            check_view(events_on, "events_on")
        if view is not None:
            check_display(view)
        run_dir: Path | None = None
        if isinstance(run, SteeringVectorSet):
            if backend is None or stats is None:
                raise ValueError("Monitor(vectors, ...) needs backend= and stats=; or pass "
                                 "a run directory, which has both")
            vectors = run
        else:
            ctx = run if isinstance(run, RunContext) else open_run(run, backend=backend)
            backend, vectors, run_dir = ctx.backend, ctx.vectors, ctx.run_dir
        self.backend: Backend = backend
        self.vectors = vectors
        self.run_dir = run_dir
        self.defaults = live_defaults(vectors, run_dir)
        chosen = tuple(layers) if layers else self.defaults.layers
        self.layers_from = "given by the caller" if layers else self.defaults.layers_from
        for layer in chosen:
            if layer not in vectors.layers:
                raise UnknownSiteError(
                    f"no vectors at layer {layer}; the run has layers "
                    f"{', '.join(map(str, vectors.layers))}")
        self.layers = chosen
        self.concepts = tuple(concepts) if concepts else vectors.concepts
        unknown = [c for c in self.concepts if c not in vectors.concepts]
        if unknown:
            raise UnknownConceptError(
                f"unknown concepts {', '.join(unknown)}; the run has "
                f"{', '.join(vectors.concepts)}")
        self._columns = [vectors.concepts.index(c) for c in self.concepts]
        if stats is None:
            assert run_dir is not None  # a vector set without stats raised above
            stats = load_or_compute_stats(run_dir, self.backend, vectors, corpus=corpus)
        self.stats = stats
        # Sinks: the positions the neutral statistics left out (the run's pooling skip
        # where the statistics record it, else 2).
        self.skip = int(getattr(stats, "skip", SINK_TOKENS))
        self.window = float(window)
        self.rule = rule if rule is not None else EventRule()
        self.events_on: View = events_on if events_on is not None else self.defaults.view
        self.events_on_from = ("given by the caller" if events_on is not None
                               else self.defaults.view_from)
        self.view: Display = view if view is not None else self.defaults.view
        EMA(self.window)  # validate the window now, not at the first token
        # Readers and offsets of the monitored layers, taken once rather than per token.
        self._readers = {x: vectors.readers(x) for x in chosen}
        self._offsets = {x: vectors.offsets(x) for x in chosen}

    @classmethod
    def from_run(
        cls, run_dir: Path | str, backend: Backend | None = None, *,
        device: str | None = None, dtype: str | None = None,
        layers: Sequence[int] | None = None, concepts: Sequence[str] | None = None,
        corpus: Path | str | None = None, window: float = 4.0, rule: EventRule | None = None,
        events_on: View | None = None, view: Display | None = None,
    ) -> Monitor:
        """Open a run directory (its model on ``device``, unless ``backend`` is given) and
        build a monitor on it; the other arguments are those of `Monitor`.

        What ``amygdala watch`` and ``amygdala serve`` start from: layers, ``events_on``
        and ``view`` not given follow the run's ``evaluation.json`` (`live_defaults`).

        Raises:
            VectorFileError: the run's vectors are missing or malformed.
            UnknownSiteError: a layer has no vectors.
            UnknownConceptError: a concept is not in the run.
            ViewError: ``events_on`` or ``view`` is not a view.
        """
        ctx = open_run(run_dir, backend=backend, device=device, dtype=dtype)
        return cls(ctx, layers=layers, concepts=concepts, corpus=corpus, window=window,
                   rule=rule, events_on=events_on, view=view)

    def describe(self) -> str:
        """One line for logs: the layers read and where they came from, and the view events
        run on (``watch`` prints it on stderr, ``serve`` at startup)."""
        layers = self.layers
        where = (f"layers {', '.join(map(str, layers))} (mean z)" if len(layers) > 1
                 else f"layer {layers[0]}")
        return (f"{where} from {self.layers_from}; events on {self.events_on} from "
                f"{self.events_on_from}")

    # ----- scoring ------------------------------------------------------------------
    def score(self, acts: Mapping[int, torch.Tensor | np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw, z and relative scores ``[tokens, layers, concepts]`` of hidden states.

        The arithmetic of `score_tokens`, `ReadoutStats.zscore` and
        `amygdala.vectors._bundle.relative` (what ``read`` and ``read --relative`` use),
        with each layer's readers taken once. The relative view subtracts the mean over
        all the run's concepts, also when only some are reported.

        Args:
            acts: ``{layer: [tokens, d_model]}`` for every monitored layer.
        """
        raw, z, rel = [], [], []
        columns = self._columns
        for layer in self.layers:
            h = acts[layer]
            if isinstance(h, torch.Tensor):
                h = h.detach().float().cpu().numpy()
            r = np.asarray(h, np.float32) @ self._readers[layer].T + self._offsets[layer]
            zl = self.stats.zscore(layer, r)
            raw.append(r[:, columns])
            z.append(zl[:, columns])
            rel.append(relative(zl)[:, columns])
        return np.stack(raw, axis=1), np.stack(z, axis=1), np.stack(rel, axis=1)

    def header(self, prompt: str = "") -> dict[str, Any]:
        """The opening record of a stream (``type: start``): what the records hold and
        where the layers came from (``layers_from``)."""
        return {"format": EVENT_FORMAT, "type": "start", "prompt": prompt,
                "layers": list(self.layers), "concepts": list(self.concepts),
                "window": self.window, "rule": self.rule.to_json(), "sink_tokens": self.skip,
                "score": "z against neutral text (mean and std per layer and concept)",
                "relative_rule": RELATIVE_RULE, "events_on": self.events_on,
                "layers_from": self.layers_from}

    # ----- generation ---------------------------------------------------------------
    def run(
        self, prompt: str, *, on_record: Callable[[TokenRecord], None] | None = None,
        cancel: threading.Event | None = None, max_new_tokens: int = 40, chat: bool = False,
        steer: Mapping[str, float] | None = None, steer_layers: Sequence[int] | None = None,
        positions: Positions = "all", include_prompt: bool = False, do_sample: bool = False,
        temperature: float = 1.0, seed: int = 0, use_cache: bool | None = None,
    ) -> MonitorResult:
        """Generate from ``prompt`` and hand every token's record to ``on_record`` at once.

        Args:
            prompt: the text (with ``chat``, the user's message).
            on_record: called with each `TokenRecord` as soon as it is scored.
            cancel: set it (from any thread) to stop generation at the next step.
            max_new_tokens: tokens to generate at most.
            chat: wrap the prompt in the model's chat template.
            steer: ``{concept: alpha}`` steering while generating (see `steer`).
            steer_layers: layers to steer (default: `default_layer`).
            positions: where steering applies (``all``, ``prompt``, ``generated``).
            include_prompt: also emit records for the prompt's tokens.
            do_sample: as in `Backend.generate`.
            temperature: as in `Backend.generate`.
            seed: as in `Backend.generate`.
            use_cache: KV cache on or off (``None``: the backend's default).

        Returns:
            The generation, why it ended, and all records.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        backend = self.backend
        tok: Any = backend.tokenizer
        prompt_len = int(backend.prompt_ids(prompt, chat=chat).shape[1])
        sites = {layer: Site(layer=layer) for layer in self.layers}
        fed: list[int] = []
        records: list[TokenRecord] = []
        ema, tracker, detok = EMA(self.window), EventTracker(self.concepts, self.rule), \
            _Detokenizer(tok)

        def emit(record: TokenRecord) -> None:
            records.append(record)
            if on_record is not None:
                on_record(record)

        def observe(input_ids: torch.Tensor | None, acts: dict[Site, torch.Tensor]) -> None:
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            assert input_ids is not None  # generate always passes input_ids
            ids = input_ids[0].tolist()
            # Cached calls bring only new positions; uncached ones re-read the prefix.
            offset = len(fed) if (fed and len(ids) == 1) else 0
            first = len(fed)
            span = {layer: acts[site][0, first - offset:] for layer, site in sites.items()}
            raw, z, rel = self.score(span)
            tracked = rel if self.events_on == "relative" else z
            for i, token_id in enumerate(ids[first - offset:]):
                position = first + i
                fed.append(int(token_id))
                sink = position < self.skip
                scores = [np.full_like(a[i], np.nan) if sink else a[i] for a in (raw, z, rel)]
                if position < prompt_len:
                    if include_prompt:
                        emit(TokenRecord(position=position, step=None, token_id=int(token_id),
                                         token=str(tok.decode([token_id])), text="", sink=sink,
                                         layers=self.layers, concepts=self.concepts,
                                         raw=scores[0], z=scores[1], relative=scores[2]))
                    continue
                events: list[Event] = []
                smoothed = ema.value.copy() if ema.value is not None else None
                if not sink:
                    smoothed = ema.update(tracked[i].mean(axis=0))
                    events = tracker.update(smoothed)
                emit(TokenRecord(position=position, step=position - prompt_len,
                                 token_id=int(token_id), token=str(tok.decode([token_id])),
                                 text=detok.push(int(token_id)), sink=sink, layers=self.layers,
                                 concepts=self.concepts, raw=scores[0], z=scores[1],
                                 relative=scores[2], smoothed=smoothed,
                                 active=tracker.active_concepts(), events=tuple(events)))
            if len(fed) - prompt_len >= max_new_tokens:
                raise _Stop

        options: dict[str, Any] = {} if use_cache is None else {"use_cache": use_cache}
        finish: FinishReason = "length"
        generated: tuple[int, ...] = ()
        with _backend_lock(backend):
            try:
                with _steering(backend, prompt, self.vectors if steer else None, steer,
                               steer_layers, positions, (), chat), \
                        backend.observing(list(sites.values()), observe):
                    full = backend.generate(
                        prompt, max_new_tokens=max_new_tokens + 1, do_sample=do_sample,
                        temperature=temperature, seed=seed, chat=chat, **options)
                # Generation ended before the extra token: a stop token it never fed back.
                generated = full.token_ids[prompt_len:]
                finish = "stop" if len(generated) <= max_new_tokens else "length"
                generated = generated[:max_new_tokens]
            except _Stop:
                generated = tuple(fed[prompt_len:])
            except _Cancelled:
                generated, finish = tuple(fed[prompt_len:]), "cancelled"
        text = str(tok.decode(list(generated), skip_special_tokens=True))
        generation = Generation(prompt=prompt, text=text,
                                token_ids=tuple(fed[:prompt_len]) + tuple(generated),
                                prompt_len=prompt_len)
        return MonitorResult(generation=generation, finish_reason=finish,
                             records=tuple(records))

    def stream(self, prompt: str,
               **options: Any) -> Generator[TokenRecord, None, MonitorResult]:
        """Yield records while generation runs (in a worker thread).

        Takes the keyword arguments of `run` except ``on_record`` and ``cancel``.
        Closing the iterator early (``break``) cancels generation at the next step.
        The generator's return value is the `MonitorResult`.
        """
        items: queue.Queue[Any] = queue.Queue()
        cancel = threading.Event()

        def work() -> None:
            try:
                items.put(self.run(prompt, on_record=items.put, cancel=cancel, **options))
            except BaseException as exc:  # handed to the consumer below
                items.put(_Failure(exc))

        worker = threading.Thread(target=work, name="amygdala-monitor", daemon=True)
        worker.start()
        try:
            while True:
                item = items.get()
                if isinstance(item, TokenRecord):
                    yield item
                elif isinstance(item, _Failure):
                    raise item.exc
                else:
                    return item  # type: ignore[no-any-return]
        finally:
            cancel.set()
            worker.join()


@attrs.frozen
class _Failure:
    exc: BaseException
