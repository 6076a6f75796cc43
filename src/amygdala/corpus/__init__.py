"""Stage 1, the corpus: paired scenarios, unpaired stories and neutral texts; lint and leakage."""

from amygdala.corpus._leakage import LeakageResult, bag_of_words_loso
from amygdala.corpus._lexicon import BANNED_WORDS, EMOTION_WORDS, Lexicon, load_lexicon
from amygdala.corpus._lint import Finding, LintReport, lint_path
from amygdala.corpus._model import (
    CANONICAL_COGNITIVE,
    CANONICAL_CONCEPTS,
    CANONICAL_EMOTIONS,
    Corpus,
    Scenario,
    Text,
)

__all__ = [
    "BANNED_WORDS",
    "CANONICAL_COGNITIVE",
    "CANONICAL_CONCEPTS",
    "CANONICAL_EMOTIONS",
    "EMOTION_WORDS",
    "Corpus",
    "Finding",
    "LeakageResult",
    "Lexicon",
    "LintReport",
    "Scenario",
    "Text",
    "bag_of_words_loso",
    "lint_path",
    "load_lexicon",
]
