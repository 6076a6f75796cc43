"""Vector gaps: standardisation with a different spread per dimension, every saved array
read back, NaN/inf refused everywhere, and the corpus hash computed by hand.

Expected values come from numpy written out here, never from the function under test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from amygdala import Corpus, ExtractionInput, Scenario, Site, SteeringVector, SteeringVectorSet
from amygdala.backends._registry import Edit
from amygdala.corpus import Text
from amygdala.errors import NonFiniteError
from amygdala.vectors import export_gguf, extract, from_pretrained, import_gguf, save_pretrained

CONCEPTS = ("joyful", "sad", "afraid")
D, LAYERS = 12, (0, 3)
# One spread per dimension, from 0.05 to 20: a direction left in standardised space
# (or divided by the spread once too often) points somewhere else entirely.
SPREAD = np.geomspace(0.05, 20.0, D)


def planted(seed: int = 0, n_scenarios: int = 10) -> tuple[Corpus, ExtractionInput]:
    """Neutral texts and baselines whose spread differs per dimension; variants add a shift."""
    rng = np.random.default_rng(seed)
    shifts = rng.normal(size=(len(CONCEPTS), D)) * SPREAD
    ids, rows, scenarios, neutral = [], [], [], []

    def add(text: Text, vec: np.ndarray) -> Text:
        ids.append(text.id)
        rows.append(np.stack([vec, 3.0 * vec + 1.0]))
        return text

    for k in range(16):
        neutral.append(add(Text(id=f"neutral/n{k:02d}.txt", text=f"neutral {k}",
                                role="neutral"), 5.0 + rng.normal(size=D) * SPREAD))
    for s in range(n_scenarios):
        base_vec = 5.0 + rng.normal(size=D) * SPREAD
        base = add(Text(id=f"paired/s{s}/baseline.txt", text=f"base {s}", role="baseline",
                        scenario=f"s{s}"), base_vec)
        variants = {}
        for c, concept in enumerate(CONCEPTS):
            vec = base_vec + shifts[c] + 0.2 * rng.normal(size=D) * SPREAD
            variants[concept] = add(Text(id=f"paired/s{s}/{concept}.txt",
                                         text=f"{concept} {s}", role="variant",
                                         concept=concept, scenario=f"s{s}"), vec)
        scenarios.append(Scenario(slug=f"s{s}", baseline=base, variants=variants))
    corpus = Corpus(root=Path("planted"), scenarios=scenarios, stories=(), neutral=neutral)
    data = ExtractionInput(x=np.asarray(rows, dtype=np.float32), ids=tuple(ids), layers=LAYERS)
    return corpus, data


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)  # type: ignore[no-any-return]


def _by_hand(corpus: Corpus, data: ExtractionInput, concept: str) -> dict[str, np.ndarray]:
    """Reference statistics, the mean paired difference and the method-space vector."""
    row = {id_: i for i, id_ in enumerate(data.ids)}
    ref = data.x[[row[t.id] for t in corpus.neutral]].astype(np.float64)
    mean, std = ref.mean(0), ref.std(0)
    std = np.maximum(std, 1e-3 * std.mean(-1, keepdims=True) + 1e-8)
    diffs = np.stack([data.x[row[s.variants[concept].id]] - data.x[row[s.baseline.id]]
                      for s in corpus.scenarios]).astype(np.float64)
    return {"mean": mean, "std": std, "diff": diffs.mean(0), "v": diffs.mean(0) / std}


def test_the_planted_spread_differs_per_dimension() -> None:
    corpus, data = planted()
    std = _by_hand(corpus, data, "sad")["std"]
    assert std.max(-1).min() / std.min(-1).max() > 50


@pytest.mark.parametrize("concept", CONCEPTS)
def test_standardised_paired_directions_are_raw_space_writing_directions(concept: str) -> None:
    corpus, data = planted()
    out = extract(data, corpus, method="paired", normalisation="standardise")
    ref = _by_hand(corpus, data, concept)
    c = out.concepts.index(concept)
    # A unit step u in standardised space is u * std in raw space; for the paired
    # method u is unit(diff / std), so the raw writing direction is unit(diff).
    expected = _unit(_unit(ref["v"]) * ref["std"])
    np.testing.assert_allclose(out.directions[c], expected, atol=2e-5)
    np.testing.assert_allclose(out.directions[c], _unit(ref["diff"]), atol=2e-5)
    # ...which is not the standardised-space vector itself.
    assert np.abs(out.directions[c] - _unit(ref["v"])).max() > 0.1
    np.testing.assert_allclose(out.mean, ref["mean"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.std, ref["std"], rtol=1e-5)


@pytest.mark.parametrize("concept", CONCEPTS)
def test_standardised_readers_score_in_method_space(concept: str) -> None:
    corpus, data = planted()
    out = extract(data, corpus, method="paired", normalisation="standardise")
    ref = _by_hand(corpus, data, concept)
    c = out.concepts.index(concept)
    h = data.x[:5].astype(np.float64)  # any activations
    score = np.einsum("nld,ld->nl", h, out.readers[c]) + out.offsets[c]
    by_hand = np.einsum("nld,ld->nl", (h - ref["mean"]) / ref["std"], _unit(ref["v"]))
    np.testing.assert_allclose(score, by_hand, rtol=1e-4, atol=1e-4)


def test_raw_normalisation_ignores_the_spread() -> None:
    corpus, data = planted()
    out = extract(data, corpus, method="paired", normalisation="raw")
    for c, concept in enumerate(out.concepts):
        ref = _by_hand(corpus, data, concept)
        np.testing.assert_allclose(out.directions[c], _unit(ref["diff"]), atol=2e-5)
        np.testing.assert_allclose(out.raw_norm[c], np.linalg.norm(ref["diff"], axis=-1),
                                   rtol=1e-5)
    np.testing.assert_array_equal(out.std, np.ones_like(out.std))


def _vector_set(corpus: Corpus, data: ExtractionInput) -> SteeringVectorSet:
    out = extract(data, corpus, method="paired", normalisation="standardise")
    rng = np.random.default_rng(5)
    return SteeringVectorSet(
        concepts=out.concepts, layers=LAYERS, directions=out.directions,
        raw_norm=out.raw_norm, resid_norm=rng.uniform(1, 9, len(LAYERS)).astype(np.float32),
        mean=out.mean, std=out.std, method="paired", normalisation="standardise",
        provenance={"corpus_hash": corpus.content_hash, "counts": {"sad": 10}},
        readers=out.readers, offsets=out.offsets)


def test_method_space_and_derived_readers_divide_by_the_spread() -> None:
    corpus, data = planted()
    out = extract(data, corpus, method="paired", normalisation="standardise")
    # No readers given: they are derived from the directions (reading = writing vector).
    vs = SteeringVectorSet(concepts=out.concepts, layers=LAYERS, directions=out.directions,
                           raw_norm=out.raw_norm, resid_norm=np.ones(len(LAYERS)),
                           mean=out.mean, std=out.std, method="paired",
                           normalisation="standardise")
    h = data.x[:7].astype(np.float64)
    for li, layer in enumerate(LAYERS):
        d, std = vs.directions[:, li].astype(np.float64), vs.std[li].astype(np.float64)
        mean = vs.mean[li].astype(np.float64)
        u = _unit(d / std)
        np.testing.assert_allclose(vs.method_space(layer), u, atol=1e-5)
        np.testing.assert_allclose(vs.cosine_matrix(layer), u @ u.T, atol=1e-5)
        np.testing.assert_allclose(vs.readers(layer), u / std, rtol=1e-4, atol=1e-6)
        score = h[:, li] @ vs.readers(layer).T + vs.offsets(layer)
        np.testing.assert_allclose(score, ((h[:, li] - mean) / std) @ u.T, rtol=1e-4,
                                   atol=1e-4)


# Every array a set carries (attrs fields compare with eq=False: equality ignores them).
ARRAYS = ("directions", "raw_norm", "resid_norm", "mean", "std", "all_readers", "all_offsets")


def test_save_and_load_keep_every_array(tmp_path: Path) -> None:
    corpus, data = planted()
    vs = _vector_set(corpus, data)
    vs.save(tmp_path)
    back = SteeringVectorSet.load(tmp_path)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(vs, name), err_msg=name)
        assert getattr(back, name).dtype == np.float32, name
    assert (back.concepts, back.layers, back.method, back.normalisation) == (
        vs.concepts, vs.layers, vs.method, vs.normalisation)
    assert dict(back.provenance) == dict(vs.provenance)
    meta = json.loads((tmp_path / "vectors.json").read_text())
    assert meta["site"] == "resid_post"
    # One vector read back carries its own scale.
    one = back.vector(vs.concepts[1], LAYERS[1])
    np.testing.assert_allclose(one.steering(2.0), 2.0 * vs.resid_norm[1] * vs.directions[1, 1],
                               rtol=1e-6)
    assert one.raw_norm == pytest.approx(float(vs.raw_norm[1, 1]))


def test_select_keeps_matching_rows_of_every_array() -> None:
    corpus, data = planted()
    vs = _vector_set(corpus, data)
    sub = vs.select(concepts=["sad", "afraid"], layers=[3])
    ci = [vs.concepts.index("sad"), vs.concepts.index("afraid")]
    np.testing.assert_array_equal(sub.directions, vs.directions[ci][:, [1]])
    np.testing.assert_array_equal(sub.raw_norm, vs.raw_norm[ci][:, [1]])
    np.testing.assert_array_equal(sub.resid_norm, vs.resid_norm[[1]])
    np.testing.assert_array_equal(sub.mean, vs.mean[[1]])
    np.testing.assert_array_equal(sub.std, vs.std[[1]])
    np.testing.assert_array_equal(sub.all_readers, vs.all_readers[ci][:, [1]])
    np.testing.assert_array_equal(sub.all_offsets, vs.all_offsets[ci][:, [1]])


# ----- NaN and infinity are refused wherever they can enter -----------------------------


def test_extraction_input_refuses_non_finite_activations() -> None:
    x = np.zeros((2, 1, 3), np.float32)
    x[1, 0, 2] = np.nan
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        ExtractionInput(x=x, ids=("a", "b"), layers=(0,))
    x[1, 0, 2] = np.inf
    with pytest.raises(ValueError, match="recapture"):
        ExtractionInput(x=x, ids=("a", "b"), layers=(0,))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_steering_vector_refuses_non_finite_directions(bad: float) -> None:
    with pytest.raises(NonFiniteError, match="direction contains NaN or inf"):
        SteeringVector(concept="a", layer=0, direction=[1.0, bad], raw_norm=1.0,
                       resid_norm=1.0, method="paired")


@pytest.mark.parametrize("field", ["directions", "raw_norm", "resid_norm", "std", "mean"])
def test_vector_set_refuses_non_finite_arrays(field: str) -> None:
    arrays = {"directions": np.ones((1, 2, 3)), "raw_norm": np.ones((1, 2)),
              "resid_norm": np.ones(2), "mean": np.zeros((2, 3)), "std": np.ones((2, 3))}
    arrays[field] = arrays[field].copy()
    arrays[field].reshape(-1)[-1] = np.inf
    with pytest.raises(NonFiniteError, match=f"{field} contains NaN or inf"):
        SteeringVectorSet(concepts=["a"], layers=[0, 1], method="paired",
                          normalisation="raw", **arrays)


def test_edit_refuses_non_finite_vectors() -> None:
    with pytest.raises(NonFiniteError, match="NaN or infinity"):
        Edit(site=Site(layer=0), vector=torch.tensor([0.0, float("nan")]))
    with pytest.raises(NonFiniteError):
        Edit(site=Site(layer=0), vector=[1.0, float("inf")])


# ----- the corpus hash ---------------------------------------------------------------------


def test_content_hash_is_sha256_over_sorted_id_and_text_pairs() -> None:
    corpus, _ = planted(n_scenarios=3)
    digest = hashlib.sha256()
    pairs = sorted((t.id, hashlib.sha256(t.text.encode("utf-8")).hexdigest())
                   for t in corpus.texts)
    for text_id, sha in pairs:
        digest.update(f"{text_id}\0{sha}\n".encode())
    # The corpus lists paired texts first, baseline before variants, and neutral last:
    # not sorted by id, so an unsorted hash would differ.
    assert [t.id for t in corpus.texts] != [p[0] for p in pairs]
    assert corpus.content_hash == digest.hexdigest()


def test_content_hash_sees_a_one_character_change() -> None:
    corpus, _ = planted(n_scenarios=3)
    import attrs

    first = corpus.neutral[0]
    changed = attrs.evolve(corpus, neutral=(attrs.evolve(first, text=first.text + "!"),
                                            *corpus.neutral[1:]))
    assert changed.content_hash != corpus.content_hash


# ----- survivors of the mutation run (benchmarks/mutants.py) -------------------------------
# Messages are matched to their end ("$"): mutmut wraps a literal in "XX...XX", which a
# substring match would still find.


def with_stories(n: int = 3) -> tuple[Corpus, ExtractionInput, dict[str, np.ndarray]]:
    """`planted` plus ``n`` stories for two concepts; returns their rows too."""
    import attrs

    corpus, data = planted()
    rng = np.random.default_rng(7)
    stories, rows, by_concept = [], [], {}
    for c, concept in enumerate(("joyful", "sad")):
        vecs = 5.0 + (c + 1) * SPREAD + rng.normal(size=(n, D)) * SPREAD
        block = np.stack([np.stack([v, 3.0 * v + 1.0]) for v in vecs]).astype(np.float32)
        by_concept[concept] = block
        rows.append(block)
        stories += [Text(id=f"stories/{concept}/{k}.txt", text=f"{concept} story {k}",
                         role="story", concept=concept) for k in range(n)]
    x = np.concatenate([data.x, *rows])
    ids = data.ids + tuple(t.id for t in stories)
    return (attrs.evolve(corpus, stories=stories),
            ExtractionInput(x=x, ids=ids, layers=data.layers), by_concept)


def test_unpaired_raw_norm_is_the_story_mean_against_the_mean_of_means() -> None:
    corpus, data, rows = with_stories()
    raw = extract(data, corpus, method="unpaired")
    means = {c: rows[c].astype(np.float64).mean(0) for c in rows}
    grand = np.mean(list(means.values()), axis=0)
    for i, concept in enumerate(raw.concepts):
        np.testing.assert_allclose(raw.raw_norm[i], np.linalg.norm(means[concept] - grand,
                                                                   axis=-1), rtol=1e-5)
        assert raw.counts[concept] == 3


def test_unpaired_without_stories_and_degenerate_directions_say_what_to_do() -> None:
    from amygdala.errors import CorpusError, DegenerateDirectionError

    corpus, data = planted()
    with pytest.raises(CorpusError, match=r"none were found: add stories or use "
                                          r"method='paired'$"):
        extract(data, corpus, method="unpaired")
    # "sad" variants identical to their baselines: a zero paired difference.
    x = data.x.copy()
    row = {id_: i for i, id_ in enumerate(data.ids)}
    for s in corpus.scenarios:
        x[row[s.variants["sad"].id]] = x[row[s.baseline.id]]
    flat = ExtractionInput(x=x, ids=data.ids, layers=data.layers)
    with pytest.raises(DegenerateDirectionError,
                       match=r"^method 'paired' gave a zero or non-finite writing vector for "
                             r"'sad' at layer 0 \(2 such vectors in all\); .* differ from "
                             r"what they are contrasted with, or use another method$"):
        extract(flat, corpus, method="paired", concepts=["sad"])


def test_constant_reference_dimensions_get_the_tiny_floor_not_zero() -> None:
    from amygdala.vectors._extract import reference_stats

    corpus, data = planted()
    x = data.x.copy()
    row = {id_: i for i, id_ in enumerate(data.ids)}
    for t in corpus.neutral:
        x[row[t.id]] = 1.5  # every neutral text the same: no spread anywhere
    mean, std = reference_stats(ExtractionInput(x=x, ids=data.ids, layers=data.layers), corpus)
    np.testing.assert_array_equal(mean, np.full((len(LAYERS), D), 1.5, np.float32))
    np.testing.assert_allclose(std, 1e-8)  # 1e-3 * 0 + 1e-8


def test_extraction_input_shape_message_and_select_layers() -> None:
    with pytest.raises(ValueError, match=r"^x must be \[n_texts=2, layers=1, d\], "
                                         r"got \(2, 3\)$"):
        ExtractionInput(x=np.zeros((2, 3), np.float32), ids=("a", "b"), layers=(0,))
    _, data = planted()
    picked = data.select_layers([3])
    assert picked.layers == (3,)
    np.testing.assert_array_equal(picked.x, data.x[:, [1]])
    assert picked.ids == data.ids


def test_load_messages_name_the_fix(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from amygdala.errors import VectorFileError

    with pytest.raises(VectorFileError, match=r"; create them with `amygdala train CORPUS "
                                              r"--out DIR`$"):
        SteeringVectorSet.load(tmp_path)
    corpus, data = planted()
    vs = _vector_set(corpus, data)
    vs.save(tmp_path)
    arrays = {k: np.ascontiguousarray(getattr(vs, a), np.float32) for k, a in (
        ("directions", "directions"), ("raw_norm", "raw_norm"), ("resid_norm", "resid_norm"),
        ("mean", "mean"), ("std", "std"), ("readers", "all_readers"),
        ("offsets", "all_offsets"))}
    arrays["raw_norm"] = arrays["raw_norm"][:, :1].copy()  # one layer short
    save_file(arrays, str(tmp_path / "vectors.safetensors"))
    with pytest.raises(VectorFileError, match=r"^vectors in .* are inconsistent: raw_norm "
                                              r"must be \[concepts, layers\]"):
        SteeringVectorSet.load(tmp_path)


def test_select_of_concepts_alone_keeps_every_layer() -> None:
    corpus, data = planted()
    vs = _vector_set(corpus, data)
    sub = vs.select(concepts=["sad"])
    assert sub.layers == vs.layers
    np.testing.assert_array_equal(sub.directions, vs.directions[[vs.concepts.index("sad")]])
    only_layer = vs.select(layers=[3])
    assert only_layer.concepts == vs.concepts


def test_readout_bundle_defaults_to_the_middle_layer_and_gguf_takes_a_name(
        tmp_path: Path) -> None:
    corpus, data = planted()
    vs = _vector_set(corpus, data)
    stats = {"neutral_mean": {x: np.zeros(3) for x in vs.layers},
             "neutral_std": {x: np.ones(3) for x in vs.layers}, "n_neutral_tokens": 10}
    assert list(vs.readout_bundle(**stats).recommended_layers) == [vs.layers[1]]
    assert list(vs.readout_bundle(**stats, recommended_layers=[0]).recommended_layers) == [0]
    path = export_gguf(vs, tmp_path / "v.gguf", "sad", layers=[3])
    assert import_gguf(path).concepts == ("sad",)
    assert import_gguf(path, concept="blue").concepts == ("blue",)


def test_save_pretrained_round_trips(tmp_path: Path) -> None:
    corpus, data = planted()
    vs = _vector_set(corpus, data)
    save_pretrained(vs, tmp_path / "hub")
    back = from_pretrained(tmp_path / "hub")
    for name in ARRAYS:
        np.testing.assert_allclose(getattr(back, name), getattr(vs, name), err_msg=name)


def test_combined_and_subspace_raw_norms_by_hand() -> None:
    # combined: a concept's positives (paired variants and stories), mean minus the mean
    # of the other concepts' means. subspace: the matched contrasts M_pos - M_base as one
    # raw-space difference: (variant - baseline) and (story - neutral mean), each weighted
    # by its share of the concept's positives. Norms over d, per layer.
    corpus, data, stories = with_stories()
    row = {id_: i for i, id_ in enumerate(data.ids)}
    x = data.x.astype(np.float64)

    def positives(concept: str) -> np.ndarray:
        ids = [s.variants[concept].id for s in corpus.scenarios]
        ids += [t.id for t in corpus.stories if t.concept == concept]
        return x[[row[i] for i in ids]]

    means = {c: positives(c).mean(0) for c in CONCEPTS}
    neutral = x[[row[t.id] for t in corpus.neutral]].mean(0)
    combined = extract(data, corpus, method="combined")
    subspace = extract(data, corpus, method="subspace")
    for i, concept in enumerate(combined.concepts):
        others = np.mean([means[c] for c in CONCEPTS if c != concept], axis=0)
        np.testing.assert_allclose(combined.raw_norm[i],
                                   np.linalg.norm(means[concept] - others, axis=-1), rtol=1e-5)
        n_st = len(stories.get(concept, ()))
        n_sc = len(corpus.scenarios)
        paired = np.mean([x[row[s.variants[concept].id]] - x[row[s.baseline.id]]
                          for s in corpus.scenarios], axis=0)
        diff = n_sc * paired
        if n_st:
            diff = diff + n_st * (stories[concept].astype(np.float64).mean(0) - neutral)
        j = subspace.concepts.index(concept)
        np.testing.assert_allclose(subspace.raw_norm[j],
                                   np.linalg.norm(diff / (n_sc + n_st), axis=-1), rtol=1e-5)
        assert combined.counts[concept] == subspace.counts[concept] == n_sc + n_st


def test_an_unknown_method_lists_every_method() -> None:
    import re

    from amygdala.vectors._extract import METHODS

    corpus, data = planted()
    listed = re.escape(", ".join(METHODS))
    with pytest.raises(ValueError, match=rf"^unknown method 'nope'; expected one of {listed}$"):
        extract(data, corpus, method="nope")  # type: ignore[arg-type]
