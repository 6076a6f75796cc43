"""Estimators, readers that reproduce each method, the read-out bundle, band and relative z.

Expected values are computed here with numpy from the definitions in
``docs/training.md``, not by the functions under test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from amygdala.backends._registry import Backend
from amygdala.corpus._model import Corpus
from amygdala.errors import AmygdalaError, DegenerateDirectionError, VectorFileError
from amygdala.intervene._readout import (
    bundle_from_stats,
    compute_stats,
    read,
    recommended_from_evaluation,
    zscore_tokens,
)
from amygdala.vectors._bundle import ReadoutBundle, relative, shared_variance
from amygdala.vectors._extract import (
    METHODS,
    PROBE_SHRINKAGE,
    ExtractionInput,
    RawDirections,
    extract,
    reference_stats,
)
from amygdala.vectors._set import SteeringVectorSet
from tests.test_extract import LAYERS, D, synthetic


def anisotropic(seed: int = 0) -> tuple[Corpus, ExtractionInput]:
    """The synthetic corpus with a few "massive" dimensions, so scaling matters."""
    corpus, data, _ = synthetic(seed)
    scale = np.exp(np.random.default_rng(seed + 7).normal(scale=1.2, size=D)).astype(np.float32)
    return corpus, attrs.evolve(data, x=data.x * scale)


def as_set(raw: RawDirections, data: ExtractionInput, method: str) -> SteeringVectorSet:
    return SteeringVectorSet(
        concepts=raw.concepts, layers=data.layers, directions=raw.directions,
        raw_norm=raw.raw_norm, resid_norm=np.ones(len(data.layers), np.float32), mean=raw.mean,
        std=raw.std, method=method, normalisation="standardise", readers=raw.readers,
        offsets=raw.offsets, provenance={"pooling": "mean:skip=2"})


def lda_by_hand(corpus: Corpus, data: ExtractionInput, layer: int,
                std: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One-vs-rest mean differences and shrinkage-LDA weights, standardised space."""
    groups = {}
    for c in corpus.paired_concepts:
        sc = corpus.scenarios_with(c)
        groups[c] = (data.rows([s.variants[c].id for s in sc])[:, layer]
                     - data.rows([s.baseline.id for s in sc])[:, layer]) / std
    within = np.concatenate([g - g.mean(0) for g in groups.values()])
    cov = within.T @ within / (len(within) - len(groups))
    reg = (1 - PROBE_SHRINKAGE) * cov + PROBE_SHRINKAGE * np.trace(cov) / D * np.eye(D)
    diff = {c: g.mean(0) - np.concatenate([h for k, h in groups.items() if k != c]).mean(0)
            for c, g in groups.items()}
    return diff, {c: np.linalg.solve(reg, m) for c, m in diff.items()}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("method", METHODS)
def test_bundle_reproduces_the_methods_scores_and_argmax(method: str, tmp_path: Path) -> None:
    corpus, data = anisotropic()
    raw = extract(data, corpus, method=method)  # type: ignore[arg-type]
    mean, std = reference_stats(data, corpus)
    rng = np.random.default_rng(3)
    ones = {x: np.ones(len(raw.concepts), np.float32) for x in LAYERS}
    zeros = {x: np.zeros(len(raw.concepts), np.float32) for x in LAYERS}
    as_set(raw, data, method).export_readout(tmp_path, neutral_mean=zeros, neutral_std=ones,
                                             n_neutral_tokens=9)
    bundle = ReadoutBundle.load(tmp_path)
    for li, layer in enumerate(LAYERS):
        h = mean[li] + rng.normal(size=(200, D)) * std[li] * 2
        if method == "probe":
            w = lda_by_hand(corpus, data, li, std[li])[1]
            u = unit(np.stack([w[c] for c in raw.concepts]))
        else:  # reading vector = writing vector, in the method's standardised space
            u = unit(raw.directions[:, li] / std[li])
        expected = ((h - mean[li]) / std[li]) @ u.T
        got = bundle.scores(layer, h.astype(np.float32))
        np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)
        assert (got.argmax(1) == expected.argmax(1)).mean() > 0.99


def test_paired_centred_is_the_same_for_one_concept_or_all() -> None:
    corpus, data = anisotropic()
    every = extract(data, corpus, method="paired_centred")
    for c, concept in enumerate(every.concepts):
        one = extract(data, corpus, method="paired_centred", concepts=[concept])
        np.testing.assert_allclose(one.directions[0], every.directions[c], atol=1e-6)
        np.testing.assert_allclose(one.readers[0], every.readers[c], rtol=1e-5, atol=1e-7)
    # And by hand: centred variants averaged over scenarios, minus the mean over concepts.
    _mean, std = reference_stats(data, corpus)
    means = {}
    for concept in corpus.paired_concepts:
        rows = []
        for s in corpus.scenarios:
            block = data.rows([s.variants[c].id for c in s.concepts])[:, 0] / std[0]
            rows.append(block[s.concepts.index(concept)] - block.mean(0))
        means[concept] = np.mean(rows, axis=0)
    grand = np.mean(list(means.values()), axis=0)
    u = unit(means["sad"] - grand)
    np.testing.assert_allclose(unit(every.directions[every.concepts.index("sad"), 0] / std[0]),
                               u, atol=1e-5)


def _one_concept(corpus: Corpus) -> Corpus:
    return corpus.select(["sad"])


def _zero_difference(corpus: Corpus, data: ExtractionInput) -> tuple[Corpus, ExtractionInput]:
    """'sad' variants identical to their baselines and 'sad' stories equal to neutral mean."""
    x = data.x.copy()
    for s in corpus.scenarios:
        x[data.ids.index(s.variants["sad"].id)] = x[data.ids.index(s.baseline.id)]
    return corpus, attrs.evolve(data, x=x)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_finite_or_raises_a_typed_error(method: str) -> None:
    corpus, data = anisotropic()
    cases = [(corpus, data), (_one_concept(corpus), data), _zero_difference(corpus, data)]
    outcomes = []
    for case_corpus, case_data in cases:
        try:
            raw = extract(case_data, case_corpus, method=method)  # type: ignore[arg-type]
        except AmygdalaError as exc:
            outcomes.append(type(exc).__name__)
            continue
        for name in ("directions", "readers", "offsets"):
            assert np.isfinite(getattr(raw, name)).all(), (method, name)
        assert (np.linalg.norm(raw.directions, axis=-1) > 0.99).all()
        assert (np.linalg.norm(raw.readers, axis=-1) > 0).all()
        outcomes.append("ok")
    assert outcomes[0] == "ok"
    # Contrasting methods cannot work with one concept; they say so.
    if method in ("paired_centred", "probe", "combined", "unpaired"):
        assert outcomes[1] == "DegenerateDirectionError"


def test_single_concept_paired_centred_raises() -> None:
    corpus, data = anisotropic()
    with pytest.raises(DegenerateDirectionError, match="at least two concepts"):
        extract(data, _one_concept(corpus), method="paired_centred")


def test_zero_mean_difference_raises_for_paired() -> None:
    corpus, data = _zero_difference(*anisotropic())
    with pytest.raises(DegenerateDirectionError, match="'sad'"):
        extract(data, corpus, method="paired")


def test_probe_writes_with_mean_difference_and_reads_with_lda() -> None:
    corpus, data = anisotropic()
    raw = extract(data, corpus, method="probe")
    mean, std = reference_stats(data, corpus)
    for li in range(len(LAYERS)):
        diff, lda = lda_by_hand(corpus, data, li, std[li])
        for c, concept in enumerate(raw.concepts):
            write = unit(unit(diff[concept]) * std[li])
            np.testing.assert_allclose(raw.directions[c, li], write, atol=1e-5)
            reader = unit(lda[concept]) / std[li]
            np.testing.assert_allclose(raw.readers[c, li], reader, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(raw.offsets[c, li], -reader @ mean[li], rtol=1e-4,
                                       atol=1e-5)
            # The two differ: whitening turns the mean difference.
            assert abs(unit(diff[concept]) @ unit(lda[concept])) < 0.999


def test_combined_and_subspace_by_hand() -> None:
    corpus, data = anisotropic()
    mean, std = reference_stats(data, corpus)
    z = (data.x[:, 0] - mean[0]) / std[0]
    row = {i: k for k, i in enumerate(data.ids)}

    def texts(c: str) -> list[str]:
        return ([s.variants[c].id for s in corpus.scenarios_with(c)]
                + [t.id for t in corpus.stories_for(c)])

    means = {c: z[[row[i] for i in texts(c)]].mean(0) for c in corpus.concepts}
    neutral = z[[row[t.id] for t in corpus.neutral]]
    centred = neutral - neutral.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = int(np.searchsorted(np.cumsum(s**2) / (s**2).sum(), 0.5) + 1)
    top = vt[:k]
    raw = extract(data, corpus, method="combined")
    for c, concept in enumerate(raw.concepts):
        v = means[concept] - np.mean([means[o] for o in means if o != concept], axis=0)
        v = v - (v @ top.T) @ top
        np.testing.assert_allclose(unit(raw.directions[c, 0] / std[0]), unit(v), atol=1e-5)
    raw = extract(data, corpus, method="subspace")
    concept = "joyful"
    sc = corpus.scenarios_with(concept)
    n = len(sc) + len(corpus.stories_for(concept))
    var = z[[row[s.variants[concept].id] for s in sc]]
    base = z[[row[s.baseline.id] for s in sc]]
    st = z[[row[t.id] for t in corpus.stories_for(concept)]]
    m = (var.T @ var - base.T @ base + st.T @ st) / n - len(st) / n * neutral.T @ neutral / len(
        neutral)
    _vals, vecs = np.linalg.eigh(m)
    first = vecs[:, -1] * np.sign(vecs[:, -1] @ (var.sum(0) - base.sum(0) + st.sum(0)
                                                 - len(st) * neutral.mean(0)))
    got = unit(raw.directions[raw.concepts.index(concept), 0] / std[0])
    np.testing.assert_allclose(got, first, atol=1e-4)


def test_vector_files_keep_readers_and_old_files_load(tmp_path: Path) -> None:
    corpus, data = anisotropic()
    raw = extract(data, corpus, method="probe")
    vectors = as_set(raw, data, "probe")
    vectors.save(tmp_path)
    loaded = SteeringVectorSet.load(tmp_path)
    np.testing.assert_array_equal(loaded.readers(1), raw.readers[:, 1])
    np.testing.assert_array_equal(loaded.offsets(1), raw.offsets[:, 1])
    sub = loaded.select(concepts=["sad"], layers=[1])
    np.testing.assert_array_equal(sub.readers(1)[0], raw.readers[raw.concepts.index("sad"), 1])
    # A format-1 file (no readers): readers derived from the directions.
    arrays = load_file(str(tmp_path / "vectors.safetensors"))
    meta = json.loads((tmp_path / "vectors.json").read_text())
    save_file({k: v for k, v in arrays.items() if k not in ("readers", "offsets")},
              str(tmp_path / "vectors.safetensors"))
    (tmp_path / "vectors.json").write_text(json.dumps({**meta, "format_version": 1}))
    old = SteeringVectorSet.load(tmp_path)
    u = unit(raw.directions[:, 0] / raw.std[0])
    np.testing.assert_allclose(old.readers(0), u / raw.std[0], rtol=1e-5)
    # Format 2 without readers is incomplete.
    (tmp_path / "vectors.json").write_text(json.dumps({**meta, "format_version": 2}))
    with pytest.raises(VectorFileError, match="lacks readers"):
        SteeringVectorSet.load(tmp_path)


def test_band_and_relative_z_by_hand(tmp_path: Path) -> None:
    corpus, data = anisotropic()
    raw = extract(data, corpus, method="paired")
    vectors = as_set(raw, data, "paired")
    rng = np.random.default_rng(5)
    mean_n = {x: rng.normal(size=3).astype(np.float32) for x in LAYERS}
    std_n = {x: rng.uniform(0.5, 2, size=3).astype(np.float32) for x in LAYERS}
    vectors.export_readout(tmp_path, neutral_mean=mean_n, neutral_std=std_n,
                           n_neutral_tokens=40, recommended_layers=[1], band=[0, 1])
    bundle = ReadoutBundle.load(tmp_path)
    hidden = {x: rng.normal(size=(7, D)).astype(np.float32) * 3 for x in LAYERS}
    per = [((hidden[x] @ raw.readers[:, i].T + raw.offsets[:, i]) - mean_n[x]) / std_n[x]
           for i, x in enumerate(LAYERS)]
    np.testing.assert_allclose(bundle.zscores(hidden), per[1], rtol=1e-4, atol=1e-4)
    band = (per[0] + per[1]) / 2
    np.testing.assert_allclose(bundle.zscores(hidden, layers=bundle.band), band, rtol=1e-4,
                               atol=1e-4)
    rel = band - band.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(bundle.zscores(hidden, layers=[0, 1], relative_to_mean=True),
                               rel, rtol=1e-4, atol=1e-4)
    # The read path (`amygdala read`) gives the same numbers from the same statistics.
    from amygdala.intervene._readout import ReadoutStats

    stats = ReadoutStats(concepts=raw.concepts, mean=mean_n, std=std_n, n_tokens=40, key="k")
    np.testing.assert_allclose(zscore_tokens(vectors, stats, hidden, [0, 1], relative=True),
                               rel, rtol=1e-4, atol=1e-4)


def test_relative_readout_removes_a_planted_shared_component() -> None:
    rng = np.random.default_rng(0)
    c, d, t = 5, 24, 400
    shared = unit(rng.normal(size=d))
    specific = np.linalg.qr(rng.normal(size=(d, c)))[0].T  # orthonormal, one per concept
    # Every reader leans on the shared direction; a token's intensity moves all scores.
    readers = 0.8 * shared + 0.6 * specific
    intensity = rng.normal(size=t) * 3
    which = rng.integers(c, size=t)
    hidden = intensity[:, None] * shared + 0.8 * specific[which] + 0.1 * rng.normal(size=(t, d))
    z = hidden @ readers.T
    z = (z - z.mean(0)) / z.std(0)
    r2 = shared_variance(z)
    assert (r2 > 0.8).all()  # the shared component dominates every concept
    rel = relative(z)
    corr = [abs(np.corrcoef(rel[:, k], intensity)[0, 1]) for k in range(c)]
    assert max(corr) < 0.15
    assert (rel.argmax(1) == which).mean() > 0.9
    raw_corr = [abs(np.corrcoef(z[:, k], intensity)[0, 1]) for k in range(c)]
    assert min(raw_corr) > 0.8
    # By hand: R^2 of each column on the row mean.
    m = z.mean(1)
    for k in range(c):
        assert r2[k] == pytest.approx(np.corrcoef(z[:, k], m)[0, 1] ** 2, rel=1e-6)


def test_recommended_layers_come_from_evaluation_json(tmp_path: Path) -> None:
    assert recommended_from_evaluation(tmp_path, "paired") == ([], [])
    (tmp_path / "evaluation.json").write_text(json.dumps(
        {"recommended_layer": {"paired": 15}, "recommended_band": {"paired": [13, 14, 15]}}))
    assert recommended_from_evaluation(tmp_path, "paired") == ([15], [13, 14, 15])
    assert recommended_from_evaluation(tmp_path, "probe") == ([], [])


NEUTRAL = ["The kettle clicked off and the water settled.",
           "A bus left the depot at nine and turned left onto the main road."]


def _bundle_matches_read(backend: Backend, vectors: SteeringVectorSet, layers: list[int],
                         text: str, tmp_path: Path) -> None:
    from amygdala._types import Site

    stats = compute_stats(backend, vectors, NEUTRAL)
    bundle_from_stats(vectors, stats, recommended_layers=[layers[-1]],
                      band=layers).save(tmp_path)
    bundle = ReadoutBundle.load(tmp_path)
    sites = [Site(layer=x) for x in layers]
    captured = backend.capture_tokens([text], sites)[0]
    hidden = {s.layer: captured[s].detach().float().cpu().numpy() for s in sites}
    for band, rel in (([layers[-1]], False), (layers, False), (layers, True)):
        got = read(backend, vectors, text, layer=band[0], stats=stats,
                   band=band if len(band) > 1 else None, relative=rel)
        np.testing.assert_allclose(got.z, bundle.zscores(hidden, layers=band,
                                                         relative_to_mean=rel),
                                   rtol=1e-4, atol=1e-4)


def test_read_and_bundle_agree_on_a_tiny_model(tmp_path: Path) -> None:
    from amygdala.backends._registry import get_backend
    from tests.conftest import tiny_llama
    from tests.test_steer import tiny_vectors

    backend = get_backend("torch", tiny_llama())
    vectors = tiny_vectors()
    _bundle_matches_read(backend, vectors, [1, 2], "Rain again, then sun.", tmp_path)


@pytest.mark.smollm
def test_smollm_read_and_bundle_agree(small_run: Any, tmp_path: Path) -> None:
    vectors = small_run.result.vectors.select(layers=[14, 15, 16])
    _bundle_matches_read(small_run.session.backend, vectors, [14, 15, 16],
                         "My hands would not stop shaking.", tmp_path)


def test_subspace_spectrum_in_quality_json(tmp_path: Path) -> None:
    from amygdala.diagnose._quality import QualityReport, compute_quality

    corpus, data = anisotropic()
    raw = extract(data, corpus, method="subspace")
    report = compute_quality(as_set(raw, data, "subspace"), data, corpus, n_splits=1)
    q = report.concept("joyful").at(1)
    assert q.subspace_eigvals is not None and q.k_signal_at_90pct is not None
    vals = np.asarray(q.subspace_eigvals)
    assert (vals > 0).all() and (np.diff(vals) <= 0).all()
    share = np.cumsum(vals) / vals.sum()
    assert q.k_signal_at_90pct == int(np.argmax(share >= 0.9 - 1e-9) + 1)
    assert q.effective_dim_signal == pytest.approx(vals.sum() ** 2 / (vals**2).sum(), rel=1e-4)
    assert q.effective_dim_full is not None and q.effective_dim_full >= 1
    report.save(tmp_path)
    again = QualityReport.load(tmp_path)
    assert again.to_json() == report.to_json()
    # Schema 1 files (no subspace fields) still load.
    old = report.to_json()
    old["schema_version"] = 1
    for concept in old["concepts"]:
        for layer in concept["layers"]:
            for key in ("subspace_eigvals", "k_signal_at_90pct", "effective_dim_signal",
                        "effective_dim_full"):
                del layer[key]
    assert QualityReport.from_json(old).concept("joyful").at(1).subspace_eigvals is None
    # Other methods leave the fields empty.
    paired = compute_quality(as_set(extract(data, corpus), data, "paired"), data, corpus,
                             n_splits=1)
    assert paired.concept("joyful").at(1).k_signal_at_90pct is None
