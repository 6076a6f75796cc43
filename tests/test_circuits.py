"""Tests of amygdala.diagnose._circuits and amygdala.diagnose._circuit_experiments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch

from amygdala._types import Pooling, Site
from amygdala.backends._registry import Ablation, Backend, get_backend
from amygdala.corpus._model import Corpus
from amygdala.diagnose._circuit_experiments import (
    CircuitExperiments,
    circuit_experiments,
    render_summary,
)
from amygdala.diagnose._circuits import (
    Circuit,
    CircuitFileError,
    HeadScore,
    NeuronScore,
    circuit_from_pairs,
    find_circuit,
    overlap_matrix,
    readout,
)
from amygdala.vectors._set import SteeringVectorSet
from tests.conftest import tiny_llama

PAIRS = [
    ("Mo walked home slowly, dreading every step of it.", "Mo walked home at six."),
    ("Ana laughed and ran to the door, thrilled.", "Ana went to the door."),
    ("The old dog lay still, and nobody came back.", "The old dog lay on the mat."),
]
READ = 2


def _reader(backend: Backend, seed: int = 0) -> np.ndarray:
    u = np.random.default_rng(seed).standard_normal(backend.dims.d_model)
    return u / np.linalg.norm(u)  # type: ignore[no-any-return]


def _projection(backend: Backend, reader: np.ndarray,
                ablations: list[Ablation] | None = None) -> float:
    """Paired projection at READ through the public API (capture, one config at a time)."""
    texts = [t for pair in PAIRS for t in pair]
    with backend.ablating(ablations or []):
        pooled = backend.capture(texts, [Site(layer=READ)], Pooling())[Site(layer=READ)]
    proj = pooled.double().numpy() @ reader
    return float((proj[0::2] - proj[1::2]).mean())


# ----- forward passes -----------------------------------------------------------------

def test_readout_matches_capture_and_leaves_no_hooks(tiny_backend: Backend) -> None:
    texts = [t for pair in PAIRS for t in pair]
    before = tiny_backend.logits(texts)
    got = readout(tiny_backend, texts, [[]], [(i, 0) for i in range(len(texts))], layer=1,
                  batch_size=4)
    want = tiny_backend.capture(texts, [Site(layer=1)], Pooling())[Site(layer=1)]
    np.testing.assert_allclose(got, want.double().numpy(), atol=1e-5)
    torch.testing.assert_close(tiny_backend.logits(texts), before)


def test_readout_removes_hooks_when_an_ablation_fails(tiny_backend: Backend) -> None:
    texts = [PAIRS[0][0]]
    before = tiny_backend.logits(texts)
    bad = [[Ablation(layer=0, component="heads", indices=(99,))]]
    with pytest.raises(LookupError):
        readout(tiny_backend, texts, bad, [(0, 0)], layer=1)
    torch.testing.assert_close(tiny_backend.logits(texts), before)


# ----- attribution --------------------------------------------------------------------

def test_head_sweep_batched_equals_one_at_a_time(tiny_backend: Backend) -> None:
    u = _reader(tiny_backend)
    circuit = circuit_from_pairs(tiny_backend, concept="x", pairs=PAIRS, reader=u, layer=READ,
                                 batch_size=5)
    texts = [t for pair in PAIRS for t in pair]
    sites = [Site(layer=x, point="attn_heads") for x in range(READ + 1)]
    captured = tiny_backend.capture(texts, sites, Pooling())
    clean = _projection(tiny_backend, u)
    assert circuit.clean_projection == pytest.approx(clean, abs=1e-5)
    assert len(circuit.heads) == (READ + 1) * tiny_backend.dims.n_heads
    for head in circuit.heads:
        zero = clean - _projection(tiny_backend, u, [
            Ablation(layer=head.layer, component="heads", indices=(head.index,))])
        means = captured[Site(layer=head.layer, point="attn_heads")].mean(0)
        mean = clean - _projection(tiny_backend, u, [
            Ablation(layer=head.layer, component="heads", indices=(head.index,), mode="mean",
                     means=means)])
        assert head.zero == pytest.approx(zero, abs=1e-5)
        assert head.mean == pytest.approx(mean, abs=1e-5)
        assert head.score == head.mean  # the default ranking
    scores = [h.score for h in circuit.heads]
    assert scores == sorted(scores, reverse=True)


def test_neuron_scores_at_the_read_layer_equal_their_ablation(tiny_backend: Backend) -> None:
    # A neuron of block L writes straight into resid_post L: its score is exact.
    u = _reader(tiny_backend)
    circuit = circuit_from_pairs(tiny_backend, concept="x", pairs=PAIRS, reader=u, layer=READ,
                                 head_method="direct", keep_neurons=400)
    clean = _projection(tiny_backend, u)
    at_read = [n for n in circuit.neurons if n.layer == READ]
    for n in (at_read[0], at_read[-1]):
        drop = clean - _projection(tiny_backend, u, [
            Ablation(layer=READ, component="neurons", indices=(n.index,))])
        assert n.score == pytest.approx(drop, abs=1e-5)


@pytest.mark.parametrize("backend_name", ["torch", "transformer_lens"])
def test_neuron_whose_w_down_is_the_reader_ranks_first(backend_name: str) -> None:
    loaded = tiny_llama()
    backend = get_backend(backend_name, loaded)
    u = _reader(backend)
    texts = [t for pair in PAIRS for t in pair]
    site = Site(layer=1, point="mlp_neurons")
    acts = backend.capture(texts, [site], Pooling())[site].double().numpy()
    diff = (acts[0::2] - acts[1::2]).mean(0)
    target = int(np.argmax(np.abs(diff)))
    with torch.no_grad():  # down_proj stores [d_model, d_mlp]: column `target` is its write
        weight = loaded.model.model.layers[1].mlp.down_proj.weight
        weight[:, target] = torch.as_tensor(np.sign(diff[target]) * 100 * u, dtype=weight.dtype)
    circuit = circuit_from_pairs(backend, concept="x", pairs=PAIRS, reader=u, layer=READ,
                                 head_method="direct")
    assert (circuit.neurons[0].layer, circuit.neurons[0].index) == (1, target)
    w_u = backend.mlp_out_weights(1).double().numpy() @ u
    for n in circuit.neurons[:20]:
        if n.layer == 1:
            assert n.score == pytest.approx(diff[n.index] * w_u[n.index], rel=1e-4, abs=1e-7)
    assert all(h.zero is None for h in circuit.heads)


def test_arguments_are_checked() -> None:
    backend = get_backend("torch", tiny_llama())
    u = _reader(backend)
    with pytest.raises(ValueError, match="reader must have shape"):
        circuit_from_pairs(backend, concept="x", pairs=PAIRS, reader=u[:3], layer=1)
    with pytest.raises(LookupError, match="head layers"):
        circuit_from_pairs(backend, concept="x", pairs=PAIRS, reader=u, layer=1, head_layers=[2])
    with pytest.raises(ValueError, match="head_method"):
        circuit_from_pairs(backend, concept="x", pairs=PAIRS, reader=u, layer=1,
                           head_method="gradient")  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="out of range"):
        circuit_from_pairs(backend, concept="x", pairs=PAIRS, reader=u, layer=9)


# ----- the Circuit object ---------------------------------------------------------------

def _circuit(concept: str, neurons: list[tuple[int, int]], heads: list[tuple[int, int]]
             ) -> Circuit:
    return Circuit(
        concept=concept, layer=2,
        neurons=tuple(NeuronScore(layer=lay, index=i, score=1.0 / (r + 1))
                      for r, (lay, i) in enumerate(neurons)),
        heads=tuple(HeadScore(layer=lay, index=i, score=1.0 / (r + 1), direct=0.5,
                              zero=1.0 / (r + 1), mean=None)
                    for r, (lay, i) in enumerate(heads)),
        size_neurons=len(neurons), size_heads=len(heads), clean_projection=0.25,
        model_id="m", fingerprint="f", params={"k": [1, 2], "pooling": "mean_skip2"})


def test_json_round_trip(tmp_path: Path) -> None:
    u = _reader(get_backend("torch", tiny_llama()))
    circuit = circuit_from_pairs(get_backend("torch", tiny_llama()), concept="x", pairs=PAIRS,
                                 reader=u, layer=1, keep_neurons=30)
    path = circuit.save(tmp_path / "c", extra={"experiments": {"a": 1}})
    assert path == tmp_path / "c" / "x.json"
    loaded = Circuit.load(path)
    assert loaded == circuit
    assert Circuit.load(tmp_path / "c", concept="x") == circuit
    assert loaded.params == circuit.params
    assert json.loads(path.read_text())["experiments"] == {"a": 1}
    assert not list(path.parent.glob(".*tmp"))  # the temporary file was renamed away
    (tmp_path / "bad.json").write_text('{"format_version": 99}')
    with pytest.raises(CircuitFileError, match="format_version"):
        Circuit.load(tmp_path / "bad.json")
    with pytest.raises(CircuitFileError, match="cannot read"):
        Circuit.load(tmp_path / "missing.json")


def test_jaccard_overlap() -> None:
    a = _circuit("a", [(0, 1), (0, 2), (1, 5)], [(0, 0)])
    b = _circuit("b", [(0, 2), (1, 5), (1, 6)], [(1, 1)])
    c = _circuit("c", [], [])
    m = overlap_matrix([a, b, c])
    np.testing.assert_allclose(m, [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(overlap_matrix([a, b], component="heads"), [[1, 0], [0, 1]])
    np.testing.assert_allclose(overlap_matrix([a, b], k=1), [[1, 0], [0, 1]])


def test_ablations_group_top_components_by_layer() -> None:
    c = _circuit("a", [(0, 1), (1, 5), (0, 2)], [(1, 3), (0, 0)])
    out = c.ablations(factor=2.0)
    assert [(a.layer, a.component, a.indices, a.mode, a.factor) for a in out] == [
        (0, "neurons", (1, 2), "scale", 2.0), (1, "neurons", (5,), "scale", 2.0),
        (0, "heads", (0,), "scale", 2.0), (1, "heads", (3,), "scale", 2.0)]
    assert [a.indices for a in c.ablations(factor=3.0, k_neurons=1, k_heads=0)] == [(1,)]
    assert {a.mode for a in c.ablations(mode="zero", factor=0.0)} == {"zero"}
    with pytest.raises(ValueError, match="mode must be"):
        c.ablations(mode="mean", factor=1.0)  # type: ignore[arg-type]
    assert c.neuron_sets(2) == {0: (1,), 1: (5,)}
    assert c.head_sets() == {0: (0,), 1: (3,)}


def test_scaling_by_one_changes_nothing(tiny_backend: Backend) -> None:
    u = _reader(tiny_backend)
    circuit = circuit_from_pairs(tiny_backend, concept="x", pairs=PAIRS, reader=u, layer=READ,
                                 head_method="direct", size_neurons=10, size_heads=2)
    clean = _projection(tiny_backend, u)
    assert _projection(tiny_backend, u, circuit.ablations(factor=1.0)) == pytest.approx(
        clean, abs=1e-6)
    zeroed = _projection(tiny_backend, u, circuit.ablations(mode="zero", factor=0.0))
    assert _projection(tiny_backend, u, circuit.ablations(factor=0.0)) == pytest.approx(
        zeroed, abs=1e-6)


# ----- experiments on a tiny corpus ----------------------------------------------------

def _tiny_corpus(root: Path) -> Corpus:
    texts = {
        "walk": ("Mo walked home at six.", {"a": "Mo walked home, terrified of the dark.",
                                             "b": "Mo walked home, delighted by the sky."}),
        "door": ("Ana went to the door.", {"a": "Ana crept to the door, shaking.",
                                           "b": "Ana ran to the door, laughing."}),
        "dog": ("The dog lay on the mat.", {"a": "The dog lay still, afraid of the storm.",
                                            "b": "The dog rolled on the mat, happy."}),
    }
    for slug, (baseline, variants) in texts.items():
        folder = root / "paired" / slug
        folder.mkdir(parents=True)
        (folder / "baseline.txt").write_text(baseline + "\n")
        for concept, text in variants.items():
            (folder / f"{concept}.txt").write_text(text + "\n")
    return Corpus.load(root)


def _tiny_vectors(backend: Backend) -> SteeringVectorSet:
    rng = np.random.default_rng(1)
    d, n_layers = backend.dims.d_model, backend.dims.n_layers
    directions = rng.standard_normal((2, n_layers, d)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return SteeringVectorSet(
        concepts=("a", "b"), layers=range(n_layers), directions=directions,
        raw_norm=np.ones((2, n_layers), np.float32), resid_norm=np.ones(n_layers, np.float32),
        mean=np.zeros((n_layers, d), np.float32), std=np.ones((n_layers, d), np.float32),
        method="paired", normalisation="raw")


def test_experiments_on_a_tiny_corpus(tiny_backend: Backend, tmp_path: Path) -> None:
    corpus = _tiny_corpus(tmp_path)
    vectors = _tiny_vectors(tiny_backend)
    circuit = find_circuit(tiny_backend, vectors, corpus, "a", layer=READ, size_neurons=6,
                           size_heads=2)
    assert circuit.params["scenarios"] == ["dog", "door", "walk"]
    result = circuit_experiments(tiny_backend, circuit, vectors, corpus, k_neurons=(3, 6),
                                 k_heads=(2,), draws=5, scales=(1.0, 2.0), n_boot=200,
                                 batch_size=7)
    assert [(e.kind, e.k) for e in result.ablation] == [("neurons", 3), ("neurons", 6),
                                                        ("heads", 2)]
    assert result.clean_projection == pytest.approx(circuit.clean_projection, abs=1e-5)
    for effect in result.ablation:
        assert len(effect.random_drops) == 5
        assert 0.0 <= effect.accuracy_top <= 1.0
    # The experiment's top-k drop equals the drop measured through the public API.
    texts_pairs = [(s.variants["a"].text, s.baseline.text) for s in corpus.scenarios]
    u = vectors.readers(READ)[0].astype(np.float64)
    six = circuit.ablations(mode="zero", factor=0.0, k_neurons=6, k_heads=0)
    texts = [t for pair in texts_pairs for t in pair]
    with tiny_backend.ablating(six):
        pooled = tiny_backend.capture(texts, [Site(layer=READ)], Pooling())[Site(layer=READ)]
    proj = pooled.double().numpy() @ u
    ablated = float((proj[0::2] - proj[1::2]).mean())
    effect = result.effect("neurons", 6)
    assert effect is not None
    assert effect.drop == pytest.approx(result.clean_projection - ablated, abs=1e-5)
    ones = [e for e in result.enhancement if e.factor == 1.0]
    assert ones
    assert all(abs(e.rise) < 1e-6 for e in ones)
    assert {s.kind for s in result.specificity} == {"neurons", "heads"}
    assert set(result.specificity[0].others) == {"b"}
    record: dict[str, Any] = json.loads(json.dumps(result.to_json()))
    assert record["ablation"][0]["k"] == 3
    assert "passes" in record["ablation"][0]
    assert "neurons k=50" in render_summary([result])
    again = CircuitExperiments.from_json(record)
    assert again.ablation[0].drop == result.ablation[0].drop
    assert [(x.kind, set(x.others)) for x in again.specificity] == [
        (x.kind, set(x.others)) for x in result.specificity]
    assert [e.rise for e in again.enhancement] == [e.rise for e in result.enhancement]


def _four_scenarios(root: Path, planted: bool = False) -> Corpus:
    """Four scenarios; with ``planted``, two of them (the_dog, the_walk) are rewritten."""
    texts = {
        "the_walk": ("Mo walked home at six.", {"a": "Mo walked home, terrified of the dark.",
                                                 "b": "Mo walked home, delighted by the sky."}),
        "the_door": ("Ana went to the door.", {"a": "Ana crept to the door, shaking.",
                                               "b": "Ana ran to the door, laughing."}),
        "the_dog": ("The dog lay on the mat.", {"a": "The dog lay still, afraid of the storm.",
                                                "b": "The dog rolled on the mat, happy."}),
        "the_bus": ("Li took the bus to work.", {"a": "Li took the bus, dreading the boss.",
                                                 "b": "Li took the bus, grinning all the way."}),
    }
    if planted:
        for slug in ("the_dog", "the_walk"):
            texts[slug] = ("QQQQ ZZZZ 0000 ####.", {"a": "!!!! XXXXXXXX zzzz ~~~~ ????????",
                                                   "b": "@@@@ 1234 5678 %%%%"})
    for slug, (baseline, variants) in texts.items():
        folder = root / "paired" / slug
        folder.mkdir(parents=True)
        (folder / "baseline.txt").write_text(baseline + "\n")
        for concept, text in variants.items():
            (folder / f"{concept}.txt").write_text(text + "\n")
    return Corpus.load(root)


def test_crossfit_never_ranks_on_the_held_out_half(tmp_path: Path) -> None:
    from amygdala.diagnose._circuit_experiments import assign_folds, crossfit_experiments

    backend = get_backend("torch", tiny_llama())
    vectors = _tiny_vectors(backend)
    options: dict[str, Any] = {"layer": READ, "k_neurons": (4,), "k_heads": (2,), "draws": 2,
                               "selections": 2, "scales": (2.0,), "head_method": "direct",
                               "n_boot": 200, "seed": 3}
    clean = _four_scenarios(tmp_path / "clean")
    planted = _four_scenarios(tmp_path / "planted", planted=True)
    # The folds depend on the slugs and the seed only; find the fold that holds out the
    # rewritten scenarios.
    folds = assign_folds(["the_bus", "the_dog", "the_door", "the_walk"], 2, 3)
    held = folds.index(("the_dog", "the_walk")) if ("the_dog", "the_walk") in folds else None
    if held is None:
        options["seed"] = next(seed for seed in range(50) if ("the_dog", "the_walk") in
                               assign_folds(["the_bus", "the_dog", "the_door", "the_walk"],
                                            2, seed))
        folds = assign_folds(["the_bus", "the_dog", "the_door", "the_walk"], 2, options["seed"])
        held = folds.index(("the_dog", "the_walk"))
    a = crossfit_experiments(backend, vectors, clean, "a", **options)
    b = crossfit_experiments(backend, vectors, planted, "a", **options)
    for fold in a.folds:
        assert not set(fold.train) & set(fold.test)
        assert set(fold.train) | set(fold.test) == {"the_bus", "the_dog", "the_door", "the_walk"}
    # Rewriting the held-out scenarios changes what is measured on them...
    assert a.folds[held].test == ("the_dog", "the_walk")
    assert a.folds[held].clean_projection != pytest.approx(b.folds[held].clean_projection)
    # ...but not what was ranked without them: neither the neurons nor the heads.
    assert a.folds[held].top_neurons == b.folds[held].top_neurons
    assert a.folds[held].top_heads == b.folds[held].top_heads
    # The rewrite is strong enough to change a ranking that does see it (the other fold).
    other = 1 - held
    assert (a.folds[other].top_neurons, a.folds[other].top_heads) != (
        b.folds[other].top_neurons, b.folds[other].top_heads)
    effect = a.effect("neurons", 4)
    assert effect is not None and len(effect.fold_drops) == 2
    # The pooled held-out fall is the scenario-weighted mean of the folds' falls (2 + 2).
    assert effect.drop == pytest.approx(np.mean(effect.fold_drops))
    record = json.loads(json.dumps(a.to_json()))
    assert record["procedure"] == "crossfit" and "passes" in record["ablation"][0]
    from amygdala.diagnose._circuit_experiments import CrossFitExperiments

    assert CrossFitExperiments.from_json(record).folds == a.folds


def test_circuit_passes_only_when_intervals_separate() -> None:
    from amygdala.diagnose._circuit_experiments import AblationEffect, HeldOutEffect

    common: dict[str, Any] = {"kind": "neurons", "k": 50, "mode": "zero", "drop": 1.5,
                              "rel_drop": 0.2, "random_drops": (0.3, 0.3, 0.3), "ratio": 5.0,
                              "ratio_ci": (2.0, 9.0), "excess_ci": (0.2, 1.8),
                              "scenario_drops": (1.0, 2.0), "accuracy_clean": 1.0,
                              "accuracy_top": 1.0, "accuracy_random": 1.0}
    # Five times the random fall: the old 3x rule passes it, but the intervals overlap.
    overlap = AblationEffect(**common, drop_ci=(1.0, 2.0), random_ci=(0.1, 1.1))
    assert overlap.passes_ratio and not overlap.passes
    apart = AblationEffect(**common, drop_ci=(1.0, 2.0), random_ci=(0.1, 0.9))
    assert apart.passes
    held: dict[str, Any] = {"kind": "heads", "k": 5, "drop": 1.5, "random_drop": 0.3,
                            "fold_drops": (1.5,), "fold_random_drops": (0.3,), "rel_drop": 0.2,
                            "selection_jaccard": 1.0, "accuracy_clean": 1.0,
                            "accuracy_top": 1.0, "accuracy_random": 1.0}
    assert not HeldOutEffect(**held, drop_ci=(1.0, 2.0), random_ci=(0.1, 1.0)).passes
    assert HeldOutEffect(**held, drop_ci=(1.0, 2.0), random_ci=(0.1, 0.99)).passes
    assert not HeldOutEffect(**held, drop_ci=(np.nan, 2.0), random_ci=(0.1, 0.2)).passes


def test_selection_error_enters_the_interval() -> None:
    from amygdala.diagnose._circuit_experiments import _selection_bootstrap

    # Row 0 (whole-half selection) falls by 5 on every held-out scenario, every
    # re-selection by 1: the interval must come from the re-selections only.
    top = [np.array([[5.0, 5.0], [1.0, 1.0], [1.0, 1.0]]), np.array([[5.0], [1.0], [1.0]])]
    rand = [np.zeros((3, 2)), np.zeros((3, 1))]
    drop_ci, random_ci = _selection_bootstrap(top, rand, 100, np.random.default_rng(0))
    assert drop_ci == pytest.approx((1.0, 1.0)) and random_ci == (0.0, 0.0)
    # Without re-selections, row 0 is all there is.
    drop_ci, _ = _selection_bootstrap([t[:1] for t in top], rand, 100, np.random.default_rng(0))
    assert drop_ci == pytest.approx((5.0, 5.0))


def test_random_draws_match_per_layer_counts() -> None:
    from amygdala.diagnose._circuit_experiments import _draw

    top = [NeuronScore(layer=0, index=i, score=1.0) for i in range(3)] + [
        NeuronScore(layer=2, index=7, score=1.0)]
    for seed in range(5):
        drawn = _draw({0: 10, 1: 10, 2: 10}, top, np.random.default_rng(seed))
        assert {k: len(v) for k, v in drawn.items()} == {0: 3, 2: 1}
        assert not set(drawn[0]) & {0, 1, 2}
        assert 7 not in drawn[2]


# ----- the real model ---------------------------------------------------------------------

@pytest.mark.smollm
def test_backends_agree_on_ablation_effects(smollm_factory: Any) -> None:
    torch_backend = smollm_factory("torch")
    tl_backend = smollm_factory("transformer_lens")
    u = _reader(torch_backend, seed=3)
    pairs = PAIRS[:2]
    ablations = [Ablation(layer=3, component="neurons", indices=tuple(range(0, 1536, 40))),
                 Ablation(layer=5, component="heads", indices=(1, 4)),
                 Ablation(layer=6, component="neurons", indices=(5, 9), mode="scale", factor=3.0)]
    drops = []
    for backend in (torch_backend, tl_backend):
        texts = [t for pair in pairs for t in pair]
        jobs = [(t, c) for c in (0, 1) for t in range(len(texts))]
        proj = (readout(backend, texts, [[], ablations], jobs, layer=8) @ u).reshape(2, -1)
        paired = proj[:, 0::2] - proj[:, 1::2]
        drops.append(float((paired[0] - paired[1]).mean()))
    assert abs(drops[0]) > 1e-3
    assert abs(drops[0] - drops[1]) / abs(drops[0]) < 1e-3


@pytest.mark.smollm
def test_real_circuit_beats_random_neurons(small_run_copy: Any) -> None:
    run = small_run_copy  # the circuit file is saved into this test's own copy
    vectors, corpus, session = run.result.vectors, run.corpus, run.session
    circuit = find_circuit(session.backend, vectors, corpus, "afraid", layer=12,
                           max_scenarios=3, store=session.store, head_method="direct")
    assert circuit.params["rank_heads_by"] == "direct"
    result = circuit_experiments(session.backend, circuit, vectors, corpus, k_neurons=(50,),
                                 k_heads=(), draws=5, scales=(2.0,), specificity=False,
                                 n_boot=200)
    assert circuit.clean_projection > 0
    neurons = result.effect("neurons", 50)
    assert neurons is not None
    assert neurons.drop > neurons.random_drop  # top-50 beat the mean of 5 random draws
    assert neurons.drop > 0
    rise = next(e for e in result.enhancement if e.kind == "neurons").rise
    assert rise > 0  # scaling the circuit up raises the projection
    # The circuit file round-trips with its experiments attached.
    path = circuit.save(run.run_dir / "circuits", extra={"experiments": result.to_json()})
    assert path.name == "afraid.json"
    assert Circuit.load(path) == circuit
    assert attrs.evolve(circuit, params={}) == circuit  # params do not take part in equality


# ----- the command line -------------------------------------------------------------------

def test_command_line_options() -> None:
    from amygdala.cli import build_parser

    args = build_parser().parse_args(["circuits", "run", "--all", "--k", "10,50",
                                      "--scales", "2"])
    assert (args.all, args.k, args.k_heads, args.scales, args.heads) == (
        True, (10, 50), (1, 5, 20), (2.0,), "ablation")
    assert (args.procedure, args.folds, args.selections) == ("crossfit", 2, 5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["circuits", "run", "--k", "ten"])
