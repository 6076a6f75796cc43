"""`amygdala serve RUN_DIR`: an OpenAI-compatible server with a per-token read-out."""

from __future__ import annotations

import argparse
import os
import sys

from amygdala.cli._common import add_device_options, add_monitor_options, event_rule, open_monitor

NAME = "serve"
HELP = ("Serve the run's model over HTTP (OpenAI chat/completions API, SSE streaming) with "
        "per-token concept scores, events and steering.")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the serve options to ``parser``."""
    from amygdala.serve._config import ServeConfig

    d = ServeConfig()
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory from `amygdala train`")
    add_device_options(parser)
    parser.add_argument("--host", default=d.host,
                        help="address to bind (default 127.0.0.1; any other needs --api-key)")
    parser.add_argument("--port", type=int, default=d.port, help=f"TCP port (default {d.port})")
    parser.add_argument("--api-key", default=None,
                        help="bearer token clients must send (default: $AMYGDALA_API_KEY)")
    parser.add_argument("--name", default=None,
                        help="model id listed by /v1/models (default: the run directory's name)")
    add_monitor_options(parser)
    parser.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens)
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens,
                        help=f"largest max_tokens a request may ask (default {d.max_tokens})")
    parser.add_argument("--default-max-tokens", type=int, default=d.default_max_tokens)
    parser.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes)
    parser.add_argument("--max-queue", type=int, default=d.max_queue,
                        help=f"requests that may wait while one generates (default "
                        f"{d.max_queue}); more get 429")
    parser.add_argument("--max-alpha", type=float, default=d.max_alpha,
                        help=f"largest |alpha| for steering requests (default {d.max_alpha})")
    parser.add_argument("--top-k", type=int, default=d.top_k,
                        help=f"concepts per streamed token by default (default {d.top_k})")
    parser.add_argument("--log-level", default="warning",
                        choices=("critical", "error", "warning", "info", "debug"))


def run(args: argparse.Namespace) -> int:
    """Check the settings, load the run, and serve until interrupted."""
    from pathlib import Path

    from amygdala.serve import ServeConfig, serve

    key = args.api_key or os.environ.get("AMYGDALA_API_KEY") or None
    try:
        # Settings are checked before the model loads: a refused --host fails fast.
        config = ServeConfig(
            host=args.host, port=args.port, api_key=key,
            model_name=args.name or Path(args.run_dir).resolve().name,
            max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens,
            default_max_tokens=min(args.default_max_tokens, args.max_tokens),
            max_body_bytes=args.max_body_bytes, max_queue=args.max_queue,
            max_alpha=args.max_alpha, top_k=args.top_k)
        rule = event_rule(args)
    except ValueError as exc:
        print(f"amygdala serve: error: {exc}", file=sys.stderr)
        return 2
    monitor = open_monitor(args, rule)
    print(f"amygdala serve: {config.model_name} on http://{config.host}:{config.port}/v1 "
          f"({len(monitor.concepts)} concepts; reading {monitor.describe()}; view "
          f"{monitor.view} by default; auth {'on' if key else 'off'})", flush=True)
    serve(monitor, config, log_level=args.log_level)
    return 0
