"""Versioned JSON for the attrs value classes: one codec, one version check.

`to_data` turns a frozen attrs value (and everything it holds: nested attrs classes,
tuples, lists, dicts, numpy arrays, ``Path``) into JSON-ready Python; `from_data` reads it
back by the class's type annotations (``tuple[float, ...]``, ``dict[int, str]``,
``Accuracy | None``...). Dict keys that are ints in Python are strings in JSON and come
back as ints. Per-field metadata (`spec`) keeps today's file formats as they are: a
renamed key, a float rounding, the dtype of an array, several fields as one list (an
interval's ``low`` and ``high`` as ``"ci95": [low, high]``). A class whose format is not its
fields (grouped keys, computed entries, legacy layouts) registers a small pair of hooks
(`register`) instead of contorting the rest; a hook usually reshapes what `to_fields`
gives and hands `from_fields` the reshaped file back, so the fields' own types, renames
and roundings still apply. `check_version` is the one format-version
check of every ``from_json``; it raises the caller's typed error naming what it found,
what it reads and how to fix it.

Why not cattrs: the formats are already on disk and must stay byte-compatible, so most
of the work is per-field renames, roundings and nulls for non-finite numbers, which in
cattrs are one hand-written hook per class and field anyway; the generic part
(``attrs.fields`` plus ``typing.get_type_hints``) is the hundred lines below. A new
dependency for every user would buy little.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import numpy as np

from amygdala.errors import AmygdalaError

__all__ = ["check_version", "from_data", "from_fields", "register", "spec", "to_data",
           "to_fields"]

T = TypeVar("T")
_META = "json"
_ENCODERS: dict[type, Callable[[Any], Any]] = {}
_DECODERS: dict[type, Callable[[Any], Any]] = {}
_HINTS: dict[type, dict[str, Any]] = {}


def spec(*, key: str | None = None, round: int | None = None,
         dtype: str | None = None, at: int | None = None) -> dict[str, dict[str, Any]]:
    """Field metadata for the codec: ``attrs.field(metadata=spec(key="ci95", round=4))``.

    Args:
        key: the JSON key (default: the field's name).
        round: decimals every float of the field is rounded to when written.
        dtype: the numpy dtype an array field is written as and read back with
            (default ``float64``).
        at: the field is item ``at`` of the list under ``key``, which fields sharing
            ``key`` fill (the list sits where the first of them is declared).

    >>> spec(key="k", round=2)
    {'json': {'key': 'k', 'round': 2}}
    """
    options = {"key": key, "round": round, "dtype": dtype, "at": at}
    return {_META: {k: v for k, v in options.items() if v is not None}}


def register(cls: type[T], *, encode: Callable[[T], Any],
             decode: Callable[[Any], T]) -> None:
    """Use ``encode``/``decode`` for ``cls`` wherever it appears (its format is irregular)."""
    _ENCODERS[cls] = encode
    _DECODERS[cls] = decode


def _options(field: attrs.Attribute[Any]) -> Mapping[str, Any]:
    options: Mapping[str, Any] = field.metadata.get(_META, {})
    return options


def to_data(value: Any, *, finite: bool = False) -> Any:
    """``value`` as JSON-ready Python (dicts, lists, str, int, float, bool, None).

    Args:
        value: an attrs instance or anything it may hold.
        finite: write NaN and infinities as ``null`` (strict JSON); `from_data` reads a
            ``null`` float field back as NaN.
    """
    return _encode(value, {}, finite)


def _encode(value: Any, options: Mapping[str, Any], finite: bool) -> Any:
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return _encode(encoder(value), {}, finite)
    if attrs.has(type(value)):
        return _encode_fields(value, finite)
    if isinstance(value, np.ndarray):
        dtype = options.get("dtype")
        return _encode(np.asarray(value, dtype).tolist() if dtype else value.tolist(),
                       options, finite)
    if isinstance(value, bool | str | None):
        return value
    if isinstance(value, np.generic):
        return _encode(value.item(), options, finite)
    if isinstance(value, float):
        if finite and not math.isfinite(value):
            return None
        digits = options.get("round")
        return value if digits is None else round(value, digits)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _encode(v, options, finite) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_encode(v, options, finite) for v in value]
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON; expected an attrs class, "
                    "a container, a number, a string or a numpy array")


def to_fields(value: Any, *, finite: bool = False) -> dict[str, Any]:
    """The field-by-field JSON of attrs instance ``value``, ignoring a hook registered for
    its own class (nested values still use theirs): what a hook starts from.

    >>> @attrs.frozen
    ... class Span:
    ...     low: float = attrs.field(metadata=spec(key="ci", at=0))
    ...     high: float = attrs.field(metadata=spec(key="ci", at=1))
    >>> to_fields(Span(0.5, 1.0))
    {'ci': [0.5, 1.0]}
    """
    return _encode_fields(value, finite)


def _encode_fields(value: Any, finite: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in attrs.fields(type(value)):
        options = _options(f)
        key, at = options.get("key", f.name), options.get("at")
        item = _encode(getattr(value, f.name), options, finite)
        if at is None:
            out[key] = item
        else:
            slots = out.setdefault(key, [])
            slots.extend([None] * (at + 1 - len(slots)))
            slots[at] = item
    return out


def from_data(cls: type[T], data: Any) -> T:
    """Rebuild a ``cls`` from `to_data` output (keys the class lacks are ignored).

    Raises:
        KeyError: a field without a default is missing.
        TypeError, ValueError: a value does not fit its field's type.
    """
    out: T = _decode(cls, data, {})
    return out


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(tp: Any, data: Any, options: Mapping[str, Any]) -> Any:
    if tp is Any:
        return data
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        if data is None:
            return None if type(None) in args else _decode(args[0], None, options)
        kinds = [a for a in args if a is not type(None)]
        return _decode(kinds[0], data, options) if len(kinds) == 1 else data
    if origin is typing.Literal:
        return data
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], x, options) for x in data)
        if args:
            return tuple(_decode(a, x, options) for a, x in zip(args, data, strict=True))
        return tuple(data)
    if origin in (list, Sequence):
        items = [_decode(args[0] if args else Any, x, options) for x in data]
        return items if origin is list else tuple(items)
    if origin in (dict, Mapping):
        key, value = args if args else (Any, Any)
        return {_decode(key, k, {}) if key is not str else k: _decode(value, v, options)
                for k, v in data.items()}
    if isinstance(tp, type):
        return _decode_type(tp, data, options)
    return data


def _decode_type(tp: type, data: Any, options: Mapping[str, Any]) -> Any:
    decoder = _DECODERS.get(tp)
    if decoder is not None:
        return decoder(data)
    if attrs.has(tp):
        return from_fields(tp, data)
    if tp is np.ndarray:
        return np.asarray(data, options.get("dtype", np.float64))
    if tp is float:
        return math.nan if data is None else float(data)
    if tp is int and not isinstance(data, bool):
        return int(data)
    if tp is Path:
        return Path(data)
    return data


def from_fields(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build a ``cls`` from its field-by-field JSON (the inverse of `to_fields`), ignoring a
    hook registered for ``cls`` itself.

    Raises:
        KeyError: a field without a default is missing.
        TypeError, ValueError: a value does not fit its field's type.
    """
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in attrs.fields(cls):  # type: ignore[arg-type]
        options = _options(f)
        key, at = options.get("key", f.name), options.get("at")
        if key in data:
            item = data[key] if at is None else data[key][at]
            kwargs[f.alias] = _decode(hints[f.name], item, options)
        elif f.default is attrs.NOTHING:
            raise KeyError(key)
    return cls(**kwargs)


def check_version(data: Mapping[str, Any], *, readable: Collection[int],
                  error: type[AmygdalaError], what: str, fix: str,
                  key: str = "format_version") -> int:
    """The version ``data[key]`` when this amygdala reads it; else raise ``error``.

    Args:
        data: the parsed file.
        readable: the versions this code reads.
        error: the typed error to raise (`amygdala.errors`).
        what: the file in words (``"circuit"``, ``"quality report"``, a path).
        fix: what the user should do (``"rerun `amygdala circuits`"``).
        key: where the version is.

    >>> from amygdala.errors import CircuitFileError
    >>> check_version({"format_version": 1}, readable=(1,), error=CircuitFileError,
    ...               what="circuit", fix="rerun")
    1
    >>> check_version({"format_version": 9}, readable=(1, 2), error=CircuitFileError,
    ...               what="c.json", fix="upgrade")
    Traceback (most recent call last):
    ...
    amygdala.errors.CircuitFileError: c.json has format_version 9, this amygdala reads 1, 2; upgrade
    """
    found: Any = data.get(key) if isinstance(data, Mapping) else None
    if found not in readable or isinstance(found, bool):
        raise error(f"{what} has {key} {found}, this amygdala reads "
                    f"{', '.join(map(str, readable))}; {fix}")
    return int(found)
