"""Quality diagnostics of steering directions: how clean, stable and distinct each one is.

The core, `compute_quality`, is pure numpy on plain inputs (vectors, activations,
corpus, weights), so it can be tested on synthetic data with a known answer;
`build_quality_report` fetches the weights and per-head activations from a model
session (store-backed: a rerun captures nothing). Everything is measured in the
vectors' own normalised space: differences and weight columns are divided by
``vectors.std`` and directions compared as ``unit(direction / std)``. Field
meanings, thresholds and their reasoning: ``docs/quality.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import attrs
import numpy as np

from amygdala._codec import check_version, from_data, from_fields, register, to_data, to_fields
from amygdala._io import read_json, write_json
from amygdala.corpus._model import Corpus, Scenario
from amygdala.diagnose._quality_render import render_report
from amygdala.errors import QualityFileError, UnknownConceptError, UnknownSiteError
from amygdala.vectors._extract import ExtractionInput, extract, paired_differences, views
from amygdala.vectors._files import QUALITY_FILE
from amygdala.vectors._methods import SubspaceSpectrum, subspace_spectrum
from amygdala.vectors._run import best_layer
from amygdala.vectors._set import SteeringVectorSet

if TYPE_CHECKING:
    from amygdala.diagnose._evaluate import Evaluation
    from amygdala.vectors._train import Session

__all__ = [
    "CLEAN_FIRST_PC",
    "CONTAMINATED_COSINE",
    "FRAGMENTED_FIRST_PC",
    "LABELS",
    "MIN_STORIES",
    "QUALITY_FILE",
    "REDUNDANT_R2",
    "SCHEMA_VERSION",
    "SINGLE_NEURON_COSINE",
    "UNSTABLE_COSINE",
    "ConceptQuality",
    "LayerQuality",
    "QualityFileError",
    "QualityReport",
    "Thresholds",
    "build_quality_report",
    "compute_quality",
]

SCHEMA_VERSION = 2
# Schema 1 files (no subspace fields) still load; their subspace fields are None.
READABLE_SCHEMAS = (1, 2)

# Thresholds (reasoning in docs/quality.md). First-PC share of the positives'
# variance: above 0.7 one direction explains most of what the stories do; below
# 0.4 no single direction does (the seed's cut-offs, kept for comparability).
CLEAN_FIRST_PC = 0.7
FRAGMENTED_FIRST_PC = 0.4
# |cosine| with one W_down column: 0.6 is far above what chance gives (a random
# direction's best match among 1536 columns in 576 dimensions is about 0.16).
SINGLE_NEURON_COSINE = 0.6
# Cosine with the nearest other concept: at 0.8 two directions share 64% of
# their variance (cos^2); a readout cannot tell them apart reliably.
CONTAMINATED_COSINE = 0.8
# R^2 of the direction regressed on all the others: above 0.9 it adds little
# that a combination of other concepts does not already carry.
REDUNDANT_R2 = 0.9
# Split-half cosine below 0.5: halves of the data disagree on the direction
# more than they agree (cos 0.5 = 60 degrees).
UNSTABLE_COSINE = 0.5
# Fewer positives than this: even random vectors give a first-PC share of 1/n
# (0.25 at n=4, near the fragmented cut-off) and split halves hold one or two.
MIN_STORIES = 5
# Ridge penalty of the redundancy regression, relative to unit-norm directions:
# keeps R^2 finite when other concepts are collinear.
REDUNDANCY_RIDGE = 0.1
N_SPLITS = 4
N_OUTLIERS = 2
N_NEAREST = 5

Label = Literal["clean", "fragmented", "single_neuron", "contaminated", "redundant",
                "unstable", "too_few_stories"]
LABELS: tuple[Label, ...] = get_args(Label)
# How bad each label is, for ordering the summary (worst first); single_neuron
# is a finding, not a fault, and clean counts against badness.
SEVERITY: Mapping[str, int] = {"fragmented": 4, "unstable": 4, "too_few_stories": 3,
                               "contaminated": 3, "redundant": 2, "single_neuron": 1,
                               "clean": -1}


def _r(x: Any) -> float:
    return round(float(x), 6)


def _opt(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else _r(x)


@attrs.frozen(kw_only=True)
class Thresholds:
    """The cut-offs the triage labels use (defaults: the module constants)."""

    clean_first_pc: float = CLEAN_FIRST_PC
    fragmented_first_pc: float = FRAGMENTED_FIRST_PC
    single_neuron_cosine: float = SINGLE_NEURON_COSINE
    contaminated_cosine: float = CONTAMINATED_COSINE
    redundant_r2: float = REDUNDANT_R2
    unstable_cosine: float = UNSTABLE_COSINE
    min_stories: int = MIN_STORIES


@attrs.frozen(kw_only=True)
class LayerQuality:
    """One concept's diagnostics at one layer (field meanings: ``docs/quality.md``)."""

    layer: int
    first_pc_variance_ratio: float
    effective_dimension: float
    alignment_mean: float
    alignment_min: float
    alignments: tuple[float, ...]
    outliers: tuple[tuple[str, float], ...]
    nearest: tuple[tuple[str, float], ...]
    neuron_index: int | None
    neuron_cosine: float | None
    head_index: int | None
    head_share: float | None
    split_half_cosine: float | None
    redundancy_r2: float | None
    subspace_eigvals: tuple[float, ...] | None = None
    k_signal_at_90pct: int | None = None
    effective_dim_signal: float | None = None
    effective_dim_full: float | None = None
    # The seed's metric: the same share after centring the positives on their own mean
    # (``first_pc_variance_ratio`` is the uncentred second-moment share; see docs/quality.md).
    first_pc_variance_ratio_centred: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``alignment``, ``neuron`` and ``head`` grouped)."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LayerQuality:
        """Inverse of `to_json`."""
        return from_data(cls, d)


def _layer_data(q: LayerQuality) -> dict[str, Any]:
    f = to_fields(q)
    return {
        "layer": f["layer"], "first_pc_variance_ratio": f["first_pc_variance_ratio"],
        "first_pc_variance_ratio_centred": f["first_pc_variance_ratio_centred"],
        "effective_dimension": f["effective_dimension"],
        "alignment": {"mean": f["alignment_mean"], "min": f["alignment_min"],
                      "values": f["alignments"]},
        "outliers": [{"id": i, "cosine": c} for i, c in f["outliers"]],
        "nearest": [{"concept": n, "cosine": c} for n, c in f["nearest"]],
        "neuron": None if q.neuron_index is None else
        {"index": f["neuron_index"], "cosine": f["neuron_cosine"]},
        "head": None if q.head_index is None else
        {"index": f["head_index"], "share": f["head_share"]},
        **{k: f[k] for k in ("split_half_cosine", "redundancy_r2", "subspace_eigvals",
                             "k_signal_at_90pct", "effective_dim_signal",
                             "effective_dim_full")},
    }


def _layer_from_data(d: Mapping[str, Any]) -> LayerQuality:
    neuron, head, alignment = d["neuron"] or {}, d["head"] or {}, d["alignment"]
    return from_fields(LayerQuality, {
        **d, "alignment_mean": alignment["mean"], "alignment_min": alignment["min"],
        "alignments": alignment["values"],
        "outliers": [(o["id"], o["cosine"]) for o in d["outliers"]],
        "nearest": [(n["concept"], n["cosine"]) for n in d["nearest"]],
        "neuron_index": neuron.get("index"), "neuron_cosine": neuron.get("cosine"),
        "head_index": head.get("index"), "head_share": head.get("share")})


# quality.json groups a layer's fields (alignment, neuron, head) and names the pairs: a
# custom format, used wherever a LayerQuality is nested.
register(LayerQuality, encode=_layer_data, decode=_layer_from_data)


@attrs.frozen(kw_only=True)
class ConceptQuality:
    """One concept: counts, triage at the best layer, and diagnostics at every layer."""

    concept: str
    n_scenarios: int
    n_stories: int
    positives: tuple[str, ...]
    loso_accuracy: float | None
    labels: tuple[str, ...]
    reasons: tuple[str, ...]
    layers: tuple[LayerQuality, ...]

    @property
    def severity(self) -> int:
        """Sum of the labels' `SEVERITY` (higher is worse)."""
        return sum(SEVERITY.get(label, 0) for label in self.labels)

    def at(self, layer: int) -> LayerQuality:
        """The diagnostics at ``layer``."""
        for entry in self.layers:
            if entry.layer == layer:
                return entry
        raise UnknownSiteError(f"no diagnostics at layer {layer} for {self.concept!r}; have "
                               f"{[e.layer for e in self.layers]}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ConceptQuality:
        """Inverse of `to_json`."""
        return from_data(cls, d)


@attrs.frozen(kw_only=True)
class QualityReport:
    """Per-concept diagnostics of a `SteeringVectorSet`, with a triage at the best layer.

    Attributes:
        method, normalisation: those of the vectors.
        model_id, corpus_hash: provenance (empty when unknown).
        layers: the layers diagnosed.
        best_layer: the layer the labels, nearest concepts and heatmap refer to.
        best_layer_source: ``evaluation`` (the evaluation's recommended layer) or ``middle``
            (the middle layer; the run's rule, `amygdala.vectors.best_layer`). Older
            reports may say ``split_half`` or ``alignment``.
        loso_layer: the layer ``loso_accuracy`` was measured at (None without evaluation).
        seed, n_splits: of the split-half refits.
        thresholds: the cut-offs used.
        concepts: per-concept results, in the vectors' order.
        cosine_matrix: concept x concept cosines at ``best_layer`` (normalised space).
    """

    method: str
    normalisation: str
    model_id: str
    corpus_hash: str
    layers: tuple[int, ...]
    best_layer: int
    best_layer_source: str
    loso_layer: int | None
    seed: int
    n_splits: int
    thresholds: Thresholds
    concepts: tuple[ConceptQuality, ...]
    cosine_matrix: tuple[tuple[float, ...], ...]

    def concept(self, name: str) -> ConceptQuality:
        """The entry of concept ``name``."""
        for entry in self.concepts:
            if entry.concept == name:
                return entry
        raise UnknownConceptError(f"no concept {name!r} in this report; it has: "
                                  f"{', '.join(c.concept for c in self.concepts)}")

    def worst_first(self) -> list[ConceptQuality]:
        """Concepts ordered worst first: severity, then first-PC share at the best layer."""
        return sorted(self.concepts, key=lambda c: (
            -c.severity, c.at(self.best_layer).first_pc_variance_ratio, c.concept))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``quality.json`` schema, ``docs/quality.md``)."""
        data: dict[str, Any] = to_data(self)
        tail = {key: data.pop(key) for key in ("cosine_matrix", "concepts")}
        return {"schema_version": SCHEMA_VERSION, **data,
                "concept_names": [c.concept for c in self.concepts], **tail}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> QualityReport:
        """Inverse of `to_json`.

        Raises:
            QualityFileError: another schema version, or a field is missing.
        """
        check_version(d, key="schema_version", readable=READABLE_SCHEMAS, error=QualityFileError,
                      what="quality report", fix="rerun `amygdala report RUN_DIR --recompute`")
        try:
            return from_data(cls, d)
        except (KeyError, TypeError, ValueError) as exc:
            raise QualityFileError(f"quality report lacks or mistypes field {exc}; "
                                   "rerun `amygdala report RUN_DIR --recompute`") from exc

    def save(self, run_dir: Path | str) -> Path:
        """Write ``run_dir/quality.json`` atomically; return its path."""
        path = Path(run_dir) / QUALITY_FILE
        return write_json(path, self.to_json(), compact=True)

    @classmethod
    def load(cls, run_dir: Path | str) -> QualityReport:
        """Read ``run_dir/quality.json`` (or a path to the file itself).

        Raises:
            QualityFileError: the file is missing, unreadable or of another schema.
        """
        path = Path(run_dir)
        path = path / QUALITY_FILE if path.is_dir() else path
        data = read_json(path, error=QualityFileError, hint=(
            "create it with `amygdala train ... --quality-report` or `amygdala report "
            "RUN_DIR --recompute`"))
        return cls.from_json(data)

    def render(self) -> str:
        """The triage table, worst concepts first, one reason line per label."""
        return render_report(self)


# ----- computation ------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)  # type: ignore[no-any-return]


def _positives(vectors: SteeringVectorSet, data: ExtractionInput, corpus: Corpus,
               concept: str) -> tuple[list[str], np.ndarray]:
    """Ids and ``[n, layers, d]`` raw positives of ``concept`` (see module docs)."""
    if vectors.method == "unpaired":
        stories = corpus.stories_for(concept)
        grand = data.rows([t.id for t in corpus.stories]).mean(axis=0)
        return [t.id for t in stories], data.rows([t.id for t in stories]) - grand
    scenarios = corpus.scenarios_with(concept)
    return [s.variants[concept].id for s in scenarios], paired_differences(data, corpus, concept)


def _balanced_halves(scenarios: Sequence[Scenario], rng: np.random.Generator
                     ) -> tuple[list[Scenario], list[Scenario]]:
    """Split scenarios in two at random, keeping each concept's count close to even."""
    halves: tuple[list[Scenario], list[Scenario]] = ([], [])
    balance: dict[str, int] = {}
    for i in rng.permutation(len(scenarios)):
        scenario = scenarios[int(i)]
        lean = sum(balance.get(c, 0) for c in scenario.concepts)
        side = int(rng.integers(2)) if lean == 0 else int(lean > 0)
        halves[side].append(scenario)
        for c in scenario.concepts:
            balance[c] = balance.get(c, 0) + (1 if side == 0 else -1)
    return halves


def _split_half(vectors: SteeringVectorSet, data: ExtractionInput, corpus: Corpus,
                std: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """``[concepts, layers]`` mean cosine between directions fitted on halves (NaN: no data)."""
    rng = np.random.default_rng(seed)
    method = vectors.method
    total = np.zeros((len(vectors.concepts), len(vectors.layers)))
    count = np.zeros(len(vectors.concepts))
    for _ in range(n_splits):
        if method == "unpaired":
            parts: tuple[list[Any], list[Any]] = ([], [])
            for c in sorted({t.concept for t in corpus.stories if t.concept}):
                stories = corpus.stories_for(c)
                order = rng.permutation(len(stories))
                half = (len(stories) + int(rng.integers(2))) // 2
                parts[0].extend(stories[int(i)] for i in order[:half])
                parts[1].extend(stories[int(i)] for i in order[half:])
            pair = [attrs.evolve(corpus, stories=p) for p in parts]
            have = [{t.concept for t in c.stories} for c in pair]
        else:
            pair = [attrs.evolve(corpus, scenarios=h) for h in _balanced_halves(corpus.scenarios,
                                                                                rng)]
            have = [set(c.paired_concepts) for c in pair]
        both = [c for c in vectors.concepts if c in have[0] and c in have[1]]
        if not both:
            continue
        fits = [extract(data, half, method=method,  # type: ignore[arg-type]
                        normalisation=vectors.normalisation,  # type: ignore[arg-type]
                        concepts=both).directions for half in pair]
        a, b = (_unit(f / std[None]) for f in fits)
        idx = [vectors.concepts.index(c) for c in both]
        total[idx] += np.einsum("cld,cld->cl", a, b)
        count[idx] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count[:, None]


def _redundancy(u: np.ndarray) -> np.ndarray:
    """``[concepts, layers]`` ridge R^2 of each direction on all the others."""
    c = u.shape[0]
    if c < 2:
        return np.full((c, u.shape[1]), np.nan)
    gram = np.einsum("cld,kld->lck", u, u)  # [L, C, C]
    out = np.empty((c, u.shape[1]))
    for i in range(c):
        rest = [k for k in range(c) if k != i]
        a = gram[:, rest][:, :, rest] + REDUNDANCY_RIDGE * np.eye(c - 1)
        g = gram[:, rest, i]  # [L, C-1]
        beta = np.linalg.solve(a, g[..., None])[..., 0]
        fitted = np.einsum("lk,lkj,lj->l", beta, gram[:, rest][:, :, rest], beta)
        out[i] = 2 * np.einsum("lk,lk->l", beta, g) - fitted
    return out


def _neurons(u: np.ndarray, std: np.ndarray, layers: Sequence[int],
             w_down: Mapping[int, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """``[concepts, layers]`` best W_down column index and its signed cosine (-1/NaN: none)."""
    index = np.full(u.shape[:2], -1)
    cosine = np.full(u.shape[:2], np.nan)
    if w_down is None:
        return index, cosine
    for li, layer in enumerate(layers):
        if layer not in w_down:
            continue
        columns = _unit(np.asarray(w_down[layer], dtype=np.float32)
                        / std[li].astype(np.float32))  # [d_mlp, d]
        cos = (columns @ u[:, li].T.astype(np.float32)).astype(np.float64)  # [d_mlp, C]
        best = np.abs(cos).argmax(axis=0)
        index[:, li] = best
        cosine[:, li] = cos[best, np.arange(cos.shape[1])]
    return index, cosine


def _heads(u: np.ndarray, std: np.ndarray, layers: Sequence[int],
           head_writes: Mapping[int, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """``[concepts, layers]`` top head index and its share of |contributions| (-1/NaN: none)."""
    index = np.full(u.shape[:2], -1)
    share = np.full(u.shape[:2], np.nan)
    if head_writes is None:
        return index, share
    for li, layer in enumerate(layers):
        if layer not in head_writes:
            continue
        contrib = np.abs(np.einsum("chd,cd->ch", np.asarray(head_writes[layer]) / std[li],
                                   u[:, li]))
        index[:, li] = contrib.argmax(axis=1)
        share[:, li] = contrib.max(axis=1) / np.maximum(contrib.sum(axis=1), 1e-12)
    return index, share


def compute_quality(
    vectors: SteeringVectorSet, data: ExtractionInput, corpus: Corpus, *,
    w_down: Mapping[int, np.ndarray] | None = None,
    head_writes: Mapping[int, np.ndarray] | None = None,
    evaluation: Evaluation | None = None, layers: Sequence[int] | None = None,
    thresholds: Thresholds = Thresholds(), n_splits: int = N_SPLITS, seed: int = 0,
) -> QualityReport:
    """Diagnose every concept of ``vectors`` at every layer; triage at the best layer.

    Args:
        vectors: the directions to judge.
        data: the activations they were fitted on (at least ``layers``).
        corpus: the corpus of ``data``.
        w_down: per layer, ``[d_mlp, d_model]`` MLP output columns (single-neuron alignment).
        head_writes: per layer, ``[concepts, heads, d_model]``: each head's mean raw-space
            write for each concept's positives (variants minus baselines; for ``unpaired``,
            stories minus the all-story mean), concepts in ``vectors.concepts`` order.
        evaluation: held-out accuracy (picks the best layer and gives ``loso_accuracy``).
        layers: layers to diagnose (default: all of the vectors').
        thresholds: triage cut-offs.
        n_splits: random split-half refits.
        seed: seed of the splits.

    Returns:
        A `QualityReport`.

    >>> report = compute_quality(vectors, data, corpus)  # doctest: +SKIP
    >>> print(report.render())  # doctest: +SKIP
    """
    if layers is not None:
        vectors = vectors.select(layers=list(layers))
    picks = [data.layers.index(x) if x in data.layers else -1 for x in vectors.layers]
    if -1 in picks:
        raise UnknownSiteError(f"activations cover layers {list(data.layers)}; the vectors need "
                               f"{list(vectors.layers)}: capture them with capture_corpus")
    data = ExtractionInput(x=data.x[:, picks], ids=data.ids, layers=vectors.layers)
    std = vectors.std.astype(np.float64)
    u = _unit(vectors.directions.astype(np.float64) / std[None])  # [C, L, d]
    cos = np.einsum("cld,kld->lck", u, u)
    eye = np.eye(len(vectors.concepts), dtype=bool)
    stability = _split_half(vectors, data, corpus, std, n_splits, seed)
    r2 = _redundancy(u)
    n_idx, n_cos = _neurons(u, std, vectors.layers, w_down)
    h_idx, h_share = _heads(u, std, vectors.layers, head_writes)

    spectra = _subspace_spectra(vectors, data, corpus)
    best, source, loso_layer, loso = _best_layer(vectors, evaluation)
    rows: list[tuple[str, list[str], np.ndarray, np.ndarray]] = []
    for ci, concept in enumerate(vectors.concepts):
        ids, pos = _positives(vectors, data, corpus, concept)
        pos = np.transpose(pos / std[None], (1, 0, 2))  # [L, n, d]
        align = np.einsum("lnd,ld->ln", _unit(pos), u[ci])
        rows.append((concept, ids, pos, align))
    bi = vectors.layers.index(best)

    results = []
    for ci, (concept, ids, pos, align) in enumerate(rows):
        # Eigenvalues of the small n x n Gram matrix are the squared singular values.
        gram = np.einsum("lnd,lmd->lnm", pos, pos)
        lam = np.clip(np.linalg.eigvalsh(gram)[:, ::-1], 0, None) if pos.shape[1] else np.zeros(
            (len(vectors.layers), 1))
        total = np.maximum(lam.sum(axis=1), 1e-24)
        first_pc = lam[:, 0] / total
        # The seed's variant: positives centred on their own mean (needs 2 of them).
        centred = pos - pos.mean(axis=1, keepdims=True)
        clam = np.clip(np.linalg.eigvalsh(np.einsum("lnd,lmd->lnm", centred, centred))[:, ::-1],
                       0, None) if pos.shape[1] >= 2 else None
        eff_dim = total**2 / np.maximum((lam**2).sum(axis=1), 1e-48)
        per_layer = []
        for li, layer in enumerate(vectors.layers):
            order = np.argsort(align[li], kind="stable")[:N_OUTLIERS]
            others = np.where(eye[ci], -np.inf, cos[li, ci])
            near = np.argsort(-others, kind="stable")[:min(N_NEAREST, len(others) - 1)]
            per_layer.append(LayerQuality(
                layer=layer, first_pc_variance_ratio=_r(first_pc[li]),
                first_pc_variance_ratio_centred=None if clam is None else _opt(
                    clam[li, 0] / max(clam[li].sum(), 1e-24)),
                effective_dimension=_r(eff_dim[li]),
                alignment_mean=_r(align[li].mean()) if len(ids) else 0.0,
                alignment_min=_r(align[li].min()) if len(ids) else 0.0,
                alignments=tuple(_r(a) for a in align[li]),
                outliers=tuple((ids[i], _r(align[li, i])) for i in order),
                nearest=tuple((vectors.concepts[k], _r(cos[li, ci, k])) for k in near),
                neuron_index=None if n_idx[ci, li] < 0 else int(n_idx[ci, li]),
                neuron_cosine=_opt(n_cos[ci, li]) if n_idx[ci, li] >= 0 else None,
                head_index=None if h_idx[ci, li] < 0 else int(h_idx[ci, li]),
                head_share=_opt(h_share[ci, li]) if h_idx[ci, li] >= 0 else None,
                split_half_cosine=_opt(stability[ci, li]), redundancy_r2=_opt(r2[ci, li]),
                **_subspace_fields(spectra.get(concept), li),
            ))
        n_sc = len(corpus.scenarios_with(concept)) if concept in corpus.paired_concepts else 0
        n_st = len(corpus.stories_for(concept))
        labels, reasons = triage(per_layer[bi], len(ids), vectors.method, thresholds)
        results.append(ConceptQuality(
            concept=concept, n_scenarios=n_sc, n_stories=n_st, positives=tuple(ids),
            loso_accuracy=loso.get(concept), labels=labels, reasons=reasons,
            layers=tuple(per_layer)))
    provenance = vectors.provenance
    return QualityReport(
        method=vectors.method, normalisation=vectors.normalisation,
        model_id=str(provenance.get("model_id", "")),
        corpus_hash=str(provenance.get("corpus_hash", corpus.content_hash)),
        layers=vectors.layers, best_layer=best, best_layer_source=source, loso_layer=loso_layer,
        seed=seed, n_splits=n_splits, thresholds=thresholds, concepts=tuple(results),
        cosine_matrix=tuple(tuple(_r(x) for x in row) for row in cos[bi]),
    )


# Eigenvalues of M_pos - M_base kept per layer in quality.json.
MAX_SUBSPACE_EIGVALS = 32


def _subspace_spectra(vectors: SteeringVectorSet, data: ExtractionInput,
                      corpus: Corpus) -> dict[str, SubspaceSpectrum]:
    """Per concept the contrastive spectrum (``subspace`` vectors only)."""
    if vectors.method != "subspace":
        return {}
    v = views(data, corpus, vectors.mean.astype(np.float64), vectors.std.astype(np.float64))
    return {c: subspace_spectrum(v, c) for c in vectors.concepts}


def _subspace_fields(spectrum: SubspaceSpectrum | None, li: int) -> dict[str, Any]:
    if spectrum is None:
        return {}
    return {"subspace_eigvals": tuple(_r(x) for x in spectrum.eigvals[li][:MAX_SUBSPACE_EIGVALS]),
            "k_signal_at_90pct": spectrum.k_signal(li),
            "effective_dim_signal": _r(spectrum.effective_dim_signal(li)),
            "effective_dim_full": _r(spectrum.effective_dim_full(li))}


def _best_layer(vectors: SteeringVectorSet, evaluation: Evaluation | None,
                ) -> tuple[int, str, int | None, dict[str, float]]:
    """Best layer, how it was chosen, the LOSO layer and per-concept LOSO accuracy.

    The layer is the run's rule (`amygdala.vectors.best_layer`): the evaluation's
    recommended layer for the vectors' method, else the middle of the vectors' layers.
    """
    loso: dict[str, float] = {}
    loso_layer = None
    recommended: dict[str, Any] | None = None
    if evaluation is not None and vectors.method in evaluation.methods:
        loso_layer, _acc = evaluation.best_layer(vectors.method)
        loso = {c: float(a) for c, a in evaluation.per_concept.get(vectors.method, {}).items()}
        recommended = {"recommended_layer": {vectors.method: loso_layer}}
    choice = best_layer(recommended, vectors.method, vectors.layers)
    return choice.layer, choice.source, loso_layer, loso


def triage(q: LayerQuality, n_positives: int, method: str,
           t: Thresholds) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Labels and one reason per label for one concept at one layer (see ``docs/quality.md``)."""
    unit = "stories" if method == "unpaired" else "scenarios"
    found: list[tuple[str, str]] = []
    if n_positives < t.min_stories:
        found.append(("too_few_stories", f"only {n_positives} {unit} (< {t.min_stories})"))
    if q.first_pc_variance_ratio < t.fragmented_first_pc:
        found.append(("fragmented", f"first PC carries {q.first_pc_variance_ratio:.2f} of the "
                      f"variance (< {t.fragmented_first_pc}); effective dimension "
                      f"{q.effective_dimension:.1f}"))
    if q.split_half_cosine is not None and q.split_half_cosine < t.unstable_cosine:
        found.append(("unstable", f"halves of the {unit} give directions at cosine "
                      f"{q.split_half_cosine:.2f} (< {t.unstable_cosine})"))
    if q.nearest and q.nearest[0][1] > t.contaminated_cosine:
        found.append(("contaminated", f"cosine {q.nearest[0][1]:.2f} with {q.nearest[0][0]} "
                      f"(> {t.contaminated_cosine})"))
    if q.redundancy_r2 is not None and q.redundancy_r2 > t.redundant_r2:
        found.append(("redundant", f"R^2 {q.redundancy_r2:.2f} from the other concepts "
                      f"(> {t.redundant_r2})"))
    if q.neuron_cosine is not None and abs(q.neuron_cosine) > t.single_neuron_cosine:
        found.append(("single_neuron", f"neuron {q.neuron_index} of layer {q.layer}'s MLP "
                      f"aligns {q.neuron_cosine:+.2f} (|cos| > {t.single_neuron_cosine})"))
    faults = {"too_few_stories", "fragmented", "unstable", "contaminated", "redundant"}
    if q.first_pc_variance_ratio > t.clean_first_pc and not faults & {f[0] for f in found}:
        found.insert(0, ("clean", f"first PC carries {q.first_pc_variance_ratio:.2f} of the "
                         f"variance (> {t.clean_first_pc}); mean story alignment "
                         f"{q.alignment_mean:.2f}"))
    return tuple(f[0] for f in found), tuple(f"{f[0]}: {f[1]}" for f in found)


# ----- from a model session -----------------------------------------------------------


def build_quality_report(
    session: Session, vectors: SteeringVectorSet, data: ExtractionInput, corpus: Corpus,
    evaluation: Evaluation | None = None, *, layers: Sequence[int] | None = None,
    seed: int = 0,
) -> QualityReport:
    """Fetch W_down and per-head activations from ``session``, then `compute_quality`.

    Per-head outputs (``attn_heads`` sites) of the texts behind each concept are
    captured through ``session.store`` (a rerun captures nothing).

    Args:
        session: from `open_session` (model, backend, store).
        vectors: the directions to judge.
        data: their activations (from `capture_corpus`).
        corpus: the corpus of ``data``.
        evaluation: held-out accuracy, when available.
        layers: layers to diagnose (default: all of the vectors').
        seed: seed of the split-half refits.

    Returns:
        A `QualityReport`; ``report.save(run_dir)`` writes ``quality.json``.
    """
    from amygdala._types import Site

    chosen = list(layers) if layers is not None else list(vectors.layers)
    backend = session.backend
    w_down = {x: backend.mlp_out_weights(x).detach().double().cpu().numpy() for x in chosen}
    if vectors.method == "unpaired":
        texts = list(corpus.stories)
    else:
        wanted = set(vectors.concepts)
        texts = [t for s in corpus.scenarios if wanted & set(s.concepts)
                 for t in (s.baseline, *(s.variants[c] for c in s.concepts if c in wanted))]
    sites = [Site(layer=x, point="attn_heads") for x in chosen]
    raw = [t.text for t in texts]
    session.store.ensure(backend, raw, sites)
    acts = session.store.load(raw, sites, ids=[t.id for t in texts])
    row = {id_: i for i, id_ in enumerate(acts.ids)}
    head_writes = {}
    for site in sites:
        z = acts[site].astype(np.float64)
        means = []
        for concept in vectors.concepts:
            if vectors.method == "unpaired":
                own = [row[t.id] for t in corpus.stories_for(concept)]
                means.append(z[own].mean(0) - z.mean(0))
            else:
                sc = corpus.scenarios_with(concept)
                means.append((z[[row[s.variants[concept].id] for s in sc]]
                              - z[[row[s.baseline.id] for s in sc]]).mean(0))
        w_o = backend.head_out_weights(site.layer).detach().double().cpu().numpy()
        per_head = np.stack(means).reshape(len(means), w_o.shape[0], w_o.shape[1])
        head_writes[site.layer] = np.einsum("chk,hkd->chd", per_head, w_o)
    return compute_quality(vectors, data, corpus, w_down=w_down, head_writes=head_writes,
                           evaluation=evaluation, layers=chosen, seed=seed)
