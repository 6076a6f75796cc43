"""Extraction methods: from pooled activations to one direction per concept and layer.

All methods work on ``X[n_texts, layers, d_model]`` and are vectorised across
layers. A method may work in a *standardised* space (each dimension divided by
its spread over reference texts) because a few "massive activation"
dimensions otherwise dominate every mean and cosine. Each method yields, in raw
residual space:

- unit *writing* directions: adding ``alpha * direction`` to the residual stream
  moves the standardised representation along the method's direction;
- *readers* and *offsets*: ``readers[c, l] @ h + offsets[c, l]`` is the method's own
  score of a pooled activation ``h`` (``unit(v) . (h - mean) / std`` with ``v`` the
  method's reading vector in its space), so the argmax over concepts is the method's.

Methods (the estimators live in `amygdala.vectors._methods`):

- ``paired``: mean over scenarios of (variant - baseline) (Wang et al. 2025).
- ``paired_centred``: each scenario's variants centred on their own mean, averaged
  over scenarios, then the mean over ALL the corpus's paired concepts removed
  (whatever subset is requested).
- ``unpaired``: story mean minus the mean over all concepts, with the top
  principal components of neutral text projected out (Anthropic 2026).
- ``combined``: the seed's trainer: a concept's paired variants and stories against
  the other concepts' texts (one-vs-rest mean difference), neutral PCs projected out.
- ``pca``: first right-singular vector of the paired differences, sign-aligned
  with their mean.
- ``probe``: one-vs-rest on the paired differences; writes with the mean difference,
  reads with the shrinkage-LDA weight.
- ``subspace``: the seed's contrastive spectrum: top eigenvector of ``M_pos - M_base``
  (second moments of a concept's texts and of their base texts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.errors import CorpusError, DegenerateDirectionError, NonFiniteError
from amygdala.vectors import _methods
from amygdala.vectors._methods import (
    MAX_NEUTRAL_PCS,
    NEUTRAL_VARIANCE_REMOVED,
    PROBE_SHRINKAGE,
    Views,
    readers_and_offsets,
)

__all__ = [
    "MAX_NEUTRAL_PCS",
    "METHODS",
    "NEUTRAL_VARIANCE_REMOVED",
    "NORMALISATIONS",
    "PROBE_SHRINKAGE",
    "ExtractionInput",
    "Method",
    "Normalisation",
    "RawDirections",
    "extract",
    "paired_differences",
    "readers_and_offsets",
    "views",
]

Method = Literal["paired", "paired_centred", "unpaired", "combined", "pca", "probe",
                 "subspace"]
Normalisation = Literal["raw", "standardise"]
METHODS: tuple[Method, ...] = get_args(Method)
NORMALISATIONS: tuple[Normalisation, ...] = get_args(Normalisation)

# Methods that need stories (the rest need paired scenarios).
_STORY_METHODS = frozenset({"unpaired"})
_ANY_METHODS = frozenset({"combined", "subspace"})


@attrs.frozen(kw_only=True)
class ExtractionInput:
    """Activations of a corpus at several layers, indexed by text id.

    Attributes:
        x: ``[n_texts, layers, d_model]`` pooled activations (float32).
        ids: text id per row.
        layers: the model layer of each second-axis slice.
    """

    x: np.ndarray
    ids: tuple[str, ...]
    layers: tuple[int, ...]
    _row: dict[str, int] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.x.ndim != 3 or self.x.shape[:2] != (len(self.ids), len(self.layers)):
            raise ValueError(
                f"x must be [n_texts={len(self.ids)}, layers={len(self.layers)}, d], "
                f"got {self.x.shape}"
            )
        if not np.isfinite(self.x).all():
            raise NonFiniteError("activations contain NaN or inf; recapture them")
        object.__setattr__(self, "_row", {id_: i for i, id_ in enumerate(self.ids)})

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Stack the rows of ``ids``: ``[len(ids), layers, d]``."""
        return self.x[[self._row[i] for i in ids]]

    def select_layers(self, layers: Sequence[int]) -> ExtractionInput:
        """Keep only ``layers``."""
        pick = [self.layers.index(layer) for layer in layers]
        return ExtractionInput(x=self.x[:, pick], ids=self.ids, layers=tuple(layers))


@attrs.frozen(kw_only=True)
class RawDirections:
    """What a method produced for every concept, before packaging.

    Attributes:
        concepts: concept names, in order.
        directions: ``[concepts, layers, d]`` unit writing directions in raw space.
        raw_norm: ``[concepts, layers]`` norm of the raw-space mean difference.
        counts: number of scenarios (paired) or stories (unpaired) per concept.
        mean: ``[layers, d]`` reference mean the method centred with.
        std: ``[layers, d]`` per-dimension spread it divided by (ones for ``raw``).
        readers: ``[concepts, layers, d]`` raw-space reading weights and
        offsets: ``[concepts, layers]``: ``readers[c, l] @ h + offsets[c, l]`` is the
            method's score of a pooled activation ``h`` (not renormalised per concept).
    """

    concepts: tuple[str, ...]
    directions: np.ndarray
    raw_norm: np.ndarray
    counts: Mapping[str, int]
    mean: np.ndarray
    std: np.ndarray
    readers: np.ndarray
    offsets: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)  # type: ignore[no-any-return]


def reference_ids(corpus: Corpus) -> list[str]:
    """Texts whose statistics define "typical": neutral texts, else baselines."""
    if corpus.neutral:
        return [t.id for t in corpus.neutral]
    return [s.baseline.id for s in corpus.scenarios]


def reference_stats(data: ExtractionInput, corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer, per-dimension mean and spread ``[layers, d]`` over reference texts."""
    ref = data.rows(reference_ids(corpus))
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    # Floor: a dimension that never moves in reference text must not blow up.
    std = np.maximum(std, 1e-3 * std.mean(axis=-1, keepdims=True) + 1e-8)
    return mean, std


def views(data: ExtractionInput, corpus: Corpus, mean: np.ndarray,
          std: np.ndarray) -> Views:
    """Every text of ``data`` in method space, ``(x - mean) / std``, for the estimators."""
    return Views(x=(data.x - mean[None]) / std[None], row=dict(data._row), corpus=corpus,
                 reference=tuple(reference_ids(corpus)))


def paired_differences(data: ExtractionInput, corpus: Corpus, concept: str) -> np.ndarray:
    """``[scenarios, layers, d]`` of (variant - baseline) for scenarios carrying ``concept``."""
    scenarios = corpus.scenarios_with(concept)
    variants = data.rows([s.variants[concept].id for s in scenarios])
    baselines = data.rows([s.baseline.id for s in scenarios])
    return variants - baselines  # type: ignore[no-any-return]


def extract(
    data: ExtractionInput, corpus: Corpus, *, method: Method = "paired",
    normalisation: Normalisation = "standardise", concepts: Sequence[str] | None = None,
    shrinkage: float = PROBE_SHRINKAGE,
) -> RawDirections:
    """Compute one unit direction per concept and layer.

    Args:
        data: activations of every corpus text at the layers wanted.
        corpus: the corpus the activations come from.
        method: one of `METHODS`.
        normalisation: ``raw`` or ``standardise`` (divide each dimension by its
            spread over neutral texts, or baselines when there are none).
        concepts: which concepts (default: all the method can see).
        shrinkage: the ``probe``'s covariance shrinkage in (0, 1) (other methods ignore it).

    Returns:
        `RawDirections` with raw-space writing directions, readers and offsets.

    Raises:
        CorpusError: the corpus lacks what the method needs (stories for
            ``unpaired``, a concept in no scenario...).
        DegenerateDirectionError: the method cannot give a finite non-zero direction
            (one concept where it needs a contrast, a zero mean difference...).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; expected one of "
                         f"{', '.join(NORMALISATIONS)}")
    if not 0.0 < shrinkage < 1.0:
        raise ValueError(f"shrinkage must be in (0, 1), got {shrinkage}")
    available = _available(corpus, method)
    chosen = list(concepts) if concepts is not None else available
    missing = [c for c in chosen if c not in available]
    if missing:
        raise CorpusError(f"method {method!r} has no data for {missing}; available: {available}")
    if not chosen:
        raise CorpusError(f"no concepts requested for method {method!r}; available: {available}")
    mean, std = reference_stats(data, corpus)
    if normalisation == "raw":
        std = np.ones_like(std)
    v = views(data, corpus, mean, std)
    write = read = _estimate(v, method, chosen, neutral=bool(corpus.neutral))
    if method == "probe":
        write, read = _methods.probe(v, chosen, shrinkage=shrinkage)
    for name, array in (("writing", write), ("reading", read)):
        _check_usable(array, method, name, chosen, data.layers)
    # Back to raw space: a step u in standardised space is u * std in raw space.
    directions = _unit(_unit(write) * std[None])
    readers, offsets = readers_and_offsets(read, mean, std)
    raw_norm, counts = _raw_norms(data, corpus, chosen, method)
    return RawDirections(concepts=tuple(chosen), directions=directions.astype(np.float32),
                         raw_norm=raw_norm.astype(np.float32), counts=counts,
                         mean=mean.astype(np.float32), std=std.astype(np.float32),
                         readers=readers.astype(np.float32), offsets=offsets.astype(np.float32))


def _available(corpus: Corpus, method: Method) -> list[str]:
    """Concepts ``method`` can fit on ``corpus``."""
    if method in _STORY_METHODS:
        story_concepts = sorted({t.concept for t in corpus.stories if t.concept})
        if not story_concepts:
            raise CorpusError(
                f"method {method!r} needs stories/<concept>/*.txt next to {corpus.root}; "
                "none were found: add stories or use method='paired'")
        return story_concepts
    if method in _ANY_METHODS:
        return list(corpus.concepts)
    return list(corpus.paired_concepts)


def _estimate(v: Views, method: Method, chosen: Sequence[str], *, neutral: bool) -> np.ndarray:
    if method == "paired":
        return _methods.paired(v, chosen)
    if method == "paired_centred":
        return _methods.paired_centred(v, chosen)
    if method == "unpaired":
        return _methods.unpaired(v, chosen, neutral=neutral)
    if method == "combined":
        return _methods.combined(v, chosen, neutral=neutral)
    if method == "pca":
        return _methods.pca(v, chosen)
    if method == "subspace":
        return _methods.subspace(v, chosen)
    return np.zeros((len(chosen), *v.x.shape[1:]))  # probe: computed by the caller


def _check_usable(array: np.ndarray, method: str, what: str, concepts: Sequence[str],
                  layers: Sequence[int]) -> None:
    """Raise `DegenerateDirectionError` on a non-finite or zero vector."""
    norms = np.linalg.norm(array, axis=-1)  # [c, l]
    bad = ~np.isfinite(norms) | (norms <= 1e-9 * max(float(np.nanmax(norms, initial=0.0)),
                                                      1e-30))
    if bad.any():
        c, layer = (int(i) for i in np.argwhere(bad)[0])
        raise DegenerateDirectionError(
            f"method {method!r} gave a zero or non-finite {what} vector for "
            f"{concepts[c]!r} at layer {layers[layer]} ({int(bad.sum())} such vectors in all); "
            "expected a finite non-zero direction: check that the concept's texts differ from "
            "what they are contrasted with, or use another method")


def _raw_norms(data: ExtractionInput, corpus: Corpus, concepts: Sequence[str],
               method: Method) -> tuple[np.ndarray, dict[str, int]]:
    """Norm of the raw-space mean difference behind each vector, and the counts used."""
    if method == "unpaired":
        story_concepts = sorted({t.concept for t in corpus.stories if t.concept})
        means = {c: data.rows([t.id for t in corpus.stories_for(c)]).mean(0)
                 for c in story_concepts}
        grand = np.mean(list(means.values()), axis=0)
        norms = np.stack([np.linalg.norm(means[c] - grand, axis=-1) for c in concepts])
        return norms, {c: len(corpus.stories_for(c)) for c in concepts}
    if method in _ANY_METHODS:
        raw = Views(x=data.x, row=dict(data._row), corpus=corpus,
                    reference=tuple(reference_ids(corpus)))
        if method == "combined":
            means = {c: raw.rows(raw.texts_of(c)).mean(0) for c in corpus.concepts}
            diffs = _methods._one_vs_rest(means, concepts)
        else:
            diffs = np.stack([np.einsum("n,nld->ld", w, rows) for rows, w, _ in
                              (_methods._subspace_sets(raw, c) for c in concepts)])
        return np.linalg.norm(diffs, axis=-1), {c: len(raw.texts_of(c)) for c in concepts}
    norms = np.stack([np.linalg.norm(paired_differences(data, corpus, c).mean(0), axis=-1)
                      for c in concepts])
    return norms, {c: len(corpus.scenarios_with(c)) for c in concepts}
