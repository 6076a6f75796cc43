"""How far surface words alone tell a corpus's concepts apart (a lexical-leakage check).

If a bag-of-words classifier that never saw a scenario can still name which concept each
of its variants expresses, the concepts differ in vocabulary, and a direction found in a
model may be a direction for those words rather than for the state. ``amygdala lint
--leakage`` reports it, and ``amygdala evaluate`` uses it as the baseline a model's
directions should beat.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.errors import CorpusError

__all__ = ["LeakageResult", "bag_of_words_loso"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def _frozen(scores: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(sorted(scores.items())))


@attrs.frozen(kw_only=True)
class LeakageResult:
    """Leave-one-scenario-out accuracy of a bag-of-words classifier on the variants.

    Attributes:
        accuracy: the fraction of held-out variants whose concept was named correctly.
        chance: the expected accuracy of guessing, averaged over the same items.
        n_items: how many held-out variants were classified.
        per_concept: concept to the accuracy on its own variants.

    >>> LeakageResult(accuracy=0.5, chance=0.25, n_items=8, per_concept={}).summary()
    'bag-of-words leave-one-scenario-out accuracy 0.50 (chance 0.25, n=8)'
    """

    accuracy: float
    chance: float
    n_items: int
    per_concept: Mapping[str, float] = attrs.field(converter=_frozen)

    def summary(self) -> str:
        """Return the one-line summary printed by ``amygdala lint --leakage``."""
        return (f"bag-of-words leave-one-scenario-out accuracy {self.accuracy:.2f} "
                f"(chance {self.chance:.2f}, n={self.n_items})")


def bag_of_words_loso(corpus: Corpus) -> LeakageResult:
    """Classify each variant by its words alone, training on every other scenario.

    For each scenario in turn, a multinomial naive Bayes model (lowercase word counts,
    add-one smoothing over the fold's vocabulary, uniform prior) is trained on the
    variants of all other scenarios. Each held-out variant is then assigned the most
    likely concept among those its own scenario carries (a restricted argmax), so the
    task matches what a paired direction has to do. Candidate concepts with no training
    variants in the fold are dropped; an item whose own concept has none, or that is left
    with fewer than two candidates, is skipped. ``chance`` is the mean of
    ``1 / candidates`` over the classified items.

    Args:
        corpus: the corpus; only its paired variants are used.

    Returns:
        The accuracy, chance level, item count and per-concept accuracy.

    Raises:
        CorpusError: no variant could be classified (fewer than two scenarios sharing
            at least two concepts).

    >>> from amygdala.corpus._model import Scenario, Text
    >>> def scenario(slug, texts):
    ...     base = Text(id=f"paired/{slug}/baseline.txt", text="x", role="baseline",
    ...                 scenario=slug)
    ...     return Scenario(slug=slug, baseline=base, variants={
    ...         c: Text(id=f"paired/{slug}/{c}.txt", text=t, role="variant", concept=c,
    ...                 scenario=slug) for c, t in texts.items()})
    >>> corpus = Corpus(root=".", scenarios=[
    ...     scenario(f"s{i}", {"sad": "grey rain slow", "joyful": "bright sun skipping"})
    ...     for i in range(3)])
    >>> bag_of_words_loso(corpus).summary()
    'bag-of-words leave-one-scenario-out accuracy 1.00 (chance 0.50, n=6)'
    """
    items = [(s.slug, c, t.text) for s in corpus.scenarios for c, t in s.variants.items()]
    concepts = sorted({c for _, c, _ in items})
    concept_index = {c: i for i, c in enumerate(concepts)}
    docs = [_WORD.findall(text.lower().replace("\u2019", "'")) for _, _, text in items]
    vocab = {w: i for i, w in enumerate(sorted({w for doc in docs for w in doc}))}
    counts = np.zeros((len(items), len(vocab)), dtype=np.float64)
    for row, doc in enumerate(docs):
        np.add.at(counts[row], [vocab[w] for w in doc], 1.0)
    labels = np.array([concept_index[c] for _, c, _ in items], dtype=np.int64)
    slugs = np.array([slug for slug, _, _ in items])

    correct: dict[str, list[bool]] = {c: [] for c in concepts}
    chances: list[float] = []
    for slug in dict.fromkeys(slugs.tolist()):
        held = slugs == slug
        train = ~held
        if not train.any():
            continue
        # Per-concept word counts and variant counts over the training scenarios.
        onehot = np.zeros((len(concepts), int(train.sum())))
        onehot[labels[train], np.arange(int(train.sum()))] = 1.0
        class_counts = onehot @ counts[train]
        has_data = onehot.sum(axis=1) > 0
        seen = class_counts.sum(axis=0) > 0
        n_vocab = int(seen.sum())
        log_probs = np.log(class_counts[:, seen] + 1.0) - np.log(
            class_counts[:, seen].sum(axis=1, keepdims=True) + n_vocab
        )
        candidates = np.unique(labels[held])
        candidates = candidates[has_data[candidates]]
        for item in np.flatnonzero(held):
            truth = int(labels[item])
            if truth not in candidates or len(candidates) < 2:
                continue
            scores = log_probs[candidates] @ counts[item, seen]
            guess = int(candidates[int(np.argmax(scores))])
            correct[concepts[truth]].append(guess == truth)
            chances.append(1.0 / len(candidates))
    n_items = len(chances)
    if n_items == 0:
        raise CorpusError(
            "the leakage check classified no variants; expected at least two scenarios that "
            "share two or more concepts. Fix: add scenarios, or skip --leakage."
        )
    hits = [ok for oks in correct.values() for ok in oks]
    return LeakageResult(
        accuracy=float(np.mean(hits)),
        chance=float(np.mean(chances)),
        n_items=n_items,
        per_concept={c: float(np.mean(oks)) for c, oks in correct.items() if oks},
    )
