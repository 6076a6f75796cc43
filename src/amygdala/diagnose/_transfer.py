"""Cross-format transfer: directions fitted on one kind of text read the other, without baselines.

- ``paired_to_stories``: the method fitted on every paired scenario (stories withheld)
  reads each story alone (z-scored against neutral text) and names its concept among all
  fitted concepts. The layer is the one the inner selection picks on the paired corpus for
  the baseline-free read-out, so the stories never influence it.
- ``stories_to_paired``: the method fitted on the stories alone (methods that can: e.g.
  ``unpaired``) reads every paired variant alone. The layer is chosen by cross-validation
  over the stories.

Intervals resample stories (each story its own group) and scenarios respectively.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from amygdala._codec import from_data, from_fields, register, spec, to_data, to_fields
from amygdala.corpus._model import Corpus
from amygdala.diagnose._folds import PAIRED_ONLY, FoldFit, make_fitter, method_readers
from amygdala.diagnose._intervals import Accuracy, accuracy_with_interval
from amygdala.diagnose._nested import Items, groups_of, readout_guesses, select_layers
from amygdala.errors import CorpusError
from amygdala.vectors._extract import ExtractionInput, Normalisation, extract

__all__ = ["Transfer", "paired_to_stories", "stories_to_paired"]


@attrs.frozen(kw_only=True)
class Transfer:
    """One direction of cross-format transfer for one method.

    Attributes:
        accuracy: at the chosen layer, with its interval.
        layer: the chosen layer (a model layer, not an index).
        per_layer: accuracy at every layer (a diagnostic: chosen on the reported texts).
        skipped: items whose concept the source format lacks.
    """

    accuracy: Accuracy
    layer: int
    per_layer: tuple[float, ...] = attrs.field(metadata=spec(key="per_layer_diagnostic",
                                                             round=4))
    skipped: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the accuracy's keys at the top level)."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transfer:
        """Inverse of `to_json`."""
        return from_data(cls, data)


def _transfer_data(transfer: Transfer) -> dict[str, Any]:
    data = to_fields(transfer)
    return {**data.pop("accuracy"), **data}


# The accuracy's keys sit at the top level of a transfer: a custom format, used wherever a
# Transfer is nested (an evaluation's results).
register(Transfer, encode=_transfer_data,
         decode=lambda data: from_fields(Transfer, {**data, "accuracy": data}))


def _stories(corpus: Corpus, concepts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    index = {c: i for i, c in enumerate(concepts)}
    kept = [t for t in corpus.stories if t.concept in index]
    return [t.id for t in kept], np.asarray([index[str(t.concept)] for t in kept], np.int64)


def _stack(data: ExtractionInput, ids: Sequence[str]) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(data.rows(list(ids)), (1, 0, 2)))


def _score(guesses: np.ndarray, truth: np.ndarray, groups: np.ndarray, chance: float,
           layer_index: int, seed: int) -> tuple[Accuracy, tuple[float, ...]]:
    ok = guesses[:, 0] >= 0
    correct = guesses[ok] == truth[ok, None]
    per_layer = tuple(float(x) for x in correct.mean(axis=0)) if ok.any() else ()
    acc = accuracy_with_interval(correct[:, layer_index], groups[ok], chance=chance, seed=seed)
    return acc, per_layer


def paired_to_stories(data: ExtractionInput, corpus: Corpus, method: str, *,
                      normalisation: Normalisation, items: Items, folds: int = 5,
                      seed: int = 0, layer_index: int | None = None) -> Transfer | None:
    """Fit on all scenarios without stories, read the stories (None when there are none).

    Raises:
        CorpusError: the method needs stories to fit (it cannot be fitted on paired text).
    """
    if not corpus.stories or not corpus.scenarios:
        return None
    paired_only = attrs.evolve(corpus, stories=())
    fitter = make_fitter(data, paired_only, method, normalisation=normalisation,
                         concepts=items.concepts)
    everything = np.ones(len(corpus.scenarios), bool)
    if layer_index is None:
        layer_index = int(select_layers(fitter, items, everything, folds, seed)[0][1])
    fit = fitter(everything)
    ids, truth = _stories(corpus, items.concepts)
    keep = fit.fitted[truth]
    ids = [i for i, k in zip(ids, keep, strict=True) if k]
    truth = truth[keep]
    guesses = readout_guesses(fit, _stack(data, ids), items.reference(everything))
    chance = 1.0 / max(int(fit.fitted.sum()), 1)
    acc, per_layer = _score(guesses, truth, np.arange(len(ids)), chance, layer_index, seed)
    return Transfer(accuracy=acc, layer=data.layers[layer_index], per_layer=per_layer,
                    skipped=len(corpus.stories) - len(ids))


def _story_fitter(data: ExtractionInput, corpus: Corpus, method: str,
                  normalisation: Normalisation, concepts: Sequence[str]) -> Any:
    def fit(keep: np.ndarray) -> FoldFit:
        sub = attrs.evolve(corpus, scenarios=(),
                           stories=[t for t, k in zip(corpus.stories, keep, strict=True) if k])
        raw = extract(data, sub, method=method, normalisation=normalisation)  # type: ignore[arg-type]
        readers, offsets = method_readers(raw)
        full_r = np.zeros((len(concepts), *data.x.shape[1:]))
        full_o = np.zeros((len(concepts), len(data.layers)))
        fitted = np.zeros(len(concepts), bool)
        for j, name in enumerate(raw.concepts):
            if name in concepts:
                i = list(concepts).index(name)
                full_r[i], full_o[i], fitted[i] = readers[j], offsets[j], True
        return FoldFit(readers=full_r, offsets=full_o, fitted=fitted)

    return fit


def stories_to_paired(data: ExtractionInput, corpus: Corpus, method: str, *,
                      normalisation: Normalisation, items: Items, folds: int = 5,
                      seed: int = 0, layer_index: int | None = None) -> Transfer | None:
    """Fit on the stories alone, read the paired variants (None when the method cannot).

    Methods built from paired differences (``paired``, ``paired_centred``, ``pca``,
    ``probe``) cannot be fitted on stories; neither can any method whose `extract` raises
    `CorpusError` on a corpus without scenarios.
    """
    if method in PAIRED_ONLY or not corpus.stories or not corpus.scenarios:
        return None
    fitter = _story_fitter(data, corpus, method, normalisation, items.concepts)
    story_concepts = np.asarray([items.concepts.index(str(t.concept))
                                 if t.concept in items.concepts else -1
                                 for t in corpus.stories])
    everything = np.ones(len(corpus.stories), bool)
    reference = items.reference(np.ones(items.n_scenarios, bool))
    try:
        fit = fitter(everything)
    except CorpusError:
        return None
    if layer_index is None:
        groups = groups_of(len(corpus.stories), folds, seed)
        correct = np.zeros(len(data.layers))
        valid = 0
        for g in range(int(groups.max()) + 1):
            inner = fitter(groups != g)
            held = np.flatnonzero((groups == g) & (story_concepts >= 0))
            held = held[inner.fitted[story_concepts[held]]]
            x = _stack(data, [corpus.stories[i].id for i in held])
            guesses = readout_guesses(inner, x, reference)
            correct += (guesses == story_concepts[held, None]).sum(axis=0)
            valid += len(held)
        layer_index = int(np.argmax(correct / max(valid, 1)))
    ok = fit.fitted[items.truth]
    idx = np.flatnonzero(ok)
    guesses = readout_guesses(fit, items.variant[:, idx], reference)
    chance = 1.0 / max(int(fit.fitted.sum()), 1)
    acc, per_layer = _score(guesses, items.truth[idx], items.scenario[idx], chance,
                            layer_index, seed)
    return Transfer(accuracy=acc, layer=data.layers[layer_index], per_layer=per_layer,
                    skipped=int((~ok).sum()))
