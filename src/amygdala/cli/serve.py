"""`amygdala serve RUN_DIR`: an OpenAI-compatible server with a per-token read-out."""

from __future__ import annotations

import argparse
import os
import sys

from amygdala.cli._common import add_device_options

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
    parser.add_argument("--layer", type=int, action="append", default=None,
                        help="read-out layer(s) (repeat; default: the run's best layer)")
    parser.add_argument("--concepts", default=None,
                        help="comma-separated concepts to report (default: all)")
    parser.add_argument("--window", type=float, default=4.0,
                        help="moving-average span in tokens (default 4)")
    parser.add_argument("--on", type=float, default=2.0, help="event enter threshold (z)")
    parser.add_argument("--off", type=float, default=1.0, help="event leave threshold (z)")
    parser.add_argument("--min-tokens", type=int, default=2,
                        help="tokens a condition must hold before an event (default 2)")
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
    parser.add_argument("--corpus", metavar="PATH", default=None,
                        help="corpus root for neutral statistics when the run's is not found")
    parser.add_argument("--log-level", default="warning",
                        choices=("critical", "error", "warning", "info", "debug"))


def run(args: argparse.Namespace) -> int:
    """Check the settings, load the run, and serve until interrupted."""
    from pathlib import Path

    from amygdala.intervene._events import EventRule
    from amygdala.intervene._monitor import Monitor
    from amygdala.intervene._steer import open_run
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
        rule = EventRule(on=args.on, off=args.off, min_tokens=args.min_tokens)
    except ValueError as exc:
        print(f"amygdala serve: error: {exc}", file=sys.stderr)
        return 2
    concepts = [c.strip() for c in args.concepts.split(",")] if args.concepts else None
    ctx = open_run(args.run_dir, device=args.device, dtype=args.dtype)
    monitor = Monitor(ctx, layers=args.layer, concepts=concepts, corpus=args.corpus,
                      window=args.window, rule=rule)
    print(f"amygdala serve: {config.model_name} on http://{config.host}:{config.port}/v1 "
          f"(layers {', '.join(map(str, monitor.layers))}; {len(monitor.concepts)} concepts; "
          f"auth {'on' if key else 'off'})", flush=True)
    serve(monitor, config, log_level=args.log_level)
    return 0
