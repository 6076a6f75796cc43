"""`amygdala info`: load a model and show what amygdala knows about it."""

from __future__ import annotations

import argparse

from amygdala.cli._common import add_device_options

NAME = "info"
HELP = "Load a model and print its id, fingerprint, sizes, paths and a capture check."

# Three short, ordinary sentences: enough to see that capture runs and that the
# residual norms grow with depth as expected, in a couple of seconds on a CPU.
SENTENCES = (
    "The kettle clicked off and she poured the water slowly into the blue mug.",
    "He read the letter twice, then folded it along the old creases.",
    "The build finished at noon.",
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the info options to ``parser``."""
    from amygdala.backends._loading import DEFAULT_MODEL
    from amygdala.backends._registry import BACKENDS

    parser.add_argument("--model", metavar="M", default=DEFAULT_MODEL,
                        help=f"model to load: {DEFAULT_MODEL!r} (default), a Hugging Face "
                        "id in the local cache, or a local directory")
    parser.add_argument("--backend", default="torch", choices=sorted(BACKENDS),
                        help="backend used for the capture check (default: torch; "
                        "`amygdala backends` lists them)")
    add_device_options(parser)


def run(args: argparse.Namespace) -> int:
    """Load ``args.model``, print its description and a one-line capture summary."""
    from amygdala._types import Pooling, Site
    from amygdala.backends._loading import cache_dir, load_model
    from amygdala.backends._registry import get_backend

    loaded = load_model(args.model, device=args.device, dtype=args.dtype or "float32")
    dims = loaded.dims
    rows = [
        ("model", loaded.model_id),
        ("architecture", type(loaded.model).__name__),
        ("fingerprint", loaded.fingerprint),
        ("dims", f"{dims.n_layers} layers, d_model {dims.d_model}, d_mlp {dims.d_mlp}, "
                 f"{dims.n_heads} heads x d_head {dims.d_head}"),
        ("source", loaded.source),
        ("cache dir", str(cache_dir())),
    ]
    for key, value in rows:
        print(f"{key:<13}{value}")

    backend = get_backend(args.backend, loaded)
    sites = [Site(layer=layer) for layer in range(dims.n_layers)]
    pooling = Pooling()
    captured = backend.capture(list(SENTENCES), sites, pooling)
    norms = " ".join(f"{float(captured[s].norm(dim=1).mean()):.3g}" for s in sites)
    print(f"{'capture':<13}{backend.name} backend, {len(SENTENCES)} sentences, "
          f"resid_post pooled {pooling.key}")
    print(f"{'mean |resid|':<13}layers 0..{dims.n_layers - 1}: {norms}")
    return 0
