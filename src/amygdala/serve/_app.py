"""The ASGI app: OpenAI-compatible completions with a per-token read-out, on Starlette.

One model serves one generation at a time (steering hooks act on the whole
model); others wait in a bounded queue, and a request that finds it full gets
429 at once. Generation runs in a worker thread and hands each token's record
to the event loop; a watcher task listens for the client's disconnect and
cancels the generation at its next step, and the model is released only after
the worker has stopped.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from amygdala._views import Display
from amygdala.errors import RequestError
from amygdala.intervene._monitor import EVENT_FORMAT, Monitor, MonitorResult, TokenRecord
from amygdala.intervene._readout import read
from amygdala.serve._config import ServeConfig
from amygdala.serve._requests import Job, ReadJob, parse_generation, parse_read
from amygdala.vectors._bundle import relative

__all__ = ["Engine", "create_app"]


def _error(exc: RequestError) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(exc.status, "invalid_request_error")
    headers = {"Retry-After": "1"} if exc.status == 429 else None
    return JSONResponse({"error": {"message": str(exc), "type": kind, "param": exc.param,
                                   "code": exc.code}}, status_code=exc.status, headers=headers)


class Engine:
    """The model, its monitor settings, the queue and the counters of one server."""

    def __init__(self, monitor: Monitor, config: ServeConfig) -> None:
        self.monitor = monitor
        self.config = config
        self.admitted = 0  # running + waiting
        self.running = 0
        self.counters = {"completed": 0, "cancelled": 0, "rejected_queue_full": 0,
                         "tokens_generated": 0}
        self._lock: asyncio.Lock | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amygdala-serve")

    @property
    def model_ids(self) -> tuple[str, ...]:
        """Names a request may give as ``model``."""
        ids = [self.config.model_name, self.monitor.backend.model_id]
        return tuple(dict.fromkeys(ids))

    def admit(self) -> None:
        """Take a place in the queue or raise 429."""
        if self.admitted >= 1 + self.config.max_queue:
            self.counters["rejected_queue_full"] += 1
            raise RequestError(
                f"the server is busy: 1 request generating and {self.config.max_queue} "
                "waiting (--max-queue); retry shortly", status=429, code="queue_full")
        self.admitted += 1

    def leave(self) -> None:
        """Give the queue place back."""
        self.admitted -= 1

    def monitor_for(self, job: Job) -> Monitor:
        """A monitor with the request's layers and concepts, sharing the server's model."""
        base = self.monitor
        monitor = Monitor(base.vectors, base.backend, stats=base.stats,
                          layers=job.layers or base.layers,
                          concepts=job.concepts or base.concepts, window=base.window,
                          rule=base.rule, events_on=job.events_on or base.events_on,
                          view=base.view)
        monitor.layers_from = "amygdala.layers" if job.layers else base.layers_from
        monitor.events_on_from = ("amygdala.events_on" if job.events_on
                                  else base.events_on_from)
        return monitor

    async def _model(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def call(self, fn: Callable[[threading.Event], Any], cancel: threading.Event) -> Any:
        """Run ``fn(cancel)`` on the model thread once the model is free; return its result.

        Returns None without running ``fn`` when ``cancel`` was set while waiting.
        """
        lock = await self._model()
        async with lock:
            if cancel.is_set():
                return None
            self.running += 1
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._pool, fn, cancel)
            finally:
                self.running -= 1

    def _count(self, result: MonitorResult | None) -> None:
        if result is None or result.finish_reason == "cancelled":
            self.counters["cancelled"] += 1
        else:
            self.counters["completed"] += 1
        if result is not None:
            g = result.generation
            self.counters["tokens_generated"] += len(g.token_ids) - g.prompt_len

    async def generate(self, job: Job) -> AsyncIterator[TokenRecord | MonitorResult]:
        """Yield the job's records as they come, then its `MonitorResult`.

        Closing the iterator early cancels the generation and waits (shielded from
        cancellation) until the worker has stopped, so the next request gets a
        model without this one's hooks.
        """
        monitor = self.monitor_for(job)
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def hand_over(record: TokenRecord) -> None:
            loop.call_soon_threadsafe(items.put_nowait, record)

        def work(flag: threading.Event) -> MonitorResult:
            return monitor.run(
                job.prompt, chat=job.chat, max_new_tokens=job.max_tokens, on_record=hand_over,
                cancel=flag, steer=job.steer or None, steer_layers=job.steer_layers,
                positions=job.positions, do_sample=job.temperature > 0,
                temperature=job.temperature if job.temperature > 0 else 1.0, seed=job.seed)

        task = asyncio.ensure_future(self.call(work, cancel))
        task.add_done_callback(lambda _t: items.put_nowait(None))
        counted = False
        try:
            while (item := await items.get()) is not None:
                yield item
            result: MonitorResult = task.result()
            self._count(result)
            counted = True
            yield result
        finally:
            if not counted:
                cancel.set()
                with anyio.CancelScope(shield=True):
                    try:
                        self._count(await task)
                    except Exception:
                        self._count(None)


class _EventStream(Response):
    """Server-sent events from an async iterator, cancelled when the client goes away."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        # Response sets content-length 0 for an empty body; a stream has none.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.events = events
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async with anyio.create_task_group() as group:
                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                try:
                    async for chunk in self.events:
                        await send({"type": "http.response.body", "body": chunk,
                                    "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    pass  # the client went away mid-send
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.events.aclose()  # type: ignore[attr-defined]
            self.on_close()


def _sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def create_app(monitor: Monitor, config: ServeConfig | None = None) -> Starlette:
    """Build the ASGI app around a `Monitor` (its model, run, default layers and rule).

    Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``,
    ``POST /v1/amygdala/read``, ``GET /v1/models``, ``GET /health``.
    """
    config = config or ServeConfig()
    engine = Engine(monitor, config)
    tok: Any = monitor.backend.tokenizer
    vectors = monitor.vectors

    def render_chat(messages: list[dict[str, str]]) -> str:
        text = str(tok.apply_chat_template(messages, tokenize=False,
                                           add_generation_prompt=True))
        bos = getattr(tok, "bos_token", None)
        # The template already holds BOS; tokenising adds it again where the tokenizer does.
        if bos and text.startswith(bos) and tok("")["input_ids"]:
            text = text[len(bos):]
        return text

    def authorise(request: Request) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        if header != f"Bearer {config.api_key}":
            raise RequestError(
                "missing or wrong API key; send the header 'Authorization: Bearer <key>' "
                "with the key the server was started with (--api-key)", status=401,
                code="invalid_api_key")

    async def body_of(request: Request) -> Any:
        declared = request.headers.get("content-length")
        limit = config.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(f"the body has {declared} bytes; this server accepts at most "
                               f"{limit} (--max-body-bytes)", status=413, code="body_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"the body is over {limit} bytes (--max-body-bytes)",
                                   status=413, code="body_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the body is not valid JSON ({exc}); send a JSON object with "
                               "Content-Type: application/json", code="invalid_json",
                               param="body") from exc

    def check_prompt(job: Job) -> int:
        n = int(monitor.backend.prompt_ids(job.prompt, chat=job.chat).shape[1])
        if n > config.max_prompt_tokens:
            raise RequestError(
                f"the prompt has {n} tokens (chat template included); this server accepts "
                f"at most {config.max_prompt_tokens} (--max-prompt-tokens); shorten it",
                param="messages" if job.kind == "chat" else "prompt", code="prompt_too_long")
        return n

    def guarded(handler: Callable[[Request], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestError as exc:
                return _error(exc)
        return endpoint

    def chunk(job: Job, rid: str, created: int, *, text: str | None,
              finish: str | None, extra: dict[str, Any] | None = None,
              first: bool = False) -> dict[str, Any]:
        if job.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else (
                {} if text is None else {"content": text})
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        out: dict[str, Any] = {"id": rid, "object": obj, "created": created,
                               "model": config.model_name, "choices": [choice]}
        if extra is not None:
            out["amygdala"] = extra
        return out

    def usage(result: MonitorResult) -> dict[str, int]:
        g = result.generation
        done = len(g.token_ids) - g.prompt_len
        return {"prompt_tokens": g.prompt_len, "completion_tokens": done,
                "total_tokens": g.prompt_len + done}

    def finish_reason(result: MonitorResult) -> str:
        return "stop" if result.finish_reason == "stop" else "length"

    def shown(job: Job | ReadJob) -> Display:
        """The tables a request's records carry: its ``view``, else the server's default
        (the run's recommended view, `Monitor.view`)."""
        return job.view or monitor.view

    async def generation(request: Request, kind: Any) -> Response:
        authorise(request)
        job = parse_generation(await body_of(request), kind, config, vectors,
                               engine.model_ids, render_chat)
        check_prompt(job)
        engine.admit()
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if job.stream:
            return _EventStream(stream(job, rid, created), engine.leave)
        try:
            return await complete(request, job, rid, created)
        finally:
            engine.leave()

    async def stream(job: Job, rid: str, created: int) -> AsyncIterator[bytes]:
        header = {**engine.monitor_for(job).header(), "prompt": None, "view": shown(job)}
        yield _sse(chunk(job, rid, created, text=None, finish=None, extra=header, first=True))
        records = engine.generate(job)
        try:
            async for item in records:
                if isinstance(item, TokenRecord):
                    yield _sse(chunk(job, rid, created, text=item.text, finish=None,
                                     extra=item.to_json(top_k=job.top_k, raw=job.raw,
                                                      view=shown(job))))
                else:
                    yield _sse(chunk(job, rid, created, text=None,
                                     finish=finish_reason(item), extra=item.footer()))
                    if job.include_usage:
                        last = chunk(job, rid, created, text=None, finish=None)
                        last["choices"], last["usage"] = [], usage(item)
                        yield _sse(last)
            yield _sse("[DONE]")
        finally:
            with anyio.CancelScope(shield=True):
                await records.aclose()  # type: ignore[attr-defined]

    async def complete(request: Request, job: Job, rid: str, created: int) -> Response:
        records: list[TokenRecord] = []
        result: MonitorResult | None = None
        async with anyio.create_task_group() as group:
            async def watch() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            gen = engine.generate(job)
            try:
                async for item in gen:
                    if isinstance(item, TokenRecord):
                        records.append(item)
                    else:
                        result = item
            finally:
                with anyio.CancelScope(shield=True):
                    await gen.aclose()  # type: ignore[attr-defined]
            group.cancel_scope.cancel()
        if result is None:  # the client went away; nobody reads this
            return Response(status_code=499)
        table = _table(records, job.raw, shown(job))
        table.update(engine.monitor_for(job).header(), type="table",
                     finish_reason=result.finish_reason, prompt=None, view=shown(job))
        if job.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0, "message": {"role": "assistant", "content": result.generation.text},
                "finish_reason": finish_reason(result)}
        else:
            choice = {"index": 0, "text": result.generation.text, "logprobs": None,
                      "finish_reason": finish_reason(result)}
        return JSONResponse({
            "id": rid, "object": "chat.completion" if job.kind == "chat" else "text_completion",
            "created": created, "model": config.model_name, "choices": [choice],
            "usage": usage(result), "amygdala": table})

    async def chat_completions(request: Request) -> Response:
        return await generation(request, "chat")

    async def completions(request: Request) -> Response:
        return await generation(request, "completion")

    async def read_text(request: Request) -> Response:
        authorise(request)
        job = parse_read(await body_of(request), vectors)
        n = len(tok(job.text, add_special_tokens=True)["input_ids"])
        if n > config.max_prompt_tokens:
            raise RequestError(f"text has {n} tokens; at most {config.max_prompt_tokens} "
                               "(--max-prompt-tokens)", param="text", code="prompt_too_long")
        layers = job.layers or monitor.layers
        concepts = job.concepts or monitor.concepts
        columns = [vectors.concepts.index(c) for c in concepts]
        engine.admit()
        try:
            readouts = await engine.call(lambda _cancel: [
                read(monitor.backend, vectors, job.text, layer=layer, stats=monitor.stats)
                for layer in layers], threading.Event())
        finally:
            engine.leave()
        tokens = list(readouts[0].tokens)
        sink = [t < monitor.skip for t in range(len(tokens))]
        out: dict[str, Any] = {
            "format": EVENT_FORMAT, "type": "read", "layers": list(layers),
            "concepts": list(concepts), "tokens": tokens, "sink": sink, "view": shown(job)}
        # The relative view subtracts the mean over all the run's concepts (as `read`).
        tables = {"z": [r.z for r in readouts], "relative": [relative(r.z) for r in readouts]}
        for name, per_layer in tables.items():
            if shown(job) in (name, "both"):
                # [tokens, layers, concepts]
                z = np.stack([t[:, columns] for t in per_layer], axis=1)
                out[name] = [None if s else np.round(row.astype(np.float64), 4).tolist()
                             for s, row in zip(sink, z, strict=True)]
        return JSONResponse(out)

    async def models(request: Request) -> Response:
        authorise(request)
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "amygdala",
             "amygdala": {"concepts": list(vectors.concepts), "layers": list(vectors.layers),
                          "default_layers": list(monitor.layers),
                          "layers_from": monitor.layers_from,
                          "default_view": monitor.view,
                          "default_events_on": monitor.events_on}}
            for name in engine.model_ids]})

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": config.model_name,
                             "running": engine.running,
                             "queued": engine.admitted - engine.running,
                             **engine.counters})

    async def not_found(request: Request, _exc: Exception) -> Response:
        return _error(RequestError(
            f"no route {request.method} {request.url.path}; routes: POST /v1/chat/completions, "
            "POST /v1/completions, POST /v1/amygdala/read, GET /v1/models, GET /health",
            status=404, code="not_found"))

    async def bad_method(request: Request, _exc: Exception) -> Response:
        return _error(RequestError(f"{request.method} is not allowed on {request.url.path}",
                                   status=405, code="method_not_allowed"))

    routes = [
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/completions", guarded(completions), methods=["POST"]),
        Route("/v1/amygdala/read", guarded(read_text), methods=["POST"]),
        Route("/v1/models", guarded(models), methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method})
    app.state.engine = engine
    return app


def _table(records: list[TokenRecord], raw: bool, view: Display) -> dict[str, Any]:
    """The whole read-out of a finished generation (non-streaming responses)."""
    out: dict[str, Any] = {
        "tokens": [r.token for r in records], "token_ids": [r.token_id for r in records],
        "sink": [r.sink for r in records],
        "smoothed": [None if r.smoothed is None else np.round(r.smoothed, 3).tolist()
                     for r in records],
        "events": [e.to_json() for r in records for e in r.events],
    }
    if view != "relative":
        out["z"] = [None if r.sink else np.round(r.z.astype(np.float64), 3).tolist()
                    for r in records]
    if view != "z":
        out["relative"] = [None if r.sink
                           else np.round(r.relative.astype(np.float64), 3).tolist()
                           for r in records]
    if raw:
        out["raw"] = [None if r.sink else np.round(r.raw.astype(np.float64), 3).tolist()
                      for r in records]
    return out
