"""``amygdala serve``: an OpenAI-compatible HTTP server with a per-token read-out.

Needs the ``serve`` extra (``pip install 'amygdala[serve]'``: Starlette, uvicorn,
rich). Import `create_app` to mount the app in your own ASGI server, or call
`serve` to run it with uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amygdala.serve._config import ServeConfig, is_loopback

if TYPE_CHECKING:
    from amygdala.intervene._monitor import Monitor

__all__ = ["ServeConfig", "create_app", "is_loopback", "serve"]


def _require() -> None:
    from amygdala.errors import MissingDependencyError

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"the server needs Starlette and uvicorn ({exc}); "
            "pip install 'amygdala[serve]'") from exc


def create_app(monitor: Monitor, config: ServeConfig | None = None) -> Any:
    """Build the Starlette app (see `amygdala.serve._app.create_app`).

    Raises:
        MissingDependencyError: Starlette is not installed.
    """
    _require()
    from amygdala.serve._app import create_app as build

    return build(monitor, config or ServeConfig())


def serve(monitor: Monitor, config: ServeConfig | None = None, *,
          log_level: str = "warning") -> None:
    """Run the server with uvicorn until interrupted.

    Raises:
        MissingDependencyError: Starlette or uvicorn is not installed.
    """
    _require()
    import uvicorn

    config = config or ServeConfig()
    uvicorn.run(create_app(monitor, config), host=config.host, port=config.port,
                log_level=log_level)
