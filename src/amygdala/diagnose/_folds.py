"""Refit a method on any subset of scenarios, fast: the fitters behind `evaluate`.

Nested evaluation refits every method a few hundred times (outer folds, inner folds,
learning-curve draws). Refitting through `extract` on a sub-corpus is exact but slow
(about a second per fit for ``probe`` on the shipped corpus), so the methods whose fit is
a function of per-scenario sums get a *fast fitter* that precomputes those sums once
(standardised paired differences, their per-concept Gram matrices, their outer products)
and, per fold, only removes what the held-out scenarios contributed; ``subspace`` keeps one
orthonormal basis per concept and layer for the span of every text it may use, and a fold
only reweights the rows in it. ``unpaired`` (stories only) is fitted once through `extract`;
every method goes through `extract` on each fold's scenarios when the corpus has no neutral
texts (the reference statistics then come from the scenarios themselves).
``tests/test_evaluate.py`` checks that each fast fitter returns the same readers as
`extract` on the same training scenarios.

A fit yields raw-space *readers* and *offsets*: ``readers[c, l] @ h + offsets[c, l]`` is
the method's score of a pooled activation ``h`` (`method_readers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.errors import DegenerateDirectionError
from amygdala.vectors import _extract
from amygdala.vectors._extract import (
    ExtractionInput,
    Normalisation,
    RawDirections,
    extract,
    readers_and_offsets,
    reference_stats,
    views,
)
from amygdala.vectors._methods import neutral_pcs

__all__ = ["SHRINKAGE_GRID", "Fitter", "FoldFit", "make_fitter", "make_fitters", "method_readers",
           "readers_from_standardised"]

# Methods whose vectors do not depend on the scenarios at all (they read stories only):
# one fit serves every fold of a paired evaluation.
STORY_ONLY = frozenset({"unpaired"})
# Methods fitted from paired differences only (they cannot be fitted on stories).
PAIRED_ONLY = frozenset({"paired", "paired_centred", "pca", "probe"})


@attrs.frozen(kw_only=True)
class FoldFit:
    """A method fitted on some scenarios, as raw-space readers over all corpus concepts.

    Attributes:
        readers: ``[concepts, layers, d]``; rows of unfitted concepts are zero.
        offsets: ``[concepts, layers]``.
        fitted: ``[concepts]`` whether the training data had the concept.
    """

    readers: np.ndarray = attrs.field(eq=False)
    offsets: np.ndarray = attrs.field(eq=False)
    fitted: np.ndarray = attrs.field(eq=False)


Fitter = Callable[[np.ndarray], FoldFit]
"""Maps a boolean training mask over ``corpus.scenarios`` to a `FoldFit`."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)  # type: ignore[no-any-return]


def readers_from_standardised(vectors: np.ndarray, mean: np.ndarray,
                              std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Readers and offsets of method-space reading vectors ``[concepts, layers, d]``.

    The same packaging as `extract` (`readers_and_offsets`): the score of ``h`` is
    ``unit(v) . (h - mean) / std``.
    """
    return readers_and_offsets(vectors, mean, std)


def method_readers(raw: RawDirections) -> tuple[np.ndarray, np.ndarray]:
    """The method's raw-space reading weights and offsets ``([c, l, d], [c, l])``."""
    return np.asarray(raw.readers, np.float64), np.asarray(raw.offsets, np.float64)


def _subcorpus(corpus: Corpus, train: np.ndarray) -> Corpus:
    return attrs.evolve(corpus, scenarios=[s for s, t in zip(corpus.scenarios, train,
                                                              strict=True) if t])


def _pack(concepts: Sequence[str], names: Sequence[str], readers: np.ndarray,
          offsets: np.ndarray, shape: tuple[int, ...]) -> FoldFit:
    full_r = np.zeros((len(concepts), *shape))
    full_o = np.zeros((len(concepts), shape[0]))
    fitted = np.zeros(len(concepts), bool)
    index = {c: i for i, c in enumerate(concepts)}
    for j, name in enumerate(names):
        if name in index:
            full_r[index[name]] = readers[j]
            full_o[index[name]] = offsets[j]
            fitted[index[name]] = True
    return FoldFit(readers=full_r, offsets=full_o, fitted=fitted)


def _generic(data: ExtractionInput, corpus: Corpus, method: str,
             normalisation: Normalisation, concepts: Sequence[str], shrinkage: float) -> Fitter:
    cache: dict[bytes, FoldFit] = {}
    shape = data.x.shape[1:]

    def fit(train: np.ndarray) -> FoldFit:
        key = b"all" if method in STORY_ONLY else np.packbits(train).tobytes()
        if key not in cache:
            raw = extract(data, _subcorpus(corpus, train), method=method,  # type: ignore[arg-type]
                          normalisation=normalisation, shrinkage=shrinkage)
            readers, offsets = method_readers(raw)
            cache[key] = _pack(concepts, raw.concepts, readers, offsets, shape)
        return cache[key]

    return fit


class _Fast:
    """Per-item standardised differences and their sums, for the fast fitters."""

    def __init__(self, data: ExtractionInput, corpus: Corpus, normalisation: Normalisation,
                 concepts: Sequence[str]) -> None:
        mean, std = reference_stats(data, corpus)
        if normalisation == "raw":
            std = np.ones_like(std)
        self.mean, self.std = mean.astype(np.float64), std.astype(np.float64)
        self.concepts = tuple(concepts)
        index = {c: i for i, c in enumerate(concepts)}
        scen, conc, var, base, centred = [], [], [], [], []
        for si, s in enumerate(corpus.scenarios):
            block = data.rows([s.variants[c].id for c in s.concepts]) / std
            centred.append(block - block.mean(axis=0, keepdims=True))
            for c in s.concepts:
                scen.append(si)
                conc.append(index[c])
                var.append(s.variants[c].id)
                base.append(s.baseline.id)
        self.scenario = np.asarray(scen)
        self.concept = np.asarray(conc)
        # [items, layers, d] standardised (variant - baseline), and the within-scenario
        # centred variants of paired_centred.
        self.diff = ((data.rows(var) - data.rows(base)) / std).astype(np.float32)
        self.centred = np.concatenate(centred).astype(np.float32)
        self.shape = data.x.shape[1:]
        self._data, self._corpus = data, corpus
        self._combined: tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]] | None = None
        self._padded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._eig: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._subspace: dict[int, _SubspaceBasis] = {}

    def onehot(self, train: np.ndarray) -> np.ndarray:
        """``[concepts, items]`` mean weights over training items, and fitted mask."""
        keep = train[self.scenario]
        w = np.zeros((len(self.concepts), len(self.concept)), np.float32)
        w[self.concept[keep], np.flatnonzero(keep)] = 1.0
        return w

    def means(self, rows: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.onehot(train)
        n = w.sum(axis=1)
        flat = rows.reshape(len(rows), -1)
        sums = (w @ flat).reshape(len(w), *self.shape).astype(np.float64)
        fitted = n > 0
        return sums / np.maximum(n, 1)[:, None, None], fitted

    def pack(self, vectors: np.ndarray, fitted: np.ndarray) -> FoldFit:
        readers, offsets = readers_from_standardised(vectors, self.mean, self.std)
        readers[~fitted] = 0.0
        offsets[~fitted] = 0.0
        return FoldFit(readers=readers, offsets=offsets, fitted=fitted)

    def padded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per concept its items' differences, padded to one length (cached).

        Returns:
            ``(gram [C, L, n, n], item index [C, n] (-1 = padding), rows [C, n, L, d])``.
        """
        if self._padded is None:
            per = [np.flatnonzero(self.concept == c) for c in range(len(self.concepts))]
            width = max(max((len(p) for p in per), default=0), 1)
            slots = np.full((len(per), width), -1, np.int64)
            rows = np.zeros((len(per), width, *self.shape), np.float32)
            for c, p in enumerate(per):
                slots[c, :len(p)] = p
                rows[c, :len(p)] = self.diff[p]
            r = np.transpose(rows, (0, 2, 1, 3)).astype(np.float64)  # [C, L, n, d]
            self._padded = (r @ np.swapaxes(r, -1, -2), slots, rows)
        return self._padded

    def combined_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
        """Variants in method space ``[items, L, d]``, story sums ``[C, L, d]`` and counts
        ``[C]``, and the neutral principal components per layer (cached)."""
        if self._combined is None:
            v = views(self._data, self._corpus, self.mean, self.std)
            ids = [s.variants[c].id for s in self._corpus.scenarios for c in s.concepts]
            sums = np.zeros((len(self.concepts), *self.shape))
            counts = np.zeros(len(self.concepts))
            for c, name in enumerate(self.concepts):
                stories = [t.id for t in self._corpus.stories_for(name)] if name in {
                    t.concept for t in self._corpus.stories} else []
                if stories:
                    sums[c] = v.rows(stories).sum(axis=0)
                    counts[c] = len(stories)
            self._combined = (v.rows(ids).astype(np.float32), sums, counts, neutral_pcs(v))
        return self._combined

    def subspace_basis(self, concept: int) -> _SubspaceBasis:
        """The span of every text one concept's ``subspace`` fit can use (cached).

        Rows: the concept's variants and baselines in every scenario, its stories and the
        reference texts, in method space. Per layer a QR of the stacked rows gives an
        orthonormal basis ``q`` of their span and ``M = sum_i w_i x_i x_i^T`` becomes
        ``r diag(w) r^T`` in it, so a fold only reweights ``r`` (held-out rows get weight 0).
        """
        if concept not in self._subspace:
            name = self.concepts[concept]
            corpus = self._corpus
            v = views(self._data, corpus, self.mean, self.std)
            known = name in corpus.concepts
            scenarios = [(si, s) for si, s in enumerate(corpus.scenarios) if name in s.variants]
            stories = [t.id for t in corpus.stories_for(name)] if known else []
            ids = [s.variants[name].id for _, s in scenarios]
            ids += [s.baseline.id for _, s in scenarios] + stories + list(v.reference)
            sign = np.concatenate([np.ones(len(scenarios)), -np.ones(len(scenarios)),
                                   np.ones(len(stories)), np.zeros(len(v.reference))])
            owner = np.concatenate([[si for si, _ in scenarios] * 2,
                                    np.full(len(stories) + len(v.reference), -1)]).astype(int)
            rows = v.rows(ids).astype(np.float64)  # [n, L, d]
            q, r = np.linalg.qr(np.transpose(rows, (1, 2, 0)))  # [L, d, k], [L, k, n]
            self._subspace[concept] = _SubspaceBasis(
                q=q.astype(np.float32), r=r, sign=sign, owner=owner, n_stories=len(stories),
                n_reference=len(v.reference))
        return self._subspace[concept]

    def eig(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """Eigendecomposition of ``sum over all items of r r^T`` at ``layer`` (cached)."""
        if layer not in self._eig:
            r = self.diff[:, layer].astype(np.float64)
            self._eig[layer] = np.linalg.eigh(r.T @ r)
        return self._eig[layer]


def _fit_paired(fast: _Fast, train: np.ndarray, shrinkage: float) -> FoldFit:
    means, fitted = fast.means(fast.diff, train)
    return fast.pack(means, fitted)


def _fit_centred(fast: _Fast, train: np.ndarray, shrinkage: float) -> FoldFit:
    means, fitted = fast.means(fast.centred, train)
    means = means - means[fitted].mean(axis=0, keepdims=True)
    return fast.pack(means, fitted)


def _top_eigvecs(gram: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Top eigenvector of each masked PSD matrix ``gram[..., n, n]`` (rows/cols ``~keep`` zero).

    Batched power iteration (the paired differences of one concept share their mean, so the
    top eigenvalue is well separated); matrices that have not converged after a few hundred
    steps go to `numpy.linalg.eigh`. Returns ``[..., n]`` unit vectors, zero where masked.
    """
    mask = keep.astype(np.float64)
    g = gram * mask[..., :, None] * mask[..., None, :]
    v: np.ndarray = np.broadcast_to(mask, g.shape[:-1]).copy()
    v /= np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)
    for _ in range(_POWER_STEPS):
        new: np.ndarray = np.einsum("...ij,...j->...i", g, v)
        new /= np.maximum(np.linalg.norm(new, axis=-1, keepdims=True), 1e-300)
        done = np.abs(new - v).max() < _POWER_TOL
        v = new
        if done:
            return v
    late = np.abs(np.einsum("...ij,...j->...i", g, v)
                  - np.einsum("...i,...ij,...j->...", v, g, v)[..., None] * v).max(axis=-1)
    stuck = late > _POWER_TOL * np.maximum(np.abs(g).max(axis=(-1, -2)), 1e-300)
    if stuck.any():
        v[stuck] = np.linalg.eigh(g[stuck])[1][..., -1]
    return v


# Power iteration: step limit and convergence threshold on the change of the unit vector.
_POWER_STEPS = 300
_POWER_TOL = 1e-11


def _fit_pca(fast: _Fast, train: np.ndarray, shrinkage: float) -> FoldFit:
    gram, slots, rows = fast.padded()
    keep = (slots >= 0) & train[fast.scenario[np.maximum(slots, 0)]]  # [C, nmax]
    fitted = keep.any(axis=1)
    layers = fast.shape[0]
    mask = np.broadcast_to(keep[:, None, :], (len(keep), layers, keep.shape[1]))
    top = _top_eigvecs(gram, mask)  # [C, L, nmax]
    first = _unit(np.einsum("cln,cnld->cld", top, rows, dtype=np.float64))
    kept_mean = np.einsum("cn,cnld->cld", keep.astype(np.float64), rows, dtype=np.float64)
    sign = np.sign(np.einsum("cld,cld->cl", first, kept_mean))
    out = first * np.where(sign == 0, 1, sign)[..., None]
    out[~fitted] = 0.0
    return fast.pack(out, fitted)


def _probe_solve(fast: _Fast, layer: int, keep: np.ndarray, means: np.ndarray,
                 n: np.ndarray, fitted: np.ndarray, targets: np.ndarray,
                 shrink: float) -> np.ndarray:
    """Shrinkage-LDA weights ``[groups, d]`` at one layer, by the cheaper exact route.

    The regularised covariance is ``alpha * S + beta * I`` with ``S`` the within-concept
    scatter of the training items. Few training items: solve in their span (push-through
    identity, an ``n x n`` system). Otherwise: ``S = A - U^T U`` where ``A`` is the scatter
    of all items (eigendecomposed once per layer) and ``U`` stacks the held-out items and the
    scaled concept means, so Woodbury needs an ``r x r`` system, ``r = held-out + groups``.
    """
    d = fast.shape[1]
    m = means[fitted, layer]
    counts = n[fitted]
    den = max(float(counts.sum()) - len(m), 1.0)
    n_train, n_held = int(keep.sum()), int((~keep).sum())
    if n_train <= n_held + len(m):
        rows = fast.diff[keep, layer].astype(np.float64)
        centred = rows - m[np.searchsorted(np.flatnonzero(fitted), fast.concept[keep])]
        # No within-concept spread at all (one item per concept): the weight is undefined
        # (`extract` fails); read with the mean difference instead.
        trace = float((centred**2).sum()) / den or 1.0 / shrink
        alpha, beta = (1 - shrink) / den, shrink * trace / d
        gram = centred @ centred.T + (beta / alpha) * np.eye(n_train)
        inner = np.linalg.solve(gram, centred @ targets.T)
        return (targets.T - centred.T @ inner).T / beta  # type: ignore[no-any-return]
    vals, vecs = fast.eig(layer)
    u = np.concatenate([fast.diff[~keep, layer].astype(np.float64),
                        m * np.sqrt(counts)[:, None]])
    trace = (float(vals.sum()) - float((u**2).sum())) / den
    alpha, beta = (1 - shrink) / den, shrink * trace / d
    diag = alpha * vals + beta
    u_t = u @ vecs  # [r, d] in the eigenbasis of A
    t_t = targets @ vecs  # [groups, d]
    cap = np.eye(len(u)) / alpha - (u_t / diag) @ u_t.T
    first = t_t / diag
    x = first + (np.linalg.solve(cap, u_t @ first.T).T @ u_t) / diag
    return x @ vecs.T  # type: ignore[no-any-return]


def _fit_probe(fast: _Fast, train: np.ndarray, shrinkage: float) -> FoldFit:
    keep = train[fast.scenario]
    means, fitted = fast.means(fast.diff, train)
    n = np.bincount(fast.concept[keep], minlength=len(fast.concepts)).astype(np.float64)
    total = n.sum()
    layers, d = fast.shape
    out = np.zeros((len(fast.concepts), layers, d))
    for layer in range(layers):
        m = means[fitted, layer]
        # Mean of every other concept's items: (sum of all - own sum) / (total - own count).
        sums = m * n[fitted, None]
        rest = (sums.sum(axis=0, keepdims=True) - sums) / np.maximum(total - n[fitted],
                                                                     1)[:, None]
        out[fitted, layer] = _probe_solve(fast, layer, keep, means, n, fitted, m - rest,
                                          shrinkage)
    return fast.pack(out, fitted)


def _fit_combined(fast: _Fast, train: np.ndarray, shrinkage: float) -> FoldFit:
    variants, story_sums, story_counts, pcs = fast.combined_stats()
    w = fast.onehot(train)
    counts = w.sum(axis=1) + story_counts
    sums = (w @ variants.reshape(len(variants), -1)).reshape(len(w), *fast.shape) + story_sums
    fitted = counts > 0
    if fitted.sum() < 2:
        return fast.pack(np.zeros((len(fitted), *fast.shape)), np.zeros_like(fitted))
    means = sums / np.maximum(counts, 1)[:, None, None]
    total = means[fitted].sum(axis=0)
    out = np.zeros_like(means)
    out[fitted] = means[fitted] - (total - means[fitted]) / (int(fitted.sum()) - 1)
    for layer, top in enumerate(pcs):
        out[:, layer] -= (out[:, layer] @ top.T) @ top
    return fast.pack(out, fitted)


@attrs.frozen(kw_only=True)
class _SubspaceBasis:
    """One concept's rows for ``subspace`` (see `_Fast.subspace_basis`).

    Attributes:
        q: ``[L, d, k]`` orthonormal basis of the rows' span per layer (float32).
        r: ``[L, k, n]`` the rows in that basis.
        sign: ``[n]`` +1 variants and stories, -1 baselines, 0 reference texts.
        owner: ``[n]`` the scenario of a variant or baseline row, -1 otherwise.
        n_stories: stories of the concept; n_reference: reference texts.
    """

    q: np.ndarray = attrs.field(eq=False)
    r: np.ndarray = attrs.field(eq=False)
    sign: np.ndarray = attrs.field(eq=False)
    owner: np.ndarray = attrs.field(eq=False)
    n_stories: int
    n_reference: int


def _fit_subspace(fast: _Fast, train: np.ndarray, shrinkage: float) -> FoldFit:
    """``subspace`` on the training scenarios: `vectors._methods.subspace` in a fixed span.

    The weights are `_methods._subspace_sets`'s: variants ``+1/T`` and baselines ``-1/T``
    of the training scenarios, stories ``+1/T`` and reference texts ``-(stories/T)/refs``,
    with ``T`` = training scenarios + stories. The top eigenvector of ``M_pos - M_base`` lies
    in the span of the rows with non-zero weight, a subspace of the precomputed one.
    """
    layers, d = fast.shape
    out = np.zeros((len(fast.concepts), layers, d))
    fitted = np.zeros(len(fast.concepts), bool)
    for c in range(len(fast.concepts)):
        basis = fast.subspace_basis(c)
        kept = (basis.owner < 0) | train[np.maximum(basis.owner, 0)]
        n_scenarios = int(((basis.owner >= 0) & kept).sum()) // 2
        total = n_scenarios + basis.n_stories
        if total == 0:
            continue
        w = np.where(kept, basis.sign, 0.0) / total
        if basis.n_reference:
            w[basis.sign == 0] = -(basis.n_stories / total) / basis.n_reference
        if not (w > 0).any() or not (w < 0).any():
            raise DegenerateDirectionError(
                f"method 'subspace' needs positives and base texts for "
                f"{fast.concepts[c]!r}; got {int((w > 0).sum())} positives and "
                f"{int((w < 0).sum())} base texts")
        small = (basis.r * w) @ np.swapaxes(basis.r, -1, -2)  # [L, k, k]
        vals, vecs = np.linalg.eigh((small + np.swapaxes(small, -1, -2)) / 2)
        top, first = vals[:, -1], vecs[:, :, -1]  # [L], [L, k]
        empty = np.flatnonzero(top <= 1e-9 * np.maximum(np.abs(vals).max(axis=-1), 1e-300))
        if empty.size:
            raise DegenerateDirectionError(
                f"method 'subspace': {fast.concepts[c]!r} has no direction with more energy "
                f"in its texts than in their base texts at layer indices {empty.tolist()}; use "
                "another method")
        contrast = np.einsum("lkn,n->lk", basis.r, w)
        first *= np.where(np.einsum("lk,lk->l", first, contrast) < 0, -1.0, 1.0)[:, None]
        out[c] = np.einsum("ldk,lk->ld", basis.q, first, dtype=np.float64)
        fitted[c] = True
    return fast.pack(out, fitted)


# Each fast fit takes the probe's shrinkage; the other methods ignore it.
_FAST_FITS: dict[str, Callable[[_Fast, np.ndarray, float], FoldFit]] = {
    "paired": _fit_paired, "paired_centred": _fit_centred, "pca": _fit_pca,
    "probe": _fit_probe, "combined": _fit_combined, "subspace": _fit_subspace,
}


def make_fitter(data: ExtractionInput, corpus: Corpus, method: str, *,
                normalisation: Normalisation = "standardise",
                concepts: Sequence[str] | None = None, fast: bool = True,
                shrinkage: float = _extract.PROBE_SHRINKAGE) -> Fitter:
    """A function from a training mask over ``corpus.scenarios`` to a `FoldFit`.

    Args:
        data: activations of every corpus text.
        corpus: the corpus.
        method: an extraction method.
        normalisation: as in `extract`.
        concepts: the concept axis of every fit (default: the corpus's concepts).
        fast: use the sufficient-statistics fitter when the method has one and the corpus
            has neutral texts (the reference statistics must not come from scenarios).
        shrinkage: the ``probe``'s covariance shrinkage (other methods ignore it).

    Returns:
        The fitter; fits of the same mask are not cached for fast methods (they are cheap).
    """
    names = tuple(concepts) if concepts is not None else corpus.concepts
    if fast and method in _FAST_FITS and corpus.neutral:
        state = _Fast(data, corpus, normalisation, names)
        fit_one = _FAST_FITS[method]
        return lambda train: fit_one(state, np.asarray(train, bool), shrinkage)
    return _generic(data, corpus, method, normalisation, names, shrinkage)


# Probe shrinkages the nested evaluation chooses among (the default first).
SHRINKAGE_GRID = (_extract.PROBE_SHRINKAGE, 0.1, 0.9)


def make_fitters(data: ExtractionInput, corpus: Corpus, method: str, *,
                 normalisation: Normalisation = "standardise",
                 concepts: Sequence[str] | None = None,
                 shrinkages: Sequence[float] = SHRINKAGE_GRID) -> list[Fitter]:
    """One fitter per hyper-parameter setting the nested evaluation chooses among.

    Only ``probe`` has a tuned hyper-parameter (its shrinkage, ``shrinkages``, the first
    being the default); every other method gets one fitter. The fitters share their
    precomputed statistics.
    """
    if method != "probe" or len(shrinkages) <= 1:
        return [make_fitter(data, corpus, method, normalisation=normalisation,
                            concepts=concepts, shrinkage=(shrinkages or
                                                          (_extract.PROBE_SHRINKAGE,))[0])]
    names = tuple(concepts) if concepts is not None else corpus.concepts
    if corpus.neutral:
        state = _Fast(data, corpus, normalisation, names)
        def probe_at(a: float) -> Fitter:
            return lambda train: _fit_probe(state, np.asarray(train, bool), a)

        return [probe_at(a) for a in shrinkages]
    return [_generic(data, corpus, method, normalisation, names, a) for a in shrinkages]
