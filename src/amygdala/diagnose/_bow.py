"""Bag-of-words baselines on exactly the folds and candidate sets the directions get.

A multinomial naive Bayes over lowercase word counts (add-one smoothing over the training
vocabulary, uniform prior), as in `amygdala.corpus.bag_of_words_loso`, but returning one
guess per item so that its accuracy gets the same bootstrap interval and the same task
definitions (among the scenario's concepts, or among all concepts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from amygdala.corpus._model import Corpus

__all__ = ["BagOfWords", "variant_texts"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def variant_texts(corpus: Corpus) -> list[str]:
    """The variants' texts in `Items` order (scenario by slug, concepts sorted)."""
    return [s.variants[c].text for s in corpus.scenarios for c in s.concepts]


class BagOfWords:
    """Word counts of a fixed set of documents; fits and scores any split of them."""

    def __init__(self, docs: Sequence[str]) -> None:
        words = [_WORD.findall(d.lower().replace("\u2019", "'")) for d in docs]
        vocab = {w: i for i, w in enumerate(sorted({w for doc in words for w in doc}))}
        self.counts = np.zeros((len(docs), len(vocab)))
        for row, doc in enumerate(words):
            np.add.at(self.counts[row], [vocab[w] for w in doc], 1.0)

    def log_probs(self, train: np.ndarray, labels: np.ndarray,
                  n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per class log word probabilities over the training vocabulary.

        Returns:
            ``(log_probs [classes, seen words], seen word mask, class has data)``.
        """
        rows = np.flatnonzero(train)
        onehot = np.zeros((n_classes, len(rows)))
        onehot[labels[rows], np.arange(len(rows))] = 1.0
        class_counts = onehot @ self.counts[rows]
        seen = class_counts.sum(axis=0) > 0
        lp = np.log(class_counts[:, seen] + 1.0) - np.log(
            class_counts[:, seen].sum(axis=1, keepdims=True) + int(seen.sum()))
        return lp, seen, onehot.sum(axis=1) > 0

    def guess(self, train: np.ndarray, labels: np.ndarray, n_classes: int,
              test: np.ndarray, allowed: np.ndarray, other: BagOfWords | None = None,
              truth: np.ndarray | None = None) -> np.ndarray:
        """Guess the class of the ``test`` documents among ``allowed`` classes.

        Args:
            train: boolean mask of training documents (of this set).
            labels: class index of every document of this set.
            n_classes: number of classes.
            test: indices of the documents to classify (of ``other`` when given).
            allowed: ``[len(test), classes]`` candidate mask.
            other: the set the test documents come from (default: this one); it must share
                the vocabulary of ``self`` (see `with_vocabulary`).
            truth: true class of the test documents; an item whose class has no training
                data, or with fewer than two candidates, gets -1.

        Returns:
            ``[len(test)]`` guesses, -1 where not scored.
        """
        lp, seen, has = self.log_probs(train, labels, n_classes)
        source = other if other is not None else self
        scores = source.counts[test][:, seen] @ lp.T
        allowed = allowed & has[None]
        scores = np.where(allowed, scores, -np.inf)
        out = scores.argmax(axis=1)
        bad = allowed.sum(axis=1) < 2
        if truth is not None:
            bad |= ~has[truth]
        out[bad] = -1
        return out  # type: ignore[no-any-return]

    @staticmethod
    def pair(a: Sequence[str], b: Sequence[str]) -> tuple[BagOfWords, BagOfWords]:
        """Two document sets counted over one shared vocabulary."""
        both = BagOfWords([*a, *b])
        first, second = BagOfWords.__new__(BagOfWords), BagOfWords.__new__(BagOfWords)
        first.counts, second.counts = both.counts[:len(a)], both.counts[len(a):]
        return first, second
