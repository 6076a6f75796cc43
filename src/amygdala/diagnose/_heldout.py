"""Transfer to an independently written corpus: fit on one corpus, read another.

The nested evaluation holds scenarios out, but every held-out scenario was still written
by the same people, to the same brief, as the training ones. A user's text is not. This
measure fits a method on the whole training corpus, chooses its layer by inner
cross-validation over the training scenarios only (`select_layers`, the same rule as the
recommended layer), and then scores a second corpus that never influenced anything:

- ``paired``: each test variant minus its own baseline, classified among its scenario's
  concepts (the classic paired task);
- ``readout``: each test variant read alone, z-scored against the TRAINING corpus's neutral
  texts, classified among all fitted concepts (the baseline-free read-out a user gets);
- ``stories``: the test corpus's unpaired stories read alone the same way.

Intervals resample test scenarios (stories: each story its own group). A bag-of-words
classifier trained on the training corpus's variants and tested on the same items gives
the vocabulary-only baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from amygdala._codec import from_data, to_data
from amygdala.corpus._model import Corpus
from amygdala.diagnose._bow import BagOfWords, variant_texts
from amygdala.diagnose._folds import make_fitter
from amygdala.diagnose._intervals import Accuracy, accuracy_with_interval
from amygdala.diagnose._nested import TASKS, Items, readout_guesses, select_layers
from amygdala.errors import CorpusError, DimensionMismatchError
from amygdala.vectors._extract import ExtractionInput, Normalisation

__all__ = ["HeldoutTransfer", "heldout_transfer"]


@attrs.frozen(kw_only=True)
class HeldoutTransfer:
    """One method fitted on a training corpus and scored on an independent one.

    Attributes:
        method: the extraction method.
        layers: model layer chosen (on the training corpus only) per task.
        paired: variant minus baseline among the scenario's concepts.
        readout: variants read alone among all fitted concepts.
        stories: the test corpus's stories read alone (None without stories).
        bag_of_words: the same tasks by a bag of words trained on the training variants.
    """

    method: str
    layers: dict[str, int]
    paired: Accuracy
    readout: Accuracy
    stories: Accuracy | None
    bag_of_words: dict[str, Accuracy]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeldoutTransfer:
        """Inverse of `to_json`."""
        return from_data(cls, data)

    def render(self) -> str:
        """One line per task: method accuracy with interval, bag of words, chance."""
        rows = [("paired", self.paired), ("readout", self.readout)]
        if self.stories is not None:
            rows.append(("stories", self.stories))
        out = []
        for task, acc in rows:
            layer = self.layers.get("stories" if task == "stories" else task)
            bow = self.bag_of_words.get(task)
            extra = f"; bag-of-words {bow.text()}" if bow is not None else ""
            out.append(f"  {self.method:<15} {task:<8} layer {layer:>2}: {acc.text()}{extra}")
        return "\n".join(out)


def _check_concepts(train: Corpus, test: Corpus) -> tuple[str, ...]:
    concepts = train.concepts
    missing = sorted(set(test.concepts) - set(concepts))
    if missing:
        raise CorpusError(
            f"the test corpus has concepts the training corpus lacks: {', '.join(missing)}; "
            f"expected a subset of {', '.join(concepts)}. Fix: remove or rename those files."
        )
    return concepts


def _bow(train: Corpus, test: Corpus, test_items: Items, concepts: Sequence[str],
         seed: int) -> dict[str, Accuracy]:
    index = {c: i for i, c in enumerate(concepts)}
    train_docs, test_docs = variant_texts(train), variant_texts(test)
    labels = np.asarray([index[c] for s in train.scenarios for c in s.concepts], np.int64)
    story_docs = [t.text for t in test.stories if t.concept in index]
    a, b = BagOfWords.pair(train_docs, [*test_docs, *story_docs])
    everything = np.ones(len(train_docs), bool)
    n_test = len(test_docs)
    truth = test_items.truth
    out: dict[str, Accuracy] = {}
    guess = a.guess(everything, labels, len(concepts), np.arange(n_test),
                    test_items.candidates, other=b, truth=truth)
    k = test_items.candidates.sum(axis=1)
    out["paired"] = accuracy_with_interval(
        guess[guess >= 0] == truth[guess >= 0], test_items.scenario[guess >= 0],
        chance=float(np.mean(1.0 / k)), seed=seed)
    allowed = np.ones((n_test, len(concepts)), bool)
    guess = a.guess(everything, labels, len(concepts), np.arange(n_test), allowed, other=b,
                    truth=truth)
    out["readout"] = accuracy_with_interval(guess == truth, test_items.scenario,
                                            chance=1.0 / len(concepts), seed=seed)
    if story_docs:
        story_truth = np.asarray([index[str(t.concept)] for t in test.stories
                                  if t.concept in index], np.int64)
        idx = np.arange(n_test, n_test + len(story_docs))
        guess = a.guess(everything, labels, len(concepts), idx,
                        np.ones((len(idx), len(concepts)), bool), other=b, truth=story_truth)
        out["stories"] = accuracy_with_interval(guess == story_truth,
                                                np.arange(len(idx)),
                                                chance=1.0 / len(concepts), seed=seed)
    return out


def heldout_transfer(
    train_data: ExtractionInput, train: Corpus, test_data: ExtractionInput, test: Corpus,
    method: str, *, normalisation: Normalisation = "standardise", folds: int = 5,
    seed: int = 0,
) -> HeldoutTransfer:
    """Fit ``method`` on ``train``, choose its layers there, and score ``test``.

    Args:
        train_data: activations of every training-corpus text.
        train: the training corpus (needs neutral texts for the read-out's z-scores).
        test_data: activations of every test-corpus text, at the same layers.
        test: the independent corpus (paired scenarios; stories optional).
        method: an extraction method.
        normalisation: as in `extract`.
        folds: scenario groups of the inner layer selection on ``train``.
        seed: seeds the grouping and the bootstrap.

    Returns:
        A `HeldoutTransfer`.

    Raises:
        CorpusError: the training corpus has no neutral texts, or the test corpus has
            concepts the training corpus lacks.
        DimensionMismatchError: the two activation sets have different layers.
    """
    if train_data.layers != test_data.layers:
        raise DimensionMismatchError(
            f"training activations have layers {train_data.layers} but test activations "
            f"{test_data.layers}; expected the same layers. Fix: capture both at the same "
            "layers."
        )
    if not train.neutral:
        raise CorpusError("the held-out read-out z-scores against the training corpus's "
                          "neutral texts, and it has none; expected neutral/*.txt next to "
                          "paired/. Fix: add neutral texts.")
    concepts = _check_concepts(train, test)
    train_items = Items(train_data, train, concepts)
    test_items = Items(test_data, test, concepts)
    fitter = make_fitter(train_data, train, method, normalisation=normalisation,
                         concepts=concepts)
    everything = np.ones(len(train.scenarios), bool)
    chosen, _ = select_layers(fitter, train_items, everything, folds, seed)
    fit = fitter(everything)
    reference = train_items.reference(everything)
    # paired task: the test items' own baselines; the read-out uses the training neutral.
    guesses = test_items.predict(fit, np.arange(len(test_items.truth)),
                                 np.ones(test_items.n_scenarios, bool))
    li_paired, li_read = int(chosen[TASKS.index("paired")]), int(chosen[TASKS.index("readout")])
    paired_guess = guesses[0, :, li_paired]
    ok = paired_guess >= 0
    k = (test_items.candidates & fit.fitted[None]).sum(axis=1)
    paired = accuracy_with_interval(paired_guess[ok] == test_items.truth[ok],
                                    test_items.scenario[ok], chance=float(np.mean(1.0 / k[ok])),
                                    seed=seed)
    read_guess = readout_guesses(fit, test_items.variant, reference)[:, li_read]
    n_fitted = max(int(fit.fitted.sum()), 1)
    readout = accuracy_with_interval(read_guess == test_items.truth, test_items.scenario,
                                     chance=1.0 / n_fitted, seed=seed)
    stories: Accuracy | None = None
    index = {c: i for i, c in enumerate(concepts)}
    kept = [t for t in test.stories if t.concept in index]
    if kept:
        x = np.ascontiguousarray(np.transpose(test_data.rows([t.id for t in kept]), (1, 0, 2)))
        truth = np.asarray([index[str(t.concept)] for t in kept], np.int64)
        story_guess = readout_guesses(fit, x, reference)[:, li_read]
        stories = accuracy_with_interval(story_guess == truth, np.arange(len(kept)),
                                         chance=1.0 / n_fitted, seed=seed)
    layers = {"paired": train_data.layers[li_paired], "readout": train_data.layers[li_read],
              "stories": train_data.layers[li_read]}
    return HeldoutTransfer(method=method, layers=layers, paired=paired, readout=readout,
                           stories=stories,
                           bag_of_words=_bow(train, test, test_items, concepts, seed))
