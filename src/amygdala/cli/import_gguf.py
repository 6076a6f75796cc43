"""`amygdala import-gguf FILE --out RUN_DIR`: a llama.cpp control vector as a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "import-gguf"
HELP = ("read a llama.cpp control vector (amygdala, repeng or llama.cpp GGUF) into a run "
        "directory that `amygdala steer` and `read` accept")


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments."""
    from amygdala.backends._loading import DEFAULT_MODEL
    from amygdala.backends._registry import BACKENDS

    parser.add_argument("file", type=Path, help="the control vector (.gguf)")
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument("--concept", default=None,
                        help="concept name (default: the file's, else its file name)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"the model it steers, recorded in run.json (default {DEFAULT_MODEL})")
    parser.add_argument("--backend", default="torch", choices=sorted(BACKENDS),
                        help="backend recorded in run.json (default torch)")


def run(args: argparse.Namespace) -> int:
    """Import, save, describe."""
    from amygdala.vectors import RunDir, import_gguf

    run = RunDir(args.out)
    vectors = import_gguf(args.file, concept=args.concept)
    vectors.save(run.root)
    record = {"config": {"model": args.model, "backend": args.backend,
                         "method": vectors.method, "normalisation": vectors.normalisation,
                         "layers": list(vectors.layers)},
              "imported_from": str(args.file.resolve()), "provenance": dict(vectors.provenance)}
    run.write_record(record)
    unit = vectors.provenance.get("strength_unit")
    print(f"{args.file}: concept {vectors.concepts[0]!r}, layers {list(vectors.layers)} "
          f"(direction.L = output of 0-based block L), width {vectors.directions.shape[2]}, "
          f"model hint {vectors.provenance.get('model_hint')!r}; strength unit: {unit}")
    print(f"wrote {run.vectors_arrays} and {run.run_json}")
    return 0
