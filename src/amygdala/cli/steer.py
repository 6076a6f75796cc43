"""`amygdala steer RUN_DIR --concept C --alpha A PROMPT`: compare plain and steered text."""

from __future__ import annotations

import argparse

from amygdala.cli._common import add_device_options

NAME = "steer"
HELP = "Generate a continuation with and without steering (vectors or circuit modulation)."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the steer options to ``parser``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory from `amygdala train`")
    add_device_options(parser)
    parser.add_argument("prompt", metavar="PROMPT", help="the prompt to continue")
    parser.add_argument("--concept", action="append", required=True,
                        help="concept to steer towards (repeat for several)")
    parser.add_argument("--alpha", action="append", type=float, default=None,
                        help="strength per --concept, in units of the layer's residual norm "
                        "(default: the alpha in RUN_DIR/steering.json written by `amygdala "
                        "eval-steer --sweep`, else 0.1; repeat in the order of --concept; "
                        "negative steers away)")
    parser.add_argument("--layer", type=int, action="append", default=None,
                        help="layer(s) to steer (default: RUN_DIR/steering.json, else the best "
                        "layer in evaluation.json, else the middle layer)")
    parser.add_argument("--positions", choices=("all", "prompt", "generated"), default="all",
                        help="where to add the vectors (default all)")
    parser.add_argument("--circuit-factor", type=float, default=None,
                        help="scale each concept's circuit (RUN_DIR/circuits/<c>.json) by this "
                        "factor instead of adding vectors")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--no-chat", action="store_true",
                        help="feed the prompt raw instead of through the chat template")


def run(args: argparse.Namespace) -> int:
    """Print the unsteered and the steered continuation."""
    import sys

    from amygdala.intervene._eval_steer import load_defaults
    from amygdala.intervene._steer import (
        circuit_ablations,
        default_layer,
        open_run,
        steered_generate,
    )

    chosen = load_defaults(args.run_dir)
    default_alpha = chosen.alpha if chosen is not None else 0.1
    alphas = args.alpha or [default_alpha] * len(args.concept)
    if len(alphas) == 1 and len(args.concept) > 1:
        alphas = alphas * len(args.concept)
    if len(alphas) != len(args.concept):
        print(f"amygdala steer: error: got {len(args.concept)} --concept but {len(alphas)} "
              "--alpha; give one alpha, or one per concept")
        return 2
    ctx = open_run(args.run_dir, device=args.device, dtype=args.dtype)
    if args.layer:
        layers, where = list(args.layer), "--layer"
    elif chosen is not None:
        layers, where = list(chosen.layers), "steering.json"
    else:
        layers, where = [default_layer(ctx.vectors, ctx.run_dir)], "evaluation.json or middle"
    if args.circuit_factor is None:
        alpha_from = ("--alpha" if args.alpha else
                      f"{default_alpha:g} from " + ("steering.json" if chosen else "the built-in "
                                                    "default; no steering.json"))
        print(f"steering at layer(s) {layers} ({where}), alpha {alpha_from}", file=sys.stderr)
    common = {"max_new_tokens": args.max_new_tokens, "chat": not args.no_chat}
    plain = steered_generate(ctx.backend, args.prompt, **common)
    if args.circuit_factor is not None:
        ablations = [a for c in args.concept
                     for a in circuit_ablations(ctx.run_dir, c, args.circuit_factor)]
        label = f"circuit x{args.circuit_factor:g}: {', '.join(args.concept)}"
        steered = steered_generate(ctx.backend, args.prompt, ablations=ablations, **common)
    else:
        mapping = dict(zip(args.concept, alphas, strict=True))
        label = (", ".join(f"{c} {a:+g}" for c, a in mapping.items())
                 + f" at layer {','.join(map(str, layers))} ({args.positions} positions)")
        steered = steered_generate(ctx.backend, args.prompt, vectors=ctx.vectors,
                                   alphas=mapping, layers=layers, positions=args.positions,
                                   **common)
    print(f"prompt:    {args.prompt}")
    print(f"unsteered: {plain.text.strip()}")
    print(f"steered ({label}):\n           {steered.text.strip()}")
    return 0
