"""The estimators behind `extract`: each maps a corpus to per-concept vectors in method space.

Every estimator works in the method's space: activations centred on the reference
(neutral) mean and divided by the per-dimension reference spread (``std``; ones for raw
normalisation). It returns two ``[concepts, layers, d]`` arrays in that space:

- ``write``: what steering adds (packaged as a unit raw-space direction by `extract`);
- ``read``: what scores a text; the method's score of a pooled activation ``h`` is
  ``unit(read) . (h - mean) / std`` (see `readers_and_offsets`).

For every method except ``probe`` the two are the same vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.errors import DegenerateDirectionError

__all__ = [
    "MAX_NEUTRAL_PCS",
    "NEUTRAL_VARIANCE_REMOVED",
    "PROBE_SHRINKAGE",
    "SubspaceSpectrum",
    "Views",
    "readers_and_offsets",
    "subspace_spectrum",
]

# Share of neutral variance whose principal components unpaired/combined remove
# (Anthropic keep components up to 50%); capped so tiny neutral sets do not remove everything.
NEUTRAL_VARIANCE_REMOVED = 0.5
MAX_NEUTRAL_PCS = 16
# LDA covariance shrinkage towards a scaled identity: with ~200 samples in 576
# dimensions the pooled covariance is singular; 0.5 is a stable middle.
PROBE_SHRINKAGE = 0.5
# Share of the positive signal eigenvalues that `k_signal_at_90pct` counts up to.
SIGNAL_SHARE = 0.9


@attrs.frozen(kw_only=True)
class Views:
    """The activations an estimator reads, already in method space.

    Attributes:
        x: ``[n_texts, layers, d]`` every text, ``(x - mean) / std``.
        row: text id -> row of ``x``.
        corpus: the corpus the texts belong to.
        reference: ids of the reference texts (neutral, else baselines).
    """

    x: np.ndarray
    row: dict[str, int]
    corpus: Corpus
    reference: tuple[str, ...]

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """``[len(ids), layers, d]``."""
        return self.x[[self.row[i] for i in ids]]

    def paired(self, concept: str) -> np.ndarray:
        """``[scenarios, layers, d]`` (variant - baseline) of the scenarios carrying ``concept``."""
        scenarios = self.corpus.scenarios_with(concept)
        diffs: np.ndarray = self.rows([s.variants[concept].id for s in scenarios]) - self.rows(
            [s.baseline.id for s in scenarios])
        return diffs

    def texts_of(self, concept: str) -> list[str]:
        """Ids of a concept's paired variants and stories (the ``combined`` positives)."""
        ids = [s.variants[concept].id for s in self.corpus.scenarios_with(concept)]
        return ids + [t.id for t in self.corpus.stories_for(concept)]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)  # type: ignore[no-any-return]


def readers_and_offsets(read: np.ndarray, mean: np.ndarray,
                        std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw-space readers ``[c, l, d]`` and offsets ``[c, l]`` of method-space vectors.

    ``readers[c, l] @ h + offsets[c, l] == unit(read[c, l]) . (h - mean[l]) / std[l]``:
    the method's own score, with no per-concept rescaling in raw space, so the argmax
    across concepts is the method's.
    """
    readers = _unit(read) / std[None]
    offsets = -np.einsum("cld,ld->cl", readers, mean)
    return readers, offsets


def _need_two(method: str, names: Sequence[str], what: str) -> None:
    if len(names) < 2:
        raise DegenerateDirectionError(
            f"method {method!r} contrasts a concept with the other concepts, so it needs at "
            f"least two concepts with {what}; this corpus has {list(names)}. Add texts of "
            "another concept or use method='paired'")


def paired(v: Views, concepts: Sequence[str]) -> np.ndarray:
    """Mean over scenarios of (variant - baseline)."""
    return np.stack([v.paired(c).mean(0) for c in concepts])


def paired_centred(v: Views, concepts: Sequence[str]) -> np.ndarray:
    """Within-scenario centred variants, averaged, minus the mean over ALL corpus concepts.

    The centring uses every paired concept of the corpus whatever subset is asked for, so
    a concept's vector does not depend on which other concepts are requested.
    """
    every = v.corpus.paired_concepts
    _need_two("paired_centred", every, "paired variants")
    sums = {c: np.zeros(v.x.shape[1:]) for c in every}
    counts = dict.fromkeys(every, 0)
    for scenario in v.corpus.scenarios:
        block = v.rows([scenario.variants[c].id for c in scenario.concepts])
        centred = block - block.mean(axis=0, keepdims=True)
        for concept, row in zip(scenario.concepts, centred, strict=True):
            sums[concept] += row
            counts[concept] += 1
    means = {c: sums[c] / counts[c] for c in every}
    grand = np.mean([means[c] for c in every], axis=0)
    return np.stack([means[c] - grand for c in concepts])


def neutral_pcs(v: Views) -> list[np.ndarray]:
    """Per layer the top principal components ``[k, d]`` of the reference texts."""
    ref = v.rows(list(v.reference))
    out = []
    for layer in range(ref.shape[1]):
        centred = ref[:, layer] - ref[:, layer].mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        share = np.cumsum(s**2) / max(float((s**2).sum()), 1e-12)
        k = min(int(np.searchsorted(share, NEUTRAL_VARIANCE_REMOVED) + 1), MAX_NEUTRAL_PCS,
                max(centred.shape[0] - 1, 0))
        out.append(vt[:k])
    return out


def _project_out(vectors: np.ndarray, pcs: list[np.ndarray]) -> np.ndarray:
    out = vectors.copy()
    for layer, top in enumerate(pcs):
        out[:, layer] -= (out[:, layer] @ top.T) @ top
    return out


def _one_vs_rest(means: dict[str, np.ndarray], concepts: Sequence[str]) -> np.ndarray:
    """Each concept's mean minus the mean of the other concepts' means."""
    total = np.sum(list(means.values()), axis=0)
    k = len(means)
    return np.stack([means[c] - (total - means[c]) / (k - 1) for c in concepts])


def unpaired(v: Views, concepts: Sequence[str], *, neutral: bool) -> np.ndarray:
    """Story mean minus the mean over all story concepts, neutral PCs projected out."""
    names = sorted({t.concept for t in v.corpus.stories if t.concept})
    _need_two("unpaired", names, "stories")
    means = {c: v.rows([t.id for t in v.corpus.stories_for(c)]).mean(0) for c in names}
    grand = np.mean(list(means.values()), axis=0)
    vectors = np.stack([means[c] - grand for c in concepts])
    return _project_out(vectors, neutral_pcs(v)) if neutral else vectors


def combined(v: Views, concepts: Sequence[str], *, neutral: bool) -> np.ndarray:
    """The seed's trainer: a concept's variants and stories against the other concepts' texts.

    One-vs-rest mean difference (each concept's texts averaged first, so a concept with
    many texts does not dominate the rest), with the top neutral PCs projected out.
    """
    names = v.corpus.concepts
    _need_two("combined", names, "variants or stories")
    means = {c: v.rows(v.texts_of(c)).mean(0) for c in names}
    vectors = _one_vs_rest(means, concepts)
    return _project_out(vectors, neutral_pcs(v)) if neutral else vectors


def pca(v: Views, concepts: Sequence[str]) -> np.ndarray:
    """First right-singular vector of the paired differences, sign-aligned with their mean."""
    out = []
    for concept in concepts:
        per_layer = np.transpose(v.paired(concept), (1, 0, 2))  # [L, s, d]
        _, _, vt = np.linalg.svd(per_layer, full_matrices=False)
        first = vt[:, 0, :]
        sign = np.sign(np.einsum("ld,ld->l", first, per_layer.mean(axis=1)))
        out.append(first * np.where(sign == 0, 1, sign)[:, None])
    return np.stack(out)


def probe(v: Views, concepts: Sequence[str], *,
          shrinkage: float = PROBE_SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest shrinkage LDA on the paired differences.

    Returns:
        ``(write, read)``: the mean difference ``m_c - m_rest`` (steers) and the LDA
        weight ``((1 - a) S + a tr(S)/d I)^-1 (m_c - m_rest)`` (reads), where ``S`` is the
        pooled within-concept covariance of the differences and ``a`` the ``shrinkage``
        (default `PROBE_SHRINKAGE`; `amygdala evaluate` chooses it on inner folds).
    """
    names = v.corpus.paired_concepts
    _need_two("probe", names, "paired variants")
    groups = {c: v.paired(c) for c in names}
    centred = np.concatenate([g - g.mean(0) for g in groups.values()])
    layers, d = centred.shape[1], centred.shape[2]
    write = np.empty((len(concepts), layers, d))
    read = np.empty_like(write)
    for layer in range(layers):
        cov = centred[:, layer].T @ centred[:, layer] / max(len(centred) - len(groups), 1)
        # With one text per concept there is no within-concept spread (S = 0): the LDA
        # weight is then the mean difference itself (identity ridge), not a singular solve.
        spread = np.trace(cov) / d
        ridge = shrinkage * spread if spread > 0 else 1.0 / d  # as the fast refit
        reg = (1 - shrinkage) * cov + ridge * np.eye(d)
        targets = []
        for concept in concepts:
            rest = np.concatenate([g[:, layer] for c, g in groups.items() if c != concept])
            targets.append(groups[concept][:, layer].mean(0) - rest.mean(0))
        write[:, layer] = np.stack(targets)
        read[:, layer] = np.linalg.solve(reg, write[:, layer].T).T
    return write, read


@attrs.frozen(kw_only=True)
class SubspaceSpectrum:
    """The contrastive spectrum of one concept at every layer.

    Attributes:
        eigvals: per layer, the positive eigenvalues of ``M_pos - M_base``, descending.
        full: per layer, the eigenvalues of ``M_pos``, descending.
        top: ``[layers, d]`` the top eigenvector, sign-aligned with mean(pos) - mean(base).
    """

    eigvals: tuple[np.ndarray, ...]
    full: tuple[np.ndarray, ...]
    top: np.ndarray

    def k_signal(self, layer: int, share: float = SIGNAL_SHARE) -> int:
        """Fewest top eigenvalues carrying ``share`` of the positive signal at ``layer``."""
        vals = self.eigvals[layer]
        if not len(vals):
            return 0
        cum = np.cumsum(vals) / vals.sum()
        return int(np.searchsorted(cum, share - 1e-12) + 1)

    def effective_dim_signal(self, layer: int) -> float:
        """Participation ratio ``(sum l)^2 / sum l^2`` of the positive signal eigenvalues."""
        return _participation(self.eigvals[layer])

    def effective_dim_full(self, layer: int) -> float:
        """Participation ratio of the eigenvalues of ``M_pos``."""
        return _participation(self.full[layer])


def _participation(vals: np.ndarray) -> float:
    vals = np.clip(vals, 0, None)
    return float(vals.sum() ** 2 / max(float((vals**2).sum()), 1e-300)) if len(vals) else 0.0


def _subspace_sets(v: Views, concept: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``[n, L, d]`` and weights ``[n]`` of ``M_pos - M_base``, and the positive mask.

    Two matched contrasts, weighted by how many positives each has: the concept's paired
    variants against their own baselines, and its stories against the reference texts.
    """
    scenarios = v.corpus.scenarios_with(concept)
    stories = v.corpus.stories_for(concept)
    n_sc, n_st = len(scenarios), len(stories)
    total = max(n_sc + n_st, 1)
    parts: list[tuple[list[str], float]] = []
    if n_sc:
        parts.append(([s.variants[concept].id for s in scenarios], 1 / total))
        parts.append(([s.baseline.id for s in scenarios], -1 / total))
    if n_st:
        parts.append(([t.id for t in stories], 1 / total))
        parts.append((list(v.reference), -(n_st / total) / max(len(v.reference), 1)))
    ids = [i for p, _ in parts for i in p]
    weights = np.concatenate([np.full(len(p), w) for p, w in parts]) if parts else np.zeros(0)
    return v.rows(ids), weights, weights > 0


def subspace_spectrum(v: Views, concept: str) -> SubspaceSpectrum:
    """Eigen-decompose ``M_pos - M_base`` for ``concept`` at every layer.

    ``M_pos`` is the second moment (about the reference mean, in method space) of the
    concept's positives: its paired variants and its stories, each text one pooled vector.
    ``M_base`` is that of the texts they are contrasted with: each variant's own baseline,
    and the reference texts for its stories (weighted so each contrast counts by its
    number of positives). Both are low rank, so the eigenproblem is solved in the span of
    the texts (a QR of the stacked rows). The top eigenvector is sign-aligned with the
    weighted mean difference.
    """
    stacked, weights, positive = _subspace_sets(v, concept)
    if not positive.any() or positive.all():
        raise DegenerateDirectionError(
            f"method 'subspace' needs positives and base texts for {concept!r}; got "
            f"{int(positive.sum())} positives and {int((~positive).sum())} base texts")
    pos = stacked[positive]
    eigvals, full, top = [], [], []
    for layer in range(stacked.shape[1]):
        q, r = np.linalg.qr(stacked[:, layer].T)  # [d, n], [n, n]
        small = (r * weights) @ r.T
        vals, vecs = np.linalg.eigh((small + small.T) / 2)
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        first = q @ vecs[:, 0]
        contrast = weights @ stacked[:, layer]
        if float(first @ contrast) < 0:
            first = -first
        scale = max(float(np.abs(vals).max(initial=0.0)), 1e-300)
        eigvals.append(vals[vals > 1e-9 * scale])
        p = pos[:, layer]
        full.append(np.clip(np.linalg.eigvalsh(p @ p.T / len(p))[::-1], 0, None))
        top.append(first)
    return SubspaceSpectrum(eigvals=tuple(eigvals), full=tuple(full), top=np.stack(top))


def subspace(v: Views, concepts: Sequence[str]) -> np.ndarray:
    """The seed's ``--method subspace``: top eigenvector of ``M_pos - M_base`` per concept."""
    out = []
    for concept in concepts:
        spectrum = subspace_spectrum(v, concept)
        empty = [i for i, e in enumerate(spectrum.eigvals) if not len(e)]
        if empty:
            raise DegenerateDirectionError(
                f"method 'subspace': {concept!r} has no direction with more energy in its "
                f"texts than in their base texts at layer indices {empty}; use another method")
        out.append(spectrum.top)
    return np.stack(out)
