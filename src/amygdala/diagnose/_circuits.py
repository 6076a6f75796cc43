"""Circuits: the MLP neurons and attention heads that write a concept at a read site.

After Wang et al. 2025 (arXiv 2510.11328). The read site is ``resid_post`` at one
layer ``L``; the *projection* of a text pair is ``reader . (pooled(variant) -
pooled(baseline))`` with the concept's raw-space reader (`SteeringVectorSet.readers`).

- Neurons at every layer ``l <= L`` are scored by their direct contribution:
  (paired mean of the pooled activation) x (W_down column . reader). Pooled
  activations are means over tokens, so this is exact for the direct path.
- Heads at every layer ``l <= L`` are scored by ablation: zero (or mean-replace)
  one head's output and measure the fall of the paired projection at ``L``. One
  batched forward pass tries a different head on every row (`Ablation.rows`), and
  passes stop at the read layer. Their direct-path score is recorded too.

`find_circuit` returns a `Circuit`; `amygdala.diagnose._circuit_experiments` ablates and
enhances it against random controls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, final, get_args

import attrs
import numpy as np
import torch

from amygdala._codec import check_version, from_data, register, to_data
from amygdala._io import read_json, write_json
from amygdala._types import Pooling, Site
from amygdala.backends._hooked import pool
from amygdala.backends._registry import Ablation, Backend
from amygdala.corpus._model import Corpus
from amygdala.errors import (
    CircuitFileError,
    UnknownConceptError,
    UnknownSiteError,
)
from amygdala.store._store import ActivationStore
from amygdala.vectors._files import circuit_file
from amygdala.vectors._set import SteeringVectorSet

__all__ = [
    "FORMAT_VERSION",
    "Circuit",
    "CircuitFileError",
    "HeadMethod",
    "HeadScore",
    "NeuronScore",
    "PairScores",
    "circuit_from_pairs",
    "find_circuit",
    "overlap_matrix",
    "paired_texts",
    "rank",
    "readout",
    "score_pairs",
]

FORMAT_VERSION = 1
HeadMethod = Literal["ablation", "direct"]
HEAD_METHODS: tuple[HeadMethod, ...] = get_args(HeadMethod)
_POOLING = Pooling()
RankBy = Literal["zero", "mean"]


@attrs.frozen(kw_only=True)
class NeuronScore:
    """One MLP neuron and its direct-path contribution to the concept projection."""

    layer: int
    index: int
    score: float


# A neuron is one [layer, index, score] triple in circuit files.
register(NeuronScore, encode=lambda n: [n.layer, n.index, n.score],
         decode=lambda d: NeuronScore(layer=int(d[0]), index=int(d[1]), score=float(d[2])))


@attrs.frozen(kw_only=True)
class HeadScore:
    """One attention head: its ranking score and every measurement behind it.

    Attributes:
        score: the score it was ranked by (see ``Circuit.params["rank_heads_by"]``).
        direct: direct-path contribution (pooled head output . W_O . reader).
        zero: fall of the projection when the head's output is zeroed (None if not measured).
        mean: fall when it is replaced by its mean over the texts (None if not measured).
    """

    layer: int
    index: int
    score: float
    direct: float
    zero: float | None = None
    mean: float | None = None


def _by_layer(items: Iterable[NeuronScore | HeadScore]) -> dict[int, tuple[int, ...]]:
    out: dict[int, list[int]] = {}
    for item in items:
        out.setdefault(item.layer, []).append(item.index)
    return {layer: tuple(sorted(idx)) for layer, idx in sorted(out.items())}


@final
@attrs.frozen(kw_only=True)
class Circuit:
    """The neurons and heads that carry one concept to one read site.

    Attributes:
        concept: the concept.
        layer: the read layer (its ``resid_post``).
        neurons: the highest-scoring neurons, ranked (score descending); as many as
            ``params["keep_neurons"]``.
        heads: every scored head, ranked.
        size_neurons: how many of the top neurons make up "the" circuit (default ``k``).
        size_heads: how many of the top heads make up the circuit.
        clean_projection: mean paired projection at the read site without ablation.
        model_id: the model; ``fingerprint``: its weights' fingerprint.
        params: everything that chose the sets (pooling, head method, texts...).
    """

    # In the order of the file's keys (the codec writes fields in order).
    concept: str
    layer: int
    model_id: str = ""
    fingerprint: str = ""
    size_neurons: int = attrs.field(validator=attrs.validators.ge(0))
    size_heads: int = attrs.field(validator=attrs.validators.ge(0))
    clean_projection: float
    params: Mapping[str, Any] = attrs.field(factory=dict, eq=False, hash=False)
    neurons: tuple[NeuronScore, ...] = attrs.field()
    heads: tuple[HeadScore, ...] = attrs.field()

    def top_neurons(self, k: int | None = None) -> tuple[NeuronScore, ...]:
        """The ``k`` best neurons (default: the circuit's own size)."""
        return self.neurons[: self.size_neurons if k is None else _check_k(k, "k_neurons")]

    def top_heads(self, k: int | None = None) -> tuple[HeadScore, ...]:
        """The ``k`` best heads (default: the circuit's own size)."""
        return self.heads[: self.size_heads if k is None else _check_k(k, "k_heads")]

    def neuron_sets(self, k: int | None = None) -> dict[int, tuple[int, ...]]:
        """``{layer: neuron indices}`` of the top ``k`` neurons."""
        return _by_layer(self.top_neurons(k))

    def head_sets(self, k: int | None = None) -> dict[int, tuple[int, ...]]:
        """``{layer: head indices}`` of the top ``k`` heads."""
        return _by_layer(self.top_heads(k))

    def ablations(
        self, *, mode: Literal["zero", "scale"] = "scale", factor: float,
        k_neurons: int | None = None, k_heads: int | None = None,
    ) -> list[Ablation]:
        """Ablations that zero or scale the circuit's top components (one per layer and kind).

        Args:
            mode: ``scale`` multiplies activations by ``factor``; ``zero`` removes them.
            factor: the scale factor (ignored by ``zero``).
            k_neurons: how many top neurons (default: ``size_neurons``; 0 for none).
            k_heads: how many top heads (default: ``size_heads``; 0 for none).

        >>> c = Circuit(concept="a", layer=2, neurons=(NeuronScore(layer=1, index=4, score=1.0),),
        ...             heads=(), size_neurons=1, size_heads=0, clean_projection=1.0)
        >>> only = c.ablations(factor=2.0)[0]
        >>> only.layer, only.indices, only.factor
        (1, (4,), 2.0)
        """
        if mode not in ("zero", "scale"):
            raise ValueError(f"mode must be 'zero' or 'scale', got {mode!r}; mean ablation "
                             "needs means: build `Ablation(mode='mean', means=...)` yourself")
        if not math.isfinite(factor):
            raise ValueError(f"factor must be finite, got {factor}")
        out = [Ablation(layer=layer, component="neurons", indices=idx, mode=mode,
                        factor=float(factor))
               for layer, idx in self.neuron_sets(k_neurons).items()]
        out += [Ablation(layer=layer, component="heads", indices=idx, mode=mode,
                         factor=float(factor))
                for layer, idx in self.head_sets(k_heads).items()]
        return out

    # ----- files -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (`from_json` inverts it exactly)."""
        return {"format_version": FORMAT_VERSION, **to_data(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Circuit:
        """Rebuild a circuit from `to_json` output.

        Raises:
            CircuitFileError: wrong format version or missing fields.
        """
        check_version(data, readable=(FORMAT_VERSION,), error=CircuitFileError,
                      what="circuit", fix="upgrade amygdala or rerun `amygdala circuits`")
        try:
            return from_data(cls, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise CircuitFileError(f"malformed circuit: {exc}") from exc

    def save(self, directory: Path | str, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``<directory>/<concept>.json`` atomically; return its path.

        Args:
            directory: where circuit files live (a run's ``circuits/``).
            extra: top-level fields to add (e.g. ``{"experiments": result.to_json()}``).
        """
        target = Path(directory) / circuit_file(self.concept)
        return write_json(target, {**self.to_json(), **(dict(extra) if extra else {})},
                          indent=1)

    @classmethod
    def load(cls, path: Path | str, concept: str | None = None) -> Circuit:
        """Read a circuit written by `save` (extra fields are ignored).

        Args:
            path: the circuit file, or with ``concept`` the directory `save` wrote to.
            concept: read ``<path>/<concept>.json``.

        Raises:
            CircuitFileError: the file is missing or malformed, or ``path`` is a
                directory and no ``concept`` is given.
        """
        source = Path(path) if concept is None else Path(path) / circuit_file(concept)
        if source.is_dir():
            raise CircuitFileError(f"{source} is a directory; pass the concept, e.g. "
                                   f"Circuit.load({str(source)!r}, concept=\"afraid\")")
        data = read_json(source, error=CircuitFileError,
                         hint="create it with `amygdala circuits`")
        return cls.from_json(data)


def _check_k(k: int, name: str) -> int:
    if k < 0:
        raise ValueError(f"{name} must be >= 0, got {k}")
    return k


def overlap_matrix(
    circuits: Sequence[Circuit], *, component: Literal["neurons", "heads"] = "neurons",
    k: int | None = None,
) -> np.ndarray:
    """``[C, C]`` Jaccard overlap of the circuits' top-``k`` component sets.

    Two empty sets overlap 1.0 by convention (the diagonal stays 1).

    >>> a = Circuit(concept="a", layer=1, neurons=tuple(NeuronScore(layer=0, index=i, score=1.0)
    ...             for i in (1, 2)), heads=(), size_neurons=2, size_heads=0,
    ...             clean_projection=1.0)
    >>> b = attrs.evolve(a, concept="b", neurons=tuple(NeuronScore(layer=0, index=i, score=1.0)
    ...                  for i in (2, 3)))
    >>> overlap_matrix([a, b]).round(3).tolist()
    [[1.0, 0.333], [0.333, 1.0]]
    """
    sets = [{(x.layer, x.index)
             for x in (c.top_neurons(k) if component == "neurons" else c.top_heads(k))}
            for c in circuits]
    out = np.ones((len(sets), len(sets)))
    for i, a in enumerate(sets):
        for j, b in enumerate(sets):
            union = len(a | b)
            out[i, j] = len(a & b) / union if union else 1.0
    return out


# ----- forward passes ------------------------------------------------------------------

def readout(
    backend: Backend, texts: Sequence[str], configs: Sequence[Sequence[Ablation]],
    jobs: Sequence[tuple[int, int]], *, layer: int, pooling: Pooling = _POOLING,
    batch_size: int = 16,
) -> np.ndarray:
    """Pooled ``resid_post`` at ``layer`` for each job (text index, config index).

    Jobs are packed into batches of ``batch_size`` rows whatever their config
    (the backend's `Backend.iter_batches`, length-sorted): each config's ablations
    are restricted (`Ablation.rows`) to the rows that use it, so one forward pass
    can try many ablations. Passes stop at ``layer`` (`Backend.forward`'s ``stop_at``).

    Returns:
        ``[len(jobs), d_model]`` float64.

    Raises:
        UnknownSiteError: ``layer`` is outside the model.
    """
    site = Site(layer=layer)
    backend.dims.check(site)
    out = np.empty((len(jobs), backend.dims.d_model))
    job_texts = [texts[t] for t, _ in jobs]
    for chunk, input_ids, mask in backend.iter_batches(job_texts, batch_size):
        rows: dict[int, list[int]] = {}
        for row, j in enumerate(chunk):
            rows.setdefault(jobs[j][1], []).append(row)
        ablations = [attrs.evolve(a, rows=tuple(r)) for c, r in rows.items() for a in configs[c]]
        with backend.ablating(ablations):
            acts = backend.forward(input_ids, mask, stop_at=site)
        out[chunk] = pool(acts.float().cpu(), mask, pooling).double().numpy()
    return out


@attrs.frozen(kw_only=True)
class _Pairs:
    texts: tuple[str, ...]
    variant: np.ndarray  # index into texts, per pair
    baseline: np.ndarray


def _index_pairs(pairs: Sequence[tuple[str, str]]) -> _Pairs:
    texts: dict[str, int] = {}
    for v, b in pairs:
        texts.setdefault(v, len(texts))
        texts.setdefault(b, len(texts))
    return _Pairs(texts=tuple(texts), variant=np.array([texts[v] for v, _ in pairs]),
                  baseline=np.array([texts[b] for _, b in pairs]))


def _pooled(backend: Backend, texts: Sequence[str], sites: Sequence[Site], pooling: Pooling,
            store: ActivationStore | None, batch_size: int) -> dict[Site, np.ndarray]:
    if store is not None:
        store.ensure(backend, texts, sites, batch_size=batch_size)
        acts = store.load(texts, sites)
        return {s: acts[s].astype(np.float64) for s in sites}
    captured = backend.capture(texts, sites, pooling, batch_size=batch_size)
    return {s: v.double().numpy() for s, v in captured.items()}


def paired_texts(corpus: Corpus, concept: str, *,
                 max_scenarios: int | None = None) -> list[tuple[str, str]]:
    """(variant, baseline) texts of ``concept`` in corpus order, first ``max_scenarios``.

    Raises:
        UnknownConceptError: no scenario carries the concept.
    """
    scenarios = corpus.scenarios_with(concept)
    if not scenarios:
        raise UnknownConceptError(
            f"no scenario carries {concept!r}; paired concepts: "
            f"{', '.join(corpus.paired_concepts)}")
    chosen = scenarios if max_scenarios is None else scenarios[:max_scenarios]
    return [(s.variants[concept].text, s.baseline.text) for s in chosen]


@attrs.frozen(kw_only=True)
class PairScores:
    """Per-pair attribution of one concept at one read layer, before any ranking.

    Keeping the scores per pair lets a bootstrap re-rank components on resampled
    pairs without another forward pass (`rank`), which puts the selection inside
    the bootstrap (`amygdala.diagnose._circuit_experiments.crossfit_experiments`).

    Attributes:
        layer: the read layer.
        neuron_layers: layers whose neurons were scored; ``head_layers``: heads.
        neurons: ``[pairs, len(neuron_layers), d_mlp]`` direct contributions.
        heads_direct: ``[pairs, len(head_layers), n_heads]`` direct-path scores.
        heads_zero: ``[pairs, len(head_layers), n_heads]`` fall when a head is zeroed
            (None unless heads were scored by ablation); ``heads_mean``: mean-replaced.
        clean: ``[pairs]`` paired projection without ablation.
    """

    layer: int
    neuron_layers: tuple[int, ...]
    head_layers: tuple[int, ...]
    neurons: np.ndarray = attrs.field(eq=False)
    heads_direct: np.ndarray = attrs.field(eq=False)
    heads_zero: np.ndarray | None = attrs.field(eq=False, default=None)
    heads_mean: np.ndarray | None = attrs.field(eq=False, default=None)
    clean: np.ndarray = attrs.field(eq=False)

    @property
    def n_pairs(self) -> int:
        """Number of text pairs scored."""
        return int(self.clean.shape[0])


def _weighted_mean(x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return x.mean(0)  # type: ignore[no-any-return]
    w = np.asarray(weights, dtype=np.float64)
    return np.tensordot(w, x, axes=1) / w.sum()  # type: ignore[no-any-return]


def rank(
    scores: PairScores, weights: np.ndarray | None = None, *, rank_heads_by: RankBy = "mean",
    keep_neurons: int = 1000,
) -> tuple[list[NeuronScore], list[HeadScore], float]:
    """Rank neurons and heads by their (weighted) mean score over pairs.

    Args:
        scores: from `score_pairs`.
        weights: ``[pairs]`` non-negative weights (bootstrap counts); None for equal.
        rank_heads_by: ``mean`` or ``zero`` ablation (ignored without ablation scores:
            heads are then ranked by their direct path).
        keep_neurons: how many neurons to keep.

    Returns:
        (neurons ranked, heads ranked, mean clean projection).

    Raises:
        ValueError: weights of the wrong shape or all zero.
    """
    if weights is not None and (np.shape(weights) != (scores.n_pairs,)
                                or float(np.sum(weights)) <= 0):
        raise ValueError(f"weights must be {scores.n_pairs} non-negative numbers with a "
                         f"positive sum, got {weights!r}")
    neuron_mean = _weighted_mean(scores.neurons, weights)  # [layers, d_mlp]
    neurons: list[NeuronScore] = []
    for li, layer in enumerate(scores.neuron_layers):
        row = neuron_mean[li]
        top = np.argsort(-row, kind="stable")[:keep_neurons]
        neurons += [NeuronScore(layer=layer, index=int(i), score=float(row[i])) for i in top]
    neurons.sort(key=lambda n: -n.score)
    neurons = neurons[:keep_neurons]
    direct = _weighted_mean(scores.heads_direct, weights)
    zero = None if scores.heads_zero is None else _weighted_mean(scores.heads_zero, weights)
    mean = None if scores.heads_mean is None else _weighted_mean(scores.heads_mean, weights)
    by = direct
    if zero is not None and mean is not None:
        by = zero if rank_heads_by == "zero" else mean
    heads = [HeadScore(layer=layer, index=h, score=float(by[li, h]),
                       direct=float(direct[li, h]),
                       zero=None if zero is None else float(zero[li, h]),
                       mean=None if mean is None else float(mean[li, h]))
             for li, layer in enumerate(scores.head_layers) for h in range(direct.shape[1])]
    heads.sort(key=lambda h: -h.score)
    return neurons, heads, float(_weighted_mean(scores.clean, weights))


def score_pairs(
    backend: Backend, *, pairs: Sequence[tuple[str, str]], reader: np.ndarray, layer: int,
    head_method: HeadMethod = "ablation", head_layers: Sequence[int] | None = None,
    pooling: Pooling = _POOLING, store: ActivationStore | None = None, batch_size: int = 16,
) -> PairScores:
    """Score every neuron and head of layers ``<= layer`` on each text pair.

    Args:
        backend: the model.
        pairs: (variant text, baseline text) per scenario.
        reader: ``[d_model]`` raw-space reading weights at ``layer``.
        layer: the read layer (its ``resid_post``).
        head_method: ``ablation`` (zero and mean, one forward pass per head and text,
            batched) or ``direct`` (direct path only, no extra passes).
        head_layers: layers whose heads are scored (default: all ``<= layer``).
        pooling: token pooling (the store's, when a store is given).
        store: activation store for the neuron/head captures.
        batch_size: rows per forward pass.

    Returns:
        `PairScores`.

    Raises:
        UnknownSiteError: ``layer`` or a head layer is outside the model.
        ValueError: bad method, reader shape or no pairs.
    """
    dims = backend.dims
    dims.check(Site(layer=layer))
    if head_method not in HEAD_METHODS:
        raise ValueError(f"head_method must be one of {HEAD_METHODS}, got {head_method!r}")
    if not pairs:
        raise ValueError("no text pairs; a circuit needs at least one")
    u = np.asarray(reader, dtype=np.float64)
    if u.shape != (dims.d_model,):
        raise ValueError(f"reader must have shape ({dims.d_model},), got {u.shape}")
    layers = list(range(layer + 1))
    hlayers = layers if head_layers is None else sorted(set(head_layers))
    bad = [x for x in hlayers if not 0 <= x <= layer]
    if bad:
        raise UnknownSiteError(f"head layers {bad} are not in 0..{layer} (the read layer)")
    if store is not None:
        pooling = store.pooling
    idx = _index_pairs(pairs)
    neuron_sites = [Site(layer=x, point="mlp_neurons") for x in layers]
    head_sites = [Site(layer=x, point="attn_heads") for x in hlayers]
    acts = _pooled(backend, idx.texts, [Site(layer=layer), *neuron_sites, *head_sites],
                   pooling, store, batch_size)
    clean = acts[Site(layer=layer)] @ u
    neurons = np.stack([
        (acts[s][idx.variant] - acts[s][idx.baseline])
        * (backend.mlp_out_weights(s.layer).double().numpy() @ u)[None]
        for s in neuron_sites], axis=1)
    direct = []
    means: dict[int, torch.Tensor] = {}
    for site in head_sites:
        z = acts[site].reshape(len(idx.texts), dims.n_heads, dims.d_head)
        zdiff = z[idx.variant] - z[idx.baseline]  # [pairs, heads, d_head]
        w_u = backend.head_out_weights(site.layer).double().numpy() @ u  # [heads, d_head]
        direct.append((zdiff * w_u[None]).sum(-1))
        means[site.layer] = torch.from_numpy(acts[site].mean(0)).float()
    zero = mean = None
    if head_method == "ablation":
        sweep = _head_sweep(backend, idx, u, [(x, h) for x in hlayers for h in range(dims.n_heads)],
                            means, layer=layer, pooling=pooling, batch_size=batch_size)
        zero, mean = (np.array([[sweep[mode][(x, h)] for h in range(dims.n_heads)]
                                for x in hlayers]).transpose(2, 0, 1) for mode in ("zero", "mean"))
    return PairScores(layer=layer, neuron_layers=tuple(layers), head_layers=tuple(hlayers),
                      neurons=neurons, heads_direct=np.stack(direct, axis=1),
                      heads_zero=zero, heads_mean=mean,
                      clean=clean[idx.variant] - clean[idx.baseline])


def circuit_from_pairs(
    backend: Backend, *, concept: str, pairs: Sequence[tuple[str, str]], reader: np.ndarray,
    layer: int, head_method: HeadMethod = "ablation", rank_heads_by: RankBy = "mean",
    head_layers: Sequence[int] | None = None, size_neurons: int = 50, size_heads: int = 5,
    keep_neurons: int = 1000, pooling: Pooling = _POOLING, store: ActivationStore | None = None,
    batch_size: int = 16,
) -> Circuit:
    """Score neurons and heads of layers ``<= layer`` for one concept's text pairs.

    Args:
        backend: the model.
        concept: the concept's name (recorded).
        pairs: (variant text, baseline text) per scenario.
        reader: ``[d_model]`` raw-space reading weights at ``layer``.
        layer: the read layer (its ``resid_post``).
        head_method: ``ablation`` measures each head by ablation (zero and mean; one
            forward pass per head and text, batched); ``direct`` scores the direct path
            only (no extra passes; misses effects through later layers).
        rank_heads_by: which ablation ranks heads: ``mean`` (default) or ``zero``.
            Zeroing some early heads (layer 1 of SmolLM2) wrecks every text, not the
            concept: they top a zero-ablation ranking although mean-replacing them
            does nothing and scaling them up lowers the projection (docs/circuits.md).
        head_layers: layers whose heads are scored (default: all ``<= layer``).
        size_neurons: neurons in the circuit proper; ``size_heads``: heads.
        keep_neurons: how many ranked neurons the circuit keeps (for larger k).
        pooling: token pooling (the store's, when a store is given).
        store: activation store for the neuron/head captures (reruns are free).
        batch_size: rows per forward pass.

    Returns:
        A `Circuit`.

    Raises:
        UnknownSiteError: ``layer`` or a head layer is outside the model.
        ValueError: bad method, reader shape or no pairs.
    """
    start = time.perf_counter()
    if rank_heads_by not in ("zero", "mean"):
        raise ValueError(f"rank_heads_by must be 'zero' or 'mean', got {rank_heads_by!r}")
    if not pairs:
        raise ValueError(f"no text pairs for {concept!r}; the circuit needs at least one")
    scores = score_pairs(backend, pairs=pairs, reader=reader, layer=layer,
                         head_method=head_method, head_layers=head_layers, pooling=pooling,
                         store=store, batch_size=batch_size)
    neurons, heads, clean_projection = rank(scores, rank_heads_by=rank_heads_by,
                                            keep_neurons=keep_neurons)
    measured = scores.heads_zero is not None
    params = {
        "pooling": (store.pooling if store is not None else pooling).key,
        "head_method": head_method, "rank_heads_by": rank_heads_by if measured else "direct",
        "head_layers": list(scores.head_layers), "neuron_layers": list(scores.neuron_layers),
        "keep_neurons": keep_neurons, "n_pairs": len(pairs),
        "neuron_score": "paired pooled activation x (W_down . reader)",
        "seconds": round(time.perf_counter() - start, 2),
    }
    return Circuit(
        concept=concept, layer=layer, neurons=tuple(neurons), heads=tuple(heads),
        size_neurons=min(size_neurons, len(neurons)), size_heads=min(size_heads, len(heads)),
        clean_projection=clean_projection,
        model_id=backend.model_id, fingerprint=backend.fingerprint, params=params,
    )


def paired_effect(projections: np.ndarray, idx_variant: np.ndarray,
                  idx_baseline: np.ndarray) -> np.ndarray:
    """Per-pair projection ``[..., pairs]`` from per-text projections ``[..., texts]``."""
    return projections[..., idx_variant] - projections[..., idx_baseline]  # type: ignore[no-any-return]


def _head_sweep(
    backend: Backend, idx: _Pairs, u: np.ndarray, heads: list[tuple[int, int]],
    means: dict[int, torch.Tensor], *, layer: int, pooling: Pooling, batch_size: int,
) -> dict[str, dict[tuple[int, int], np.ndarray]]:
    """Per-pair fall of the paired projection when each head alone is zeroed / mean-replaced."""
    configs: list[list[Ablation]] = [[]]
    keys: list[tuple[str, tuple[int, int]]] = []
    for mode in ("zero", "mean"):
        for lh in heads:
            configs.append([Ablation(layer=lh[0], component="heads", indices=(lh[1],),
                                     mode=mode, means=means[lh[0]] if mode == "mean" else None)])
            keys.append((mode, lh))
    jobs = [(t, c) for c in range(len(configs)) for t in range(len(idx.texts))]
    pooled = readout(backend, idx.texts, configs, jobs, layer=layer, pooling=pooling,
                     batch_size=batch_size)
    proj = (pooled @ u).reshape(len(configs), len(idx.texts))
    paired = paired_effect(proj, idx.variant, idx.baseline)  # [configs, pairs]
    out: dict[str, dict[tuple[int, int], np.ndarray]] = {"zero": {}, "mean": {}}
    for (mode, lh), value in zip(keys, paired[1:], strict=True):
        out[mode][lh] = paired[0] - value
    return out


def find_circuit(
    backend: Backend, vectors: SteeringVectorSet, corpus: Corpus, concept: str, *,
    layer: int, max_scenarios: int | None = None, store: ActivationStore | None = None,
    **options: Any,
) -> Circuit:
    """Find the circuit of ``concept`` at ``resid_post`` of ``layer`` (see `circuit_from_pairs`).

    Args:
        backend: the model the vectors were trained on.
        vectors: gives the reader (`SteeringVectorSet.readers`).
        corpus: gives the paired texts of the concept.
        concept: the concept.
        layer: the read layer; must be one of ``vectors.layers``.
        max_scenarios: use only the first scenarios (fewer forward passes).
        store: activation store (``session.store``) so reruns capture nothing.
        **options: passed to `circuit_from_pairs` (head_method, size_neurons, ...).

    Raises:
        UnknownConceptError, UnknownSiteError: concept or layer not in the vectors.
    """
    reader = vectors.readers(layer)[vectors.concept_index(concept)]
    pairs = paired_texts(corpus, concept, max_scenarios=max_scenarios)
    circuit = circuit_from_pairs(backend, concept=concept, pairs=pairs, reader=reader,
                                 layer=layer, store=store, **options)
    scenarios = [s.slug for s in corpus.scenarios_with(concept)][: len(pairs)]
    return attrs.evolve(circuit, params={**circuit.params, "scenarios": scenarios,
                                         "max_scenarios": max_scenarios,
                                         "vectors_method": vectors.method})
