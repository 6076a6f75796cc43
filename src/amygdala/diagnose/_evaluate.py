"""Held-out evaluation with honest layer choice, intervals, and a baseline-free read-out.

`evaluate` runs, per method (see ``docs/evaluation.md``):

1. nested leave-one-scenario-out accuracy on two tasks, ``paired`` (variant minus its own
   baseline, among the scenario's concepts) and ``readout`` (the variant alone, z-scored
   against neutral text, among all concepts); for each held-out scenario the layer (for
   the read-out also a band of layers), and the probe's shrinkage, are chosen on inner
   folds of the other scenarios (`amygdala.diagnose._nested`);
2. 95% bootstrap intervals over scenarios, a confusion matrix and per-concept
   precision/recall for each task, and the read-out's *detection* (per-concept AUC of the
   ``z`` and of the ``relative`` view, `amygdala.diagnose._detection`), which decides the
   recommended view (the vocabulary of views: `amygdala._views`);
3. cross-format transfer (`amygdala.diagnose._transfer`);
4. optionally a learning curve (`amygdala.diagnose._curve`);

next to a bag-of-words classifier on the same folds and chance. The per-layer
leave-one-scenario-out accuracy is kept as a diagnostic; picking its best row would choose
the layer on the reported folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from amygdala._codec import (
    check_version,
    from_data,
    from_fields,
    register,
    spec,
    to_data,
    to_fields,
)
from amygdala._views import VIEWS, View, view_from_file
from amygdala.corpus._model import Corpus
from amygdala.diagnose._bow import BagOfWords, variant_texts
from amygdala.diagnose._curve import CURVE_SIZES, CurvePoint, learning_curve
from amygdala.diagnose._detection import Detection, detection_auc
from amygdala.diagnose._folds import SHRINKAGE_GRID, make_fitters
from amygdala.diagnose._intervals import (
    Accuracy,
    Confusion,
    accuracy_with_interval,
    confusion,
)
from amygdala.diagnose._nested import BAND_WIDTHS, TASKS, Items, NestedRun, run_nested
from amygdala.diagnose._transfer import Transfer, paired_to_stories, stories_to_paired
from amygdala.errors import CorpusError, EvaluationFileError, UnknownSiteError
from amygdala.vectors._extract import ExtractionInput, Method, Normalisation

__all__ = ["FORMAT_VERSION", "Evaluation", "MethodEvaluation", "evaluate"]

# 4: the z view is named "z" (format 3 called it "raw": detection keys, recommended views).
FORMAT_VERSION = 4
READABLE_FORMATS = (1, 2, 3, 4)
PROTOCOL = (
    "nested leave-one-scenario-out: for each held-out scenario the layer (read-out: layer or "
    "band of layers) and the probe's shrinkage are chosen by cross-validation over the other "
    "scenario groups, the method refitted on every other scenario with that choice; 95% "
    "percentile bootstrap over scenarios (2000 replicates)"
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
        recommended_band: ``{task: layers}`` the band the whole-corpus inner selection
            prefers to any single layer (empty when a single layer wins; always empty for
            the paired task, which chooses single layers).
        settings: ``{task: {name: value}}`` hyper-parameters the whole-corpus inner
            selection picks (the probe's ``shrinkage``; empty for untuned methods).
        chosen_settings: ``{task: {"name=value": held-out scenarios it was chosen for}}``.
        detection: ``{view: Detection}`` macro AUC of the nested read-out scores in each
            view, ``z`` and ``relative`` (z minus the mean over concepts).
        recommended_view: the view with the higher detection AUC (``z`` on a tie or when
            not measured).
    """

    method: str
    accuracy: dict[str, Accuracy]
    chosen_layers: dict[str, dict[str, int]]
    recommended: dict[str, int]
    per_layer: dict[str, tuple[float, ...]] = attrs.field(metadata=spec(round=4))
    confusion: dict[str, Confusion]
    transfer: dict[str, Transfer] = attrs.field(factory=dict)
    curve: tuple[CurvePoint, ...] = ()
    recommended_band: dict[str, tuple[int, ...]] = attrs.field(factory=dict)
    settings: dict[str, dict[str, float]] = attrs.field(factory=dict)
    chosen_settings: dict[str, dict[str, int]] = attrs.field(factory=dict)
    detection: dict[str, Detection] = attrs.field(factory=dict)
    recommended_view: View = "z"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: one entry per task, then transfer and the learning curve
        (the method is the key it is filed under)."""
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, method: str, data: dict[str, Any]) -> MethodEvaluation:
        """Inverse of `to_json` (format-2 results have no bands, settings or detection;
        format 3 named the z view ``raw``)."""
        return from_data(cls, {**data, "method": method})

    def recommended_read(self) -> dict[str, Any]:
        """How to read with this method: ``{"layer", "band", "view", "settings"}``."""
        return {"layer": self.recommended["readout"],
                "band": list(self.recommended_band.get("readout", ())),
                "view": self.recommended_view,
                "settings": dict(self.settings.get("readout", {}))}


def _label_key(label: str) -> tuple[int, int]:
    """Sort key of a reading label: ``"14"`` -> (14, 14), ``"12-16"`` -> (12, 16)."""
    first, _, last = label.partition("-")
    return int(first), int(last or first)


def _method_data(result: MethodEvaluation) -> dict[str, Any]:
    fields = to_fields(result)
    out: dict[str, Any] = {}
    for task in TASKS:
        chosen = fields["chosen_layers"][task]
        out[task] = {
            **fields["accuracy"][task], "recommended_layer": fields["recommended"][task],
            "recommended_band": fields["recommended_band"].get(task, []),
            "settings": fields["settings"].get(task, {}),
            "chosen_layers": {k: chosen[k] for k in sorted(chosen, key=_label_key)},
            "chosen_settings": dict(sorted(fields["chosen_settings"].get(task, {}).items())),
            "per_layer_diagnostic": fields["per_layer"][task],
            "per_concept": result.confusion[task].per_concept(),
            "confusion": fields["confusion"][task],
        }
    out["readout"]["detection"] = fields["detection"]
    out["readout"]["recommended_view"] = fields["recommended_view"]
    out["transfer"] = fields["transfer"]
    out["learning_curve"] = fields["curve"]
    return out


def _method_from_data(data: Mapping[str, Any]) -> MethodEvaluation:
    tasks = {t: data[t] for t in TASKS}
    readout = data["readout"]
    detection = {view: d for v, d in readout.get("detection", {}).items()
                 if (view := view_from_file(v)) is not None}
    return from_fields(MethodEvaluation, {
        "method": data["method"], "accuracy": tasks,
        "chosen_layers": {t: d["chosen_layers"] for t, d in tasks.items()},
        "recommended": {t: d["recommended_layer"] for t, d in tasks.items()},
        "per_layer": {t: d["per_layer_diagnostic"] for t, d in tasks.items()},
        "confusion": {t: d["confusion"] for t, d in tasks.items()},
        "transfer": data.get("transfer", {}), "curve": data.get("learning_curve", []),
        "recommended_band": {t: d.get("recommended_band", []) for t, d in tasks.items()},
        "settings": {t: d.get("settings", {}) for t, d in tasks.items()},
        "chosen_settings": {t: d.get("chosen_settings", {}) for t, d in tasks.items()},
        "detection": detection,
        "recommended_view": view_from_file(readout.get("recommended_view")) or "z",
    })


# A result is filed per task (accuracy, layers, confusion side by side), the read-out's
# detection inside its task: a custom layout, nested in `Evaluation` under its method.
register(MethodEvaluation, encode=_method_data, decode=_method_from_data)


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
    accuracy: np.ndarray = attrs.field(eq=False, metadata=spec(round=4))
    recommended: dict[str, int] = attrs.field(metadata=spec(key="recommended_layer"))
    per_concept: dict[str, dict[str, float]] = attrs.field(
        metadata=spec(key="per_concept_at_best_layer"))
    n_items: int
    chance: float = attrs.field(metadata=spec(round=4))
    bag_of_words: float = attrs.field(metadata=spec(round=4))
    results: dict[str, MethodEvaluation] = attrs.field(factory=dict)
    baselines: dict[str, Accuracy] = attrs.field(factory=dict,
                                                 metadata=spec(key="bag_of_words_detail"))
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
        data: dict[str, Any] = to_data(self)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evaluation:
        """Inverse of `to_json`; also reads formats 1-3 (format 1 has no ``format_version``
        and its ``best`` gives the recommended layer).

        Raises:
            EvaluationFileError: a newer format, or a field is missing or mistyped.
        """
        return from_data(cls, data)

    def render(self) -> str:
        """The printed summary (see `render_evaluation`)."""
        from amygdala.diagnose._render_eval import render_evaluation

        return render_evaluation(self)


def _evaluation_data(ev: Evaluation) -> dict[str, Any]:
    fields = to_fields(ev)
    best = {}
    for m in ev.methods:
        layer, acc = ev.best_layer(m)
        best[m] = {"layer": layer, "accuracy": round(acc, 4)}
        if m in ev.results:
            best[m]["ci95"] = fields["results"][m]["paired"]["ci95"]
    return {
        "format_version": FORMAT_VERSION, "protocol": PROTOCOL, "settings": fields["settings"],
        "methods": fields["methods"], "layers": fields["layers"],
        "recommended_layer": fields["recommended_layer"], "best": best,
        "recommended_band": {m: list(r.recommended_band.get("readout", ()))
                             for m, r in ev.results.items()},
        "recommended_read": {m: r.recommended_read() for m, r in ev.results.items()},
        "recommended_settings": {m: dict(r.settings.get("readout", {}))
                                 for m, r in ev.results.items()},
        "accuracy": dict(zip(ev.methods, fields["accuracy"], strict=True)),
        "accuracy_is": "per-layer leave-one-scenario-out diagnostic (paired task); "
                       "layer choice on these folds is optimistic",
        "per_concept_at_best_layer": fields["per_concept_at_best_layer"],
        "n_items": fields["n_items"], "chance": fields["chance"],
        "bag_of_words": fields["bag_of_words"],
        "bag_of_words_detail": fields["bag_of_words_detail"], "results": fields["results"],
    }


def _evaluation_from_data(data: Mapping[str, Any]) -> Evaluation:
    # Format 1 (the first release) wrote no format_version.
    check_version({"format_version": 1, **data}, readable=READABLE_FORMATS,
                  error=EvaluationFileError, what="evaluation.json",
                  fix="upgrade amygdala, or rerun `amygdala train` (or `amygdala evaluate`)")
    try:
        methods = list(data["methods"])
        return from_fields(Evaluation, {
            **data, "accuracy": [data["accuracy"][m] for m in methods],
            "recommended_layer": data.get("recommended_layer") or {
                m: data["best"][m]["layer"] for m in methods},
            "results": {m: {**r, "method": m} for m, r in data.get("results", {}).items()},
        })
    except (KeyError, TypeError, ValueError) as exc:
        raise EvaluationFileError(
            f"evaluation.json lacks or mistypes field {exc}; rerun `amygdala train` "
            "(or `amygdala evaluate`)") from exc


# evaluation.json adds the protocol, the best layers and each method's recommended read-out
# to the fields, and files the per-layer accuracy by method.
register(Evaluation, encode=_evaluation_data, decode=_evaluation_from_data)


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


def _describe(run: NestedRun, column: int, layers: Sequence[int],
              shrinkages: Sequence[float]) -> tuple[str, dict[str, float]]:
    """A candidate column's reading label and hyper-parameter settings."""
    label = run.readings.label(run.reading_of(column), layers)
    if run.n_fitters == 1:
        return label, {}
    return label, {"shrinkage": float(shrinkages[run.fitter_of(column)])}


def _method_result(method: str, data: ExtractionInput, corpus: Corpus, items: Items, *,
                   normalisation: Normalisation, folds: int, seed: int,
                   layer_index: int | None, curve: bool, curve_draws: int,
                   curve_sizes: Sequence[int], bands: Sequence[int],
                   shrinkages: Sequence[float]) -> MethodEvaluation:
    fitters = make_fitters(data, corpus, method, normalisation=normalisation,
                           concepts=items.concepts, shrinkages=shrinkages)
    run = run_nested(fitters, items, folds=folds, seed=seed, layer_index=layer_index,
                     bands=bands)
    fitted_any = np.zeros(len(items.concepts), bool)
    fitted_any[np.unique(items.truth)] = True
    accuracy: dict[str, Accuracy] = {}
    per_layer: dict[str, tuple[float, ...]] = {}
    conf: dict[str, Confusion] = {}
    chosen: dict[str, dict[str, int]] = {}
    recommended: dict[str, int] = {}
    band: dict[str, tuple[int, ...]] = {}
    settings: dict[str, dict[str, float]] = {}
    chosen_settings: dict[str, dict[str, int]] = {}
    size = run.readings.size
    for t, task in enumerate(TASKS):
        ok = run.nested[t] >= 0
        accuracy[task] = accuracy_with_interval(
            run.nested[t, ok] == items.truth[ok], items.scenario[ok],
            chance=_chance(items, task, ok, fitted_any), seed=seed)
        best = int(run.recommended[t])
        # The diagnostic: every single layer of the recommended setting.
        block = run.fitter_of(best) * size
        layer_cols = run.per_layer[t, :, block:block + run.readings.n_layers]
        valid = layer_cols[:, 0] >= 0
        per_layer[task] = tuple(float(x) for x in (
            layer_cols[valid] == items.truth[valid, None]).mean(axis=0))
        conf[task] = confusion(items.truth, run.nested[t], items.concepts)
        chosen[task], chosen_settings[task] = {}, {}
        for column, n in zip(*np.unique(run.chosen[t], return_counts=True), strict=True):
            label, values = _describe(run, int(column), data.layers, shrinkages)
            chosen[task][label] = chosen[task].get(label, 0) + int(n)
            for key in (f"{k}={v:g}" for k, v in values.items()):
                chosen_settings[task][key] = chosen_settings[task].get(key, 0) + int(n)
        recommended[task] = data.layers[int(run.recommended_layer[t])]
        members = run.readings.members(run.reading_of(best))
        band[task] = tuple(data.layers[i] for i in members) if len(members) > 1 else ()
        settings[task] = _describe(run, best, data.layers, shrinkages)[1]
    detection = _detection(run, items, fitted_any, seed)
    view: View = max(VIEWS, key=lambda v: (np.nan_to_num(detection[v].value, nan=-1.0),
                                           v == "z")) if detection else "z"
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
        points = learning_curve(fitters[0], items, sizes=curve_sizes, draws=curve_draws,
                                folds=folds, seed=seed, layer_index=layer_index)
    return MethodEvaluation(method=method, accuracy=accuracy, chosen_layers=chosen,
                            recommended=recommended, per_layer=per_layer, confusion=conf,
                            transfer=transfer, curve=points, recommended_band=band,
                            settings=settings, chosen_settings=chosen_settings,
                            detection=detection, recommended_view=view)


def _detection(run: NestedRun, items: Items, fitted: np.ndarray,
               seed: int) -> dict[str, Detection]:
    """Detection AUC of the nested read-out scores in the ``z`` and ``relative`` views."""
    z = run.readout_z
    if not np.isfinite(z).any():
        return {}
    relative = z - np.nanmean(z, axis=1, keepdims=True)
    return {"z": detection_auc(z, items.truth, items.scenario, items.concepts,
                                 fitted=fitted, seed=seed),
            "relative": detection_auc(relative, items.truth, items.scenario, items.concepts,
                                      fitted=fitted, seed=seed)}


def evaluate(
    data: ExtractionInput, corpus: Corpus, *, methods: Sequence[Method] = ("paired",),
    normalisation: Normalisation = "standardise", layer: int | None = None, folds: int = 5,
    seed: int = 0, curve: bool = False, curve_draws: int = 3,
    curve_sizes: Sequence[int] = CURVE_SIZES, bands: Sequence[int] = BAND_WIDTHS,
    shrinkages: Sequence[float] = SHRINKAGE_GRID,
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
        bands: widths of the layer bands the read-out task may choose (empty: single
            layers only).
        shrinkages: the probe's shrinkages to choose among on inner folds (the first is
            the default; one value: no choice). Other methods have nothing to tune.

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
                          curve_draws=curve_draws, curve_sizes=curve_sizes, bands=bands,
                          shrinkages=shrinkages) for m in methods}
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
                  "bootstrap": 2000, "band_widths": list(bands),
                  "probe_shrinkages": list(shrinkages)},
    )
