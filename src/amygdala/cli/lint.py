"""`amygdala lint PATH`: check a corpus against the style rules before training on it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from amygdala.errors import CorpusError

NAME = "lint"
HELP = "Check a corpus (paired scenarios, stories, neutral texts) against the style rules."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the lint options to ``parser``."""
    parser.add_argument("path", metavar="PATH",
                        help="a corpus root (holding paired/) or a paired directory")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the human report")
    parser.add_argument("--lexicon", metavar="FILE",
                        help="JSON {concept: [words...]} of extra banned words")
    parser.add_argument("--leakage", action="store_true",
                        help="also report how well a bag-of-words classifier names each "
                        "held-out scenario's concepts")
    parser.add_argument("--strict", action="store_true",
                        help="count warnings as errors for the exit status")


def run(args: argparse.Namespace) -> int:
    """Lint ``args.path``; return 1 when there are errors (or warnings with --strict)."""
    from amygdala.corpus._leakage import bag_of_words_loso
    from amygdala.corpus._lexicon import load_lexicon
    from amygdala.corpus._lint import lint_path
    from amygdala.corpus._model import Corpus

    lexicon = load_lexicon(args.lexicon) if args.lexicon else None
    report = lint_path(args.path, lexicon)
    leakage: dict[str, Any] | None = None
    leakage_line = ""
    if args.leakage:
        try:
            result = bag_of_words_loso(Corpus.load(args.path))
        except CorpusError as exc:
            leakage = {"skipped": str(exc)}
            leakage_line = f"leakage: skipped ({exc})"
        else:
            leakage = {"accuracy": result.accuracy, "chance": result.chance,
                       "n_items": result.n_items, "per_concept": dict(result.per_concept)}
            leakage_line = result.summary()
    failed = bool(report.errors) or (args.strict and bool(report.warnings))
    if args.json:
        payload = report.to_json()
        if args.leakage:
            payload["leakage"] = leakage
        payload["strict"] = bool(args.strict)
        payload["exit_status"] = int(failed)
        print(json.dumps(payload, indent=2))
    else:
        print(report.render())
        if leakage_line:
            print(leakage_line)
    return int(failed)
