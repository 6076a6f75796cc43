"""Server settings and the limits that keep one machine responsive."""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs

__all__ = ["ServeConfig", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_key(instance: ServeConfig, _attribute: Any, _value: Any) -> None:
    if not is_loopback(instance.host) and not instance.api_key:
        raise ValueError(
            f"binding {instance.host!r} exposes the model beyond this machine; pass "
            "--api-key KEY (clients then send 'Authorization: Bearer KEY'), or bind 127.0.0.1")


@attrs.frozen(kw_only=True)
class ServeConfig:
    """Where the server listens and what it accepts.

    Attributes:
        host: address to bind (default loopback only).
        port: TCP port.
        api_key: bearer token every ``/v1`` request must carry (required off loopback).
        model_name: the id ``GET /v1/models`` lists and requests name.
        max_prompt_tokens: longest prompt accepted, in tokens (chat template included).
        max_tokens: largest ``max_tokens`` a request may ask for.
        default_max_tokens: ``max_tokens`` when a request gives none.
        max_body_bytes: largest request body.
        max_queue: requests allowed to wait while one generates; more get 429.
        max_alpha: largest ``|alpha|`` a steering request may use.
        top_k: concepts per streamed token when a request does not choose.
    """

    host: str = attrs.field(default="127.0.0.1", validator=_check_key)
    port: int = attrs.field(default=8000, validator=attrs.validators.and_(
        attrs.validators.ge(0), attrs.validators.le(65535)))
    api_key: str | None = None
    model_name: str = "amygdala"
    max_prompt_tokens: int = attrs.field(default=2048, validator=attrs.validators.ge(1))
    max_tokens: int = attrs.field(default=512, validator=attrs.validators.ge(1))
    default_max_tokens: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    max_body_bytes: int = attrs.field(default=1 << 20, validator=attrs.validators.ge(256))
    max_queue: int = attrs.field(default=8, validator=attrs.validators.ge(0))
    max_alpha: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    top_k: int = attrs.field(default=5, validator=attrs.validators.ge(1))
