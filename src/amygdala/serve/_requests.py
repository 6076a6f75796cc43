"""Parse and check request bodies; every refusal says which field and what is expected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from amygdala._views import Display, View, check_display, check_view
from amygdala.errors import RequestError, ViewError
from amygdala.intervene._steer import POSITIONS
from amygdala.serve._config import ServeConfig
from amygdala.vectors._set import SteeringVectorSet

__all__ = ["Job", "ReadJob", "parse_generation", "parse_read"]

_ROLES = ("system", "user", "assistant")


@attrs.frozen(kw_only=True)
class Job:
    """One checked generation request.

    Attributes:
        kind: ``chat`` (``/v1/chat/completions``) or ``completion`` (``/v1/completions``).
        prompt: the text generation starts from.
        chat: whether ``prompt`` is one user message to wrap in the chat template
            (else it is fed as it is, a rendered conversation or a plain completion prompt).
        max_tokens: tokens to generate at most.
        temperature: 0 for greedy decoding, else the sampling temperature.
        seed: sampling seed.
        stream: answer with server-sent events.
        include_usage: add a usage chunk at the end of a stream.
        layers: read-out layers (None: the server's).
        concepts: concepts reported (None: all).
        top_k: concepts per token in the stream (None: the full table).
        raw: also report raw reader scores.
        view: ``z``, ``relative`` or ``both``: which tables the records carry (None: the
            server's, the run's recommended view).
        events_on: ``z`` or ``relative``: the view smoothing and events run on (None:
            the server's).
        steer: ``{concept: alpha}``.
        steer_layers: layers to steer (None: the run's default layer).
        positions: where steering applies.
    """

    kind: Literal["chat", "completion"]
    prompt: str
    chat: bool
    max_tokens: int
    temperature: float
    seed: int
    stream: bool
    include_usage: bool
    layers: tuple[int, ...] | None
    concepts: tuple[str, ...] | None
    top_k: int | None
    raw: bool
    view: Display | None
    events_on: View | None
    steer: dict[str, float]
    steer_layers: tuple[int, ...] | None
    positions: Literal["all", "prompt", "generated"]


@attrs.frozen(kw_only=True)
class ReadJob:
    """One checked ``/v1/amygdala/read`` request."""

    text: str
    layers: tuple[int, ...] | None
    concepts: tuple[str, ...] | None
    view: Display | None = None


def _bad(message: str, param: str, *, code: str = "invalid_value", status: int = 400) -> None:
    raise RequestError(message, status=status, param=param, code=code)


def _int(body: Mapping[str, Any], name: str, default: int | None, lo: int,
         hi: int | None, param: str | None = None) -> int | None:
    value = body.get(name)
    where = param or name
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(f"{where} must be an integer, got {type(value).__name__} {value!r}", where)
    if value < lo or (hi is not None and value > hi):
        upper = f" and at most {hi}" if hi is not None else ""
        _bad(f"{where} must be at least {lo}{upper}, got {value}", where)
    return int(value)


def _number(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        _bad(f"{name} must be a number, got {type(value).__name__} {value!r}", name)
    if not lo <= float(value) <= hi:
        _bad(f"{name} must be between {lo} and {hi}, got {value}", name)
    return float(value)


def _bool(body: Mapping[str, Any], name: str, default: bool, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        _bad(f"{param or name} must be true or false, got {value!r}", param or name)
    return bool(value)


def _layers(value: Any, vectors: SteeringVectorSet, param: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    valid = ", ".join(map(str, vectors.layers))
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in value):
        _bad(f"{param} must be a non-empty list of layer numbers from {valid}, got {value!r}",
             param)
    bad = [x for x in value if x not in vectors.layers]
    if bad:
        _bad(f"{param}: no vectors at layer(s) {bad}; this run has layers {valid}", param,
             code="unknown_layer")
    return tuple(dict.fromkeys(int(x) for x in value))


def _concepts(value: Any, vectors: SteeringVectorSet, param: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
        _bad(f"{param} must be a non-empty list of concept names, got {value!r}", param)
    unknown = [c for c in value if c not in vectors.concepts]
    if unknown:
        _bad(f"{param}: unknown concept(s) {', '.join(unknown)}; this run has "
             f"{', '.join(vectors.concepts)}", param, code="unknown_concept")
    return tuple(dict.fromkeys(value))


def _steer(value: Any, vectors: SteeringVectorSet, config: ServeConfig) -> dict[str, float]:
    param = "amygdala.steer"
    if value is None:
        return {}
    if not isinstance(value, dict):
        _bad(f"{param} must be an object {{concept: alpha}}, got {value!r}", param)
    unknown = [c for c in value if c not in vectors.concepts]
    if unknown:
        _bad(f"{param}: unknown concept(s) {', '.join(unknown)}; this run has "
             f"{', '.join(vectors.concepts)}", param, code="unknown_concept")
    out = {}
    for concept, alpha in value.items():
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            _bad(f"{param}.{concept} must be a number (alpha, in units of the layer's "
                 f"residual norm), got {alpha!r}", f"{param}.{concept}")
        if abs(alpha) > config.max_alpha:
            _bad(f"{param}.{concept}: alpha {alpha} is out of range; use "
                 f"-{config.max_alpha} to {config.max_alpha} (useful steering is about "
                 "0.05-0.3; the server's --max-alpha sets the limit)", f"{param}.{concept}",
                 code="alpha_out_of_range")
        out[str(concept)] = float(alpha)
    return out


def _view(value: Any, param: str, *, display: bool = False) -> Any:
    """None, or a view (``display``: a display) checked by `amygdala._views`."""
    if value is None:
        return None
    try:
        return check_display(value, param) if display else check_view(value, param)
    except ViewError as exc:
        _bad(str(exc), param)
    raise AssertionError  # unreachable: _bad raises


def _extension(body: Mapping[str, Any]) -> Mapping[str, Any]:
    ext: Any = body.get("amygdala")
    if ext is None:
        return {}
    if not isinstance(ext, dict):
        _bad(f"amygdala must be an object (concepts, layers, top_k, steer...), got {ext!r}",
             "amygdala")
    known = {"concepts", "layers", "top_k", "raw", "view", "events_on", "steer", "steer_layers",
             "positions"}
    extra = sorted(set(ext) - known)
    if extra:
        _bad(f"amygdala has unknown field(s) {', '.join(extra)}; known: "
             f"{', '.join(sorted(known))}", f"amygdala.{extra[0]}")
    return dict(ext)


def _text_content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content):
        return "".join(p["text"] for p in content)
    _bad(f"{where} must be a string or a list of {{'type': 'text', 'text': ...}} parts "
         f"(this server reads text only), got {content!r}", where)
    raise AssertionError  # unreachable: _bad raises


def _unsupported(body: Mapping[str, Any]) -> None:
    # Fields a client may send whose non-default values this server cannot honour.
    if body.get("n") not in (None, 1):
        _bad(f"n must be 1 (one choice per request), got {body['n']!r}", "n")
    if body.get("top_p") not in (None, 1, 1.0):
        _bad(f"top_p is not supported; omit it or send 1, got {body['top_p']!r}", "top_p")
    if body.get("stop") not in (None, [], ""):
        _bad("stop sequences are not supported; omit stop (generation ends at the model's "
             "stop token or max_tokens)", "stop")
    if body.get("tools") or body.get("functions"):
        _bad("tools and functions are not supported by this server", "tools")


def parse_generation(body: Any, kind: Literal["chat", "completion"], config: ServeConfig,
                     vectors: SteeringVectorSet, model_ids: Sequence[str],
                     render_chat: Any) -> Job:
    """Check a chat or completion request body and turn it into a `Job`.

    Args:
        body: the decoded JSON body.
        kind: which endpoint received it.
        config: the server's limits.
        vectors: the run's vectors (for concept and layer names).
        model_ids: names a request may give as ``model``.
        render_chat: ``messages -> prompt text`` (the tokenizer's chat template).

    Raises:
        RequestError: the body is malformed or over a limit (the message says why).
    """
    if not isinstance(body, dict):
        _bad(f"the request body must be a JSON object, got {type(body).__name__}", "body")
    model = body.get("model")
    if model is not None and model not in model_ids:
        _bad(f"model {model!r} is not served here; use one of {', '.join(model_ids)} "
             "(GET /v1/models)", "model", code="model_not_found", status=404)
    _unsupported(body)
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            _bad("messages must be a non-empty list of {role, content}", "messages")
        clean = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                _bad(f"messages[{i}] must be an object with role one of {', '.join(_ROLES)} "
                     f"and text content, got {m!r}", f"messages[{i}]")
            clean.append({"role": m["role"],
                          "content": _text_content(m.get("content"), f"messages[{i}].content")})
        single = len(clean) == 1 and clean[0]["role"] == "user"
        prompt, chat = (clean[0]["content"], True) if single else (render_chat(clean), False)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            _bad(f"prompt must be a non-empty string, got {prompt!r}", "prompt")
        chat = False
    limit_name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = _int(body, limit_name, config.default_max_tokens, 1, config.max_tokens)
    temperature = _number(body, "temperature", 0.0, 0.0, 2.0)
    seed = _int(body, "seed", 0, 0, None)
    stream = _bool(body, "stream", False)
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        _bad(f"stream_options must be an object, got {options!r}", "stream_options")
    ext = _extension(body)
    top_k = _int(ext, "top_k", config.top_k, 1, len(vectors.concepts), "amygdala.top_k")
    if "top_k" in ext and ext["top_k"] is None:
        top_k = None
    positions = ext.get("positions", "all")
    if positions not in POSITIONS:
        _bad(f"amygdala.positions must be one of {', '.join(POSITIONS)}, got {positions!r}",
             "amygdala.positions")
    assert max_tokens is not None and seed is not None
    return Job(kind=kind, prompt=prompt, chat=chat, max_tokens=max_tokens,
               temperature=temperature, seed=seed, stream=stream,
               include_usage=_bool(options, "include_usage", False,
                                   "stream_options.include_usage"),
               layers=_layers(ext.get("layers"), vectors, "amygdala.layers"),
               concepts=_concepts(ext.get("concepts"), vectors, "amygdala.concepts"),
               top_k=top_k, raw=_bool(ext, "raw", False, "amygdala.raw"),
               view=_view(ext.get("view"), "amygdala.view", display=True),
               events_on=_view(ext.get("events_on"), "amygdala.events_on"),
               steer=_steer(ext.get("steer"), vectors, config),
               steer_layers=_layers(ext.get("steer_layers"), vectors, "amygdala.steer_layers"),
               positions=positions)


def parse_read(body: Any, vectors: SteeringVectorSet) -> ReadJob:
    """Check a ``/v1/amygdala/read`` body: ``{"text", "layers", "concepts", "view"}``.

    Raises:
        RequestError: the body is malformed.
    """
    if not isinstance(body, dict):
        _bad(f"the request body must be a JSON object, got {type(body).__name__}", "body")
    text = body.get("text")
    if not isinstance(text, str) or not text:
        _bad(f"text must be a non-empty string, got {text!r}", "text")
    extra = sorted(set(body) - {"text", "layers", "concepts", "view", "model"})
    if extra:
        _bad(f"unknown field(s) {', '.join(extra)}; expected text, layers, concepts, view",
             extra[0])
    return ReadJob(text=text, layers=_layers(body.get("layers"), vectors, "layers"),
                   concepts=_concepts(body.get("concepts"), vectors, "concepts"),
                   view=_view(body.get("view"), "view", display=True))
