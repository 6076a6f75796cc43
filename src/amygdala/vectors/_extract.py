"""Extraction methods: from pooled activations to one direction per concept and layer.

All methods work on ``X[n_texts, layers, d_model]`` and are vectorised across
layers. A method may work in a *standardised* space (each dimension divided by
its spread over reference texts) because a few "massive activation"
dimensions otherwise dominate every mean and cosine. Directions are always
returned in raw residual space as *writing* directions: adding ``alpha *
direction`` to the residual stream moves the standardised representation along
the method's direction. Readers are derived from them (see `SteeringVectorSet.readers`).

Methods:

- ``paired``: mean over scenarios of (variant - baseline) (Wang et al. 2025).
- ``paired_centred``: each scenario's variants centred on their own mean, averaged
  over scenarios, then the mean over concepts removed (Wang et al.'s recipe).
- ``unpaired``: story mean minus the mean over all concepts, with the top
  principal components of neutral text projected out (Anthropic 2026).
- ``pca``: first right-singular vector of the paired differences, sign-aligned
  with their mean.
- ``probe``: shrinkage LDA on the paired differences, one-vs-rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.errors import CorpusError, NonFiniteError

__all__ = [
    "METHODS",
    "NORMALISATIONS",
    "ExtractionInput",
    "Method",
    "Normalisation",
    "RawDirections",
    "extract",
    "paired_differences",
]

Method = Literal["paired", "paired_centred", "unpaired", "pca", "probe"]
Normalisation = Literal["raw", "standardise"]
METHODS: tuple[Method, ...] = get_args(Method)
NORMALISATIONS: tuple[Normalisation, ...] = get_args(Normalisation)

# Share of neutral variance whose principal components the unpaired method
# removes (Anthropic keep components up to 50%); capped so tiny neutral sets
# do not remove everything.
NEUTRAL_VARIANCE_REMOVED = 0.5
MAX_NEUTRAL_PCS = 16
# LDA covariance shrinkage towards a scaled identity: with ~200 samples in 576
# dimensions the pooled covariance is singular; 0.5 is a stable middle.
PROBE_SHRINKAGE = 0.5


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
    """

    concepts: tuple[str, ...]
    directions: np.ndarray
    raw_norm: np.ndarray
    counts: Mapping[str, int]
    mean: np.ndarray
    std: np.ndarray


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


def paired_differences(data: ExtractionInput, corpus: Corpus, concept: str) -> np.ndarray:
    """``[scenarios, layers, d]`` of (variant - baseline) for scenarios carrying ``concept``."""
    scenarios = corpus.scenarios_with(concept)
    variants = data.rows([s.variants[concept].id for s in scenarios])
    baselines = data.rows([s.baseline.id for s in scenarios])
    return variants - baselines  # type: ignore[no-any-return]


def _paired(data: ExtractionInput, corpus: Corpus, concepts: Sequence[str],
            std: np.ndarray) -> np.ndarray:
    return np.stack([(paired_differences(data, corpus, c) / std).mean(0) for c in concepts])


def _paired_centred(data: ExtractionInput, corpus: Corpus, concepts: Sequence[str],
                    std: np.ndarray) -> np.ndarray:
    sums = {c: np.zeros(data.x.shape[1:]) for c in concepts}
    counts = dict.fromkeys(concepts, 0)
    for scenario in corpus.scenarios:
        ids = [scenario.variants[c].id for c in scenario.concepts]
        block = data.rows(ids) / std
        centred = block - block.mean(axis=0, keepdims=True)
        for concept, row in zip(scenario.concepts, centred, strict=True):
            if concept in sums:
                sums[concept] += row
                counts[concept] += 1
    means = np.stack([sums[c] / counts[c] for c in concepts])
    return means - means.mean(axis=0, keepdims=True)  # type: ignore[no-any-return]


def _neutral_projector(neutral: np.ndarray) -> np.ndarray:
    """Per layer, the projector removing the top neutral PCs: ``[layers, d, d]``."""
    layers, d = neutral.shape[1], neutral.shape[2]
    projectors = np.empty((layers, d, d))
    for layer in range(layers):
        centred = neutral[:, layer] - neutral[:, layer].mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        share = np.cumsum(s**2) / max(float((s**2).sum()), 1e-12)
        k = min(int(np.searchsorted(share, NEUTRAL_VARIANCE_REMOVED) + 1), MAX_NEUTRAL_PCS,
                max(centred.shape[0] - 1, 0))
        top = vt[:k]
        projectors[layer] = np.eye(d) - top.T @ top
    return projectors


def _unpaired(data: ExtractionInput, corpus: Corpus, concepts: Sequence[str],
              mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    story_concepts = sorted({t.concept for t in corpus.stories if t.concept})
    means = {c: ((data.rows([t.id for t in corpus.stories_for(c)]) - mean) / std).mean(0)
             for c in story_concepts}
    grand = np.mean([means[c] for c in story_concepts], axis=0)
    vectors = np.stack([means[c] - grand for c in concepts])
    if corpus.neutral:
        neutral = (data.rows([t.id for t in corpus.neutral]) - mean) / std
        vectors = np.einsum("lde,cle->cld", _neutral_projector(neutral), vectors)
    return vectors


def _pca(data: ExtractionInput, corpus: Corpus, concepts: Sequence[str],
         std: np.ndarray) -> np.ndarray:
    out = []
    for concept in concepts:
        diffs = paired_differences(data, corpus, concept) / std  # [s, L, d]
        per_layer = np.transpose(diffs, (1, 0, 2))  # [L, s, d]
        _, _, vt = np.linalg.svd(per_layer, full_matrices=False)
        first = vt[:, 0, :]
        sign = np.sign(np.einsum("ld,ld->l", first, per_layer.mean(axis=1)))
        out.append(first * np.where(sign == 0, 1, sign)[:, None])
    return np.stack(out)


def _probe(data: ExtractionInput, corpus: Corpus, concepts: Sequence[str],
           std: np.ndarray) -> np.ndarray:
    groups = {c: paired_differences(data, corpus, c) / std for c in corpus.paired_concepts}
    all_rows = np.concatenate(list(groups.values()))
    centred = np.concatenate([g - g.mean(0) for g in groups.values()])
    layers, d = all_rows.shape[1], all_rows.shape[2]
    out = np.empty((len(concepts), layers, d))
    for layer in range(layers):
        cov = centred[:, layer].T @ centred[:, layer] / max(len(centred) - len(groups), 1)
        ridge = PROBE_SHRINKAGE * np.trace(cov) / d
        reg = (1 - PROBE_SHRINKAGE) * cov + ridge * np.eye(d)
        targets = []
        for concept in concepts:
            rest = np.concatenate([g[:, layer] for c, g in groups.items() if c != concept])
            targets.append(groups[concept][:, layer].mean(0) - rest.mean(0))
        out[:, layer] = np.linalg.solve(reg, np.stack(targets).T).T
    return out


def extract(
    data: ExtractionInput, corpus: Corpus, *, method: Method = "paired",
    normalisation: Normalisation = "standardise", concepts: Sequence[str] | None = None,
) -> RawDirections:
    """Compute one unit direction per concept and layer.

    Args:
        data: activations of every corpus text at the layers wanted.
        corpus: the corpus the activations come from.
        method: one of `METHODS`.
        normalisation: ``raw`` or ``standardise`` (divide each dimension by its
            spread over neutral texts, or baselines when there are none).
        concepts: which concepts (default: all the method can see).

    Returns:
        `RawDirections` with raw-space writing directions.

    Raises:
        CorpusError: the corpus lacks what the method needs (stories for
            ``unpaired``, a concept in no scenario...).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; expected one of "
                         f"{', '.join(NORMALISATIONS)}")
    story_concepts = sorted({t.concept for t in corpus.stories if t.concept})
    available = story_concepts if method == "unpaired" else list(corpus.paired_concepts)
    if method == "unpaired" and not story_concepts:
        raise CorpusError(
            f"method 'unpaired' needs stories/<concept>/*.txt next to {corpus.root}; "
            "none were found: add stories or use method='paired'"
        )
    chosen = list(concepts) if concepts is not None else available
    missing = [c for c in chosen if c not in available]
    if missing:
        raise CorpusError(f"method {method!r} has no data for {missing}; available: {available}")
    mean, std = reference_stats(data, corpus)
    if normalisation == "raw":
        std = np.ones_like(std)
    if method == "paired":
        vectors = _paired(data, corpus, chosen, std)
    elif method == "paired_centred":
        vectors = _paired_centred(data, corpus, chosen, std)
    elif method == "unpaired":
        vectors = _unpaired(data, corpus, chosen, mean, std)
    elif method == "pca":
        vectors = _pca(data, corpus, chosen, std)
    else:
        vectors = _probe(data, corpus, chosen, std)
    # Back to raw space: a step u in standardised space is u * std in raw space.
    directions = _unit(_unit(vectors) * std[None])
    raw_norm, counts = _raw_norms(data, corpus, chosen, method)
    return RawDirections(concepts=tuple(chosen), directions=directions.astype(np.float32),
                         raw_norm=raw_norm.astype(np.float32), counts=counts,
                         mean=mean.astype(np.float32), std=std.astype(np.float32))


def _raw_norms(data: ExtractionInput, corpus: Corpus, concepts: Sequence[str],
               method: Method) -> tuple[np.ndarray, dict[str, int]]:
    if method == "unpaired":
        story_concepts = sorted({t.concept for t in corpus.stories if t.concept})
        means = {c: data.rows([t.id for t in corpus.stories_for(c)]).mean(0)
                 for c in story_concepts}
        grand = np.mean(list(means.values()), axis=0)
        norms = np.stack([np.linalg.norm(means[c] - grand, axis=-1) for c in concepts])
        return norms, {c: len(corpus.stories_for(c)) for c in concepts}
    norms = np.stack([np.linalg.norm(paired_differences(data, corpus, c).mean(0), axis=-1)
                      for c in concepts])
    return norms, {c: len(corpus.scenarios_with(c)) for c in concepts}
