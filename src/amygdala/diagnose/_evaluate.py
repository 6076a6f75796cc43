"""Held-out evaluation with honest layer choice, intervals, and a baseline-free read-out.

`evaluate` runs, per method (see ``docs/evaluation.md``):

1. nested leave-one-scenario-out accuracy on two tasks, ``paired`` (variant minus its own
   baseline, among the scenario's concepts) and ``readout`` (the variant alone, z-scored
   against neutral text, among all concepts); the layer for each held-out scenario is
   chosen on inner folds of the other scenarios (`amygdala.diagnose._nested`);
2. 95% bootstrap intervals over scenarios, a confusion matrix and per-concept
   precision/recall for each task;
3. cross-format transfer (`amygdala.diagnose._transfer`);
4. optionally a learning curve (`amygdala.diagnose._curve`);

next to a bag-of-words classifier on the same folds and chance. The per-layer
leave-one-scenario-out accuracy is kept as a diagnostic; picking its best row would choose
the layer on the reported folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.diagnose._bow import BagOfWords, variant_texts
from amygdala.diagnose._curve import CURVE_SIZES, CurvePoint, learning_curve
from amygdala.diagnose._folds import make_fitter
from amygdala.diagnose._intervals import (
    Accuracy,
    Confusion,
    accuracy_with_interval,
    confusion,
)
from amygdala.diagnose._nested import TASKS, Items, run_nested
from amygdala.diagnose._transfer import Transfer, paired_to_stories, stories_to_paired
from amygdala.errors import CorpusError, UnknownSiteError
from amygdala.vectors._extract import ExtractionInput, Method, Normalisation

__all__ = ["FORMAT_VERSION", "Evaluation", "MethodEvaluation", "evaluate"]

FORMAT_VERSION = 2
PROTOCOL = (
    "nested leave-one-scenario-out: for each held-out scenario the layer is chosen by "
    "cross-validation over the other scenario groups, the method refitted on every other "
    "scenario at that layer; 95% percentile bootstrap over scenarios (2000 replicates)"
)


@attrs.frozen(kw_only=True)
class MethodEvaluation:
    """Everything measured for one method.

    Attributes:
        method: the method.
        accuracy: ``{task: nested Accuracy}`` for ``paired`` and ``readout``.
        chosen_layers: ``{task: {layer: held-out scenarios it was chosen for}}``.
        recommended: ``{task: layer}`` the inner selection picks on the whole corpus.
        per_layer: ``{task: leave-one-scenario-out accuracy per layer}`` (diagnostic).
        confusion: ``{task: Confusion}`` of the nested guesses.
        transfer: ``{"paired_to_stories" | "stories_to_paired": Transfer}`` where measurable.
        curve: learning-curve points (empty unless asked for).
    """

    method: str
    accuracy: dict[str, Accuracy]
    chosen_layers: dict[str, dict[int, int]]
    recommended: dict[str, int]
    per_layer: dict[str, tuple[float, ...]]
    confusion: dict[str, Confusion]
    transfer: dict[str, Transfer] = attrs.field(factory=dict)
    curve: tuple[CurvePoint, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {}
        for task in TASKS:
            conf = self.confusion[task]
            out[task] = {
                **self.accuracy[task].to_json(), "recommended_layer": self.recommended[task],
                "chosen_layers": {str(k): v for k, v in sorted(self.chosen_layers[task].items())},
                "per_layer_diagnostic": [round(a, 4) for a in self.per_layer[task]],
                "per_concept": conf.per_concept(), "confusion": conf.to_json(),
            }
        out["transfer"] = {k: v.to_json() for k, v in self.transfer.items()}
        out["learning_curve"] = [p.to_json() for p in self.curve]
        return out

    @classmethod
    def from_json(cls, method: str, data: dict[str, Any]) -> MethodEvaluation:
        """Inverse of `to_json`."""
        return cls(
            method=method,
            accuracy={t: Accuracy.from_json(data[t]) for t in TASKS},
            chosen_layers={t: {int(k): v for k, v in data[t]["chosen_layers"].items()}
                           for t in TASKS},
            recommended={t: data[t]["recommended_layer"] for t in TASKS},
            per_layer={t: tuple(data[t]["per_layer_diagnostic"]) for t in TASKS},
            confusion={t: Confusion.from_json(data[t]["confusion"]) for t in TASKS},
            transfer={k: Transfer.from_json(v) for k, v in data.get("transfer", {}).items()},
            curve=tuple(CurvePoint.from_json(p) for p in data.get("learning_curve", [])))


@attrs.frozen(kw_only=True)
class Evaluation:
    """Held-out accuracy of several methods (see the module docstring).

    Attributes:
        methods: the methods evaluated.
        layers: the layers evaluated.
        accuracy: ``[methods, layers]`` leave-one-scenario-out accuracy of the paired task
            per layer: a diagnostic (its best row is chosen on the reported folds).
        recommended: ``{method: layer}``, the one best-layer rule every consumer uses: the
            layer the nested procedure's inner selection picks on the whole corpus (paired
            task).
        per_concept: ``{method: {concept: nested paired accuracy}}``.
        n_items: held-out variants scored in the paired task.
        chance: chance level of the paired task.
        bag_of_words: nested-fold bag-of-words accuracy on the paired task.
        results: per-method details (empty for an ``evaluation.json`` of format 1).
        baselines: ``{task or transfer: bag-of-words Accuracy}``.
        settings: how it was run (folds, seed, fixed layer...).
    """

    methods: tuple[str, ...]
    layers: tuple[int, ...]
    accuracy: np.ndarray = attrs.field(eq=False)
    recommended: dict[str, int]
    per_concept: dict[str, dict[str, float]]
    n_items: int
    chance: float
    bag_of_words: float
    results: dict[str, MethodEvaluation] = attrs.field(factory=dict)
    baselines: dict[str, Accuracy] = attrs.field(factory=dict)
    settings: dict[str, Any] = attrs.field(factory=dict)

    def best_layer(self, method: str) -> tuple[int, float]:
        """The recommended layer of ``method`` and its nested paired accuracy.

        The accuracy is the nested one (each held-out scenario at the layer chosen without
        it), not the accuracy at the recommended layer, which would be chosen on the folds.
        """
        layer = self.recommended[method]
        if method in self.results:
            return layer, self.results[method].accuracy["paired"].value
        return layer, float(self.accuracy[self.methods.index(method),
                                          self.layers.index(layer)])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``evaluation.json``)."""
        best = {}
        for m in self.methods:
            layer, acc = self.best_layer(m)
            best[m] = {"layer": layer, "accuracy": round(acc, 4)}
            if m in self.results:
                best[m]["ci95"] = self.results[m].accuracy["paired"].to_json()["ci95"]
        return {
            "format_version": FORMAT_VERSION, "protocol": PROTOCOL, "settings": self.settings,
            "methods": list(self.methods), "layers": list(self.layers),
            "recommended_layer": dict(self.recommended), "best": best,
            "accuracy": {m: [round(float(a), 4) for a in self.accuracy[i]]
                         for i, m in enumerate(self.methods)},
            "accuracy_is": "per-layer leave-one-scenario-out diagnostic (paired task); "
                           "layer choice on these folds is optimistic",
            "per_concept_at_best_layer": self.per_concept,
            "n_items": self.n_items, "chance": round(self.chance, 4),
            "bag_of_words": round(self.bag_of_words, 4),
            "bag_of_words_detail": {k: v.to_json() for k, v in self.baselines.items()},
            "results": {m: r.to_json() for m, r in self.results.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        """Inverse of `to_json`; also reads format-1 files (their ``best`` becomes
        ``recommended``)."""
        methods = tuple(data["methods"])
        recommended = data.get("recommended_layer") or {m: data["best"][m]["layer"]
                                                        for m in methods}
        return cls(methods=methods, layers=tuple(data["layers"]),
                   accuracy=np.array([data["accuracy"][m] for m in methods]),
                   recommended=recommended,
                   per_concept=data["per_concept_at_best_layer"], n_items=data["n_items"],
                   chance=data["chance"], bag_of_words=data["bag_of_words"],
                   results={m: MethodEvaluation.from_json(m, r)
                            for m, r in data.get("results", {}).items()},
                   baselines={k: Accuracy.from_json(v)
                              for k, v in data.get("bag_of_words_detail", {}).items()},
                   settings=data.get("settings", {}))

    def render(self) -> str:
        """The printed summary (see `render_evaluation`)."""
        from amygdala.diagnose._render_eval import render_evaluation

        return render_evaluation(self)


def _bow_nested(corpus: Corpus, items: Items, seed: int) -> dict[str, Accuracy]:
    """Bag-of-words on the leave-one-scenario-out folds, both tasks."""
    bow = BagOfWords(variant_texts(corpus))
    n_c = len(items.concepts)
    guesses = np.full((len(TASKS), len(items.truth)), -1, np.int64)
    for s in range(items.n_scenarios):
        idx = np.flatnonzero(items.scenario == s)
        train = items.scenario != s
        everything = np.ones((len(idx), n_c), bool)
        guesses[0, idx] = bow.guess(train, items.truth, n_c, idx, items.candidates[idx],
                                    truth=items.truth[idx])
        guesses[1, idx] = bow.guess(train, items.truth, n_c, idx, everything,
                                    truth=items.truth[idx])
    out = {}
    for t, task in enumerate(TASKS):
        ok = guesses[t] >= 0
        chance = _chance(items, task, ok, np.ones(n_c, bool))
        out[task] = accuracy_with_interval(guesses[t, ok] == items.truth[ok],
                                           items.scenario[ok], chance=chance, seed=seed)
    return out


def _bow_transfer(corpus: Corpus, items: Items, seed: int) -> dict[str, Accuracy]:
    index = {c: i for i, c in enumerate(items.concepts)}
    stories = [t for t in corpus.stories if t.concept in index]
    if not stories or not corpus.scenarios:
        return {}
    var, sto = BagOfWords.pair(variant_texts(corpus), [t.text for t in stories])
    s_truth = np.asarray([index[str(t.concept)] for t in stories])
    n_c = len(items.concepts)
    out = {}
    g = var.guess(np.ones(len(items.truth), bool), items.truth, n_c, np.arange(len(stories)),
                  np.ones((len(stories), n_c), bool), other=sto, truth=s_truth)
    ok = g >= 0
    n_fit = len(set(items.truth.tolist()))
    out["paired_to_stories"] = accuracy_with_interval(
        g[ok] == s_truth[ok], np.arange(len(stories))[ok], chance=1 / n_fit, seed=seed)
    g = sto.guess(np.ones(len(stories), bool), s_truth, n_c, np.arange(len(items.truth)),
                  np.ones((len(items.truth), n_c), bool), other=var, truth=items.truth)
    ok = g >= 0
    n_fit = len(set(s_truth.tolist()))
    out["stories_to_paired"] = accuracy_with_interval(
        g[ok] == items.truth[ok], items.scenario[ok], chance=1 / n_fit, seed=seed)
    return out


def _chance(items: Items, task: str, ok: np.ndarray, fitted: np.ndarray) -> float:
    if not ok.any():
        return float("nan")
    if task == "paired":
        sizes = (items.candidates[ok] & fitted[None]).sum(axis=1)
        return float(np.mean(1.0 / sizes))
    return 1.0 / int(fitted.sum())


def _method_result(method: str, data: ExtractionInput, corpus: Corpus, items: Items, *,
                   normalisation: Normalisation, folds: int, seed: int,
                   layer_index: int | None, curve: bool, curve_draws: int,
                   curve_sizes: Sequence[int]) -> MethodEvaluation:
    fitter = make_fitter(data, corpus, method, normalisation=normalisation,
                         concepts=items.concepts)
    run = run_nested(fitter, items, folds=folds, seed=seed, layer_index=layer_index)
    fitted_any = np.zeros(len(items.concepts), bool)
    fitted_any[np.unique(items.truth)] = True
    accuracy, per_layer, conf, chosen, recommended = {}, {}, {}, {}, {}
    for t, task in enumerate(TASKS):
        ok = run.nested[t] >= 0
        accuracy[task] = accuracy_with_interval(
            run.nested[t, ok] == items.truth[ok], items.scenario[ok],
            chance=_chance(items, task, ok, fitted_any), seed=seed)
        valid = run.per_layer[t, :, 0] >= 0
        per_layer[task] = tuple(float(x) for x in (
            run.per_layer[t, valid] == items.truth[valid, None]).mean(axis=0))
        conf[task] = confusion(items.truth, run.nested[t], items.concepts)
        layers, counts = np.unique(run.chosen[t], return_counts=True)
        chosen[task] = {data.layers[int(i)]: int(n) for i, n in zip(layers, counts, strict=True)}
        recommended[task] = data.layers[int(run.recommended[t])]
    transfer: dict[str, Transfer] = {}
    for name, fn in (("paired_to_stories", paired_to_stories),
                     ("stories_to_paired", stories_to_paired)):
        try:
            result = fn(data, corpus, method, normalisation=normalisation, items=items,
                        folds=folds, seed=seed, layer_index=layer_index)
        except CorpusError:
            result = None
        if result is not None:
            transfer[name] = result
    points: tuple[CurvePoint, ...] = ()
    if curve:
        points = learning_curve(fitter, items, sizes=curve_sizes, draws=curve_draws,
                                folds=folds, seed=seed, layer_index=layer_index)
    return MethodEvaluation(method=method, accuracy=accuracy, chosen_layers=chosen,
                            recommended=recommended, per_layer=per_layer, confusion=conf,
                            transfer=transfer, curve=points)


def evaluate(
    data: ExtractionInput, corpus: Corpus, *, methods: Sequence[Method] = ("paired",),
    normalisation: Normalisation = "standardise", layer: int | None = None, folds: int = 5,
    seed: int = 0, curve: bool = False, curve_draws: int = 3,
    curve_sizes: Sequence[int] = CURVE_SIZES,
) -> Evaluation:
    """Nested held-out accuracy, baseline-free read-out and transfer for each method.

    Args:
        data: activations of every corpus text (from `capture_corpus`).
        corpus: the corpus.
        methods: methods to compare; ``unpaired`` needs stories.
        normalisation: as in `extract`.
        layer: evaluate this model layer only (no selection).
        folds: scenario groups for the inner layer selection.
        seed: seeds groups, bootstrap and learning-curve draws.
        curve: also measure the learning curve.
        curve_draws: random draws per learning-curve size.
        curve_sizes: learning-curve training-set sizes (``all`` is always added).

    Returns:
        An `Evaluation`.

    Raises:
        CorpusError: fewer than 3 scenarios, or no held-out variant could be scored.
        UnknownSiteError: ``layer`` is not among the data's layers.
    """
    if layer is not None and layer not in data.layers:
        raise UnknownSiteError(f"layer {layer} was not captured; the data has layers "
                               f"{list(data.layers)}: pass one of them to --layer")
    layer_index = None if layer is None else data.layers.index(layer)
    items = Items(data, corpus, corpus.concepts)
    if len(items.truth) == 0:
        raise CorpusError("the corpus has no paired variants to evaluate; add paired/ "
                          "scenarios")
    results: dict[str, MethodEvaluation] = {
        m: _method_result(m, data, corpus, items, normalisation=normalisation, folds=folds,
                          seed=seed, layer_index=layer_index, curve=curve,
                          curve_draws=curve_draws, curve_sizes=curve_sizes) for m in methods}
    baselines = {**_bow_nested(corpus, items, seed),
                 **_bow_transfer(corpus, items, seed)}
    first = results[methods[0]].accuracy["paired"]
    return Evaluation(
        methods=tuple(methods), layers=data.layers,
        accuracy=np.array([results[m].per_layer["paired"] for m in methods]),
        recommended={m: results[m].recommended["paired"] for m in methods},
        per_concept={m: {c: round(v, 4) for c, v in
                         sorted(results[m].confusion["paired"].recall().items())}
                     for m in methods},
        n_items=first.n_items, chance=first.chance,
        bag_of_words=baselines["paired"].value, results=results, baselines=baselines,
        settings={"folds": folds, "seed": seed, "normalisation": normalisation,
                  "fixed_layer": layer, "learning_curve": curve, "curve_draws": curve_draws,
                  "bootstrap": 2000},
    )
