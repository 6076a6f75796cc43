"""One small instance of every value class amygdala writes as JSON (for `test_codec`).

``python -m tests.codec_samples DIR`` writes each sample's JSON text as the code on the
import path writes it; run once against the code before the codec (`git archive`) it made
``tests/data/codec/``, the files the current code must still read and still write byte for
byte.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from amygdala._io import write_json
from amygdala._types import Pooling
from amygdala.corpus._lint import Finding, LintReport
from amygdala.diagnose._circuit_experiments import (
    AblationEffect,
    CircuitExperiments,
    CrossFitExperiments,
    Enhancement,
    FoldResult,
    HeldOutEffect,
    Specificity,
)
from amygdala.diagnose._circuits import Circuit, HeadScore, NeuronScore
from amygdala.diagnose._curve import CurvePoint
from amygdala.diagnose._detection import Detection
from amygdala.diagnose._evaluate import Evaluation, MethodEvaluation
from amygdala.diagnose._heldout import HeldoutTransfer
from amygdala.diagnose._intervals import Accuracy, Confusion
from amygdala.diagnose._quality import (
    ConceptQuality,
    LayerQuality,
    QualityReport,
    Thresholds,
)
from amygdala.diagnose._transfer import Transfer
from amygdala.intervene._eval_steer import Row, Sample, SteerEvaluation, SteeringDefaults
from amygdala.intervene._events import Event, EventRule
from amygdala.vectors._run import RunDir
from amygdala.vectors._train import TrainConfig

NAN = math.nan
ACC = Accuracy(value=0.123456789, low=0.1, high=0.98765432, n_items=10, n_groups=5,
               chance=1 / 3)
CIRCUIT = Circuit(
    concept="joyful", layer=3,
    neurons=(NeuronScore(layer=1, index=7, score=0.5), NeuronScore(layer=2, index=0,
                                                                   score=-0.25)),
    heads=(HeadScore(layer=0, index=1, score=0.3, direct=0.1, zero=0.3),
           HeadScore(layer=2, index=2, score=0.2, direct=0.2, zero=None, mean=0.125)),
    size_neurons=1, size_heads=2, clean_projection=1.5, model_id="tiny", fingerprint="abc",
    params={"pooling": "mean", "texts": 4, "rank_heads_by": "zero"})
LAYER_Q = LayerQuality(
    layer=2, first_pc_variance_ratio=0.75, effective_dimension=1.5, alignment_mean=0.5,
    alignment_min=0.25, alignments=(0.25, 0.75), outliers=(("s1", 0.25),),
    nearest=(("afraid", 0.5), ("calm", -0.125)), neuron_index=3, neuron_cosine=0.625,
    head_index=None, head_share=None, split_half_cosine=0.875, redundancy_r2=None,
    subspace_eigvals=(2.0, 0.5), k_signal_at_90pct=2, effective_dim_signal=1.25,
    effective_dim_full=None, first_pc_variance_ratio_centred=0.5)
CONCEPT_Q = ConceptQuality(concept="joyful", n_scenarios=3, n_stories=2,
                           positives=("p1", "s1"), loso_accuracy=None, labels=("clean",),
                           reasons=("first PC 0.75",), layers=(LAYER_Q,))
QUALITY = QualityReport(
    method="probe", normalisation="standardise", model_id="tiny", corpus_hash="h",
    layers=(2,), best_layer=2, best_layer_source="middle", loso_layer=None, seed=0,
    n_splits=4, thresholds=Thresholds(), concepts=(CONCEPT_Q,), cosine_matrix=((1.0,),))
ABLATION = AblationEffect(
    kind="neurons", k=2, mode="zero", drop=0.5, rel_drop=0.25, random_drops=(0.1, NAN),
    ratio=None, ratio_ci=(1.5, None), excess_ci=(0.25, NAN), scenario_drops=(0.5, 0.25),
    accuracy_clean=1.0, accuracy_top=0.5, accuracy_random=0.75, drop_ci=(0.25, 0.75),
    random_ci=(NAN, NAN))
ENHANCE = Enhancement(kind="heads", k=1, factor=2.0, rise=0.5, rel_rise=NAN)
EXPERIMENTS = CircuitExperiments(
    concept="joyful", layer=3, clean_projection=1.5, scenarios=("a", "b"),
    ablation=(ABLATION,), enhancement=(ENHANCE,),
    specificity=(Specificity(kind="neurons", k=2, own=0.5, others={"afraid": 0.125,
                                                                   "calm": NAN}),),
    params={"draws": 3, "seed": 0.5})
CROSSFIT = CrossFitExperiments(
    concept="joyful", layer=3, clean_projection=1.25,
    folds=(FoldResult(train=("a",), test=("b",), clean_projection=NAN,
                      top_neurons=((1, 7),), top_heads=((0, 1), (2, 2)),
                      enhancement=(ENHANCE,)),),
    ablation=(HeldOutEffect(kind="heads", k=1, drop=0.5, random_drop=0.125,
                            drop_ci=(0.25, 0.75), random_ci=(0.0, 0.25),
                            fold_drops=(0.5, NAN), fold_random_drops=(0.125,),
                            rel_drop=0.4, selection_jaccard=NAN, accuracy_clean=1.0,
                            accuracy_top=0.5, accuracy_random=1.0),),
    params={"folds": 2})
SAMPLE = Sample(concept="joyful", mode="vector", strength=4.0, prompt=0, text="Hi.",
                proba=0.5, top="joyful", readout=1.25, perplexity=12.5, repetition=0.0,
                argmax="joyful", distinct2=NAN)
ROW = Row(concept="joyful", mode="vector", strength=4.0, success=1.0, rise=1.0, top=1.0,
          d_proba=0.25, d_readout=0.5, perplexity=12.5, repetition=0.0, fluent=True,
          control=0.0, distinct2=0.75)
STEER = SteerEvaluation(rows=(ROW, Row(concept="joyful", mode="circuit", strength=2.0,
                                       success=0.0, rise=0.0, top=0.0, d_proba=0.0,
                                       d_readout=NAN, perplexity=20.0, repetition=0.5,
                                       fluent=False)),
                        samples=(SAMPLE,), baseline=(SAMPLE,),
                        settings={"layer": 3, "readout_layer": 4, "judge": {"embedder": "x"}})
DEFAULTS = SteeringDefaults(layers=(3,), alpha=4.0, lift=0.5, success=0.75, control=NAN,
                            table=({"layer": 3, "alpha": 4.0, "lift": NAN},),
                            settings={"n_prompts": 2})

CONF = Confusion(labels=("joyful", "sad"), matrix=np.array([[3, 1], [0, 4]]))
DETECT = Detection(value=0.75, low=0.5, high=1.0, n_items=8, n_groups=4,
                   per_concept={"sad": 0.5, "joyful": 1.0})
PROBE = MethodEvaluation(
    method="probe", accuracy={"paired": ACC, "readout": ACC},
    chosen_layers={"paired": {"2": 3, "1": 1}, "readout": {"10-12": 2, "9": 2}},
    recommended={"paired": 2, "readout": 11}, per_layer={"paired": (0.5, 0.123456),
                                                          "readout": (0.25, 1.0)},
    confusion={"paired": CONF, "readout": CONF},
    transfer={"paired_to_stories": Transfer(accuracy=ACC, layer=2, per_layer=(0.5,),
                                            skipped=0)},
    curve=(CurvePoint(size=4, n_train=4.0, draws={"paired": (0.5,), "readout": (0.75,)}),),
    recommended_band={"readout": (10, 11, 12)}, settings={"readout": {"shrinkage": 0.5}},
    chosen_settings={"readout": {"shrinkage=0.5": 3, "shrinkage=0.1": 1}},
    detection={"z": DETECT, "relative": attrs.evolve(DETECT, value=0.875)},
    recommended_view="relative")
PAIRED = MethodEvaluation(
    method="paired", accuracy={"paired": ACC, "readout": ACC},
    chosen_layers={"paired": {"2": 4}, "readout": {"2": 4}},
    recommended={"paired": 2, "readout": 2}, per_layer={"paired": (0.5, 0.75),
                                                         "readout": (0.5, 0.5)},
    confusion={"paired": CONF, "readout": CONF})
EVALUATION = Evaluation(
    methods=("probe", "paired"), layers=(1, 2), accuracy=np.array([[0.5, 0.123456],
                                                                   [0.5, 0.75]]),
    recommended={"probe": 2, "paired": 2},
    per_concept={"probe": {"joyful": 0.75, "sad": 1.0}, "paired": {"joyful": 0.5}},
    n_items=8, chance=0.5, bag_of_words=0.3333333,
    results={"probe": PROBE, "paired": PAIRED}, baselines={"paired": ACC, "readout": ACC},
    settings={"folds": 4, "seed": 0, "layers": None})

SAMPLES: dict[str, Any] = {
    "accuracy": ACC,
    "accuracy_nan": Accuracy(value=NAN, low=NAN, high=NAN, n_items=0, n_groups=0, chance=0.5),
    "confusion": Confusion(labels=("a", "b"), matrix=np.array([[2, 1], [0, 3]])),
    "curve_point": CurvePoint(size=4, n_train=3.3333333, draws={"paired": (0.5, 0.75),
                                                                "readout": (0.25, 1 / 3)}),
    "curve_point_all": CurvePoint(size=None, n_train=8.0, draws={"paired": (0.5,),
                                                                 "readout": (0.125,)}),
    "transfer": Transfer(accuracy=ACC, layer=3, per_layer=(0.123456, 0.5), skipped=2),
    "heldout": HeldoutTransfer(method="probe", layers={"paired": 3, "readout": 4, "stories": 4},
                               paired=ACC, readout=ACC, stories=None,
                               bag_of_words={"paired": ACC, "readout": ACC}),
    "circuit": CIRCUIT,
    "layer_quality": LAYER_Q,
    "concept_quality": CONCEPT_Q,
    "quality_report": QUALITY,
    "experiments": EXPERIMENTS,
    "crossfit": CROSSFIT,
    "event_rule": EventRule(on=2.5, off=1.0, min_tokens=3),
    "event": Event(kind="enter", concept="joyful", step=3, since=2, value=2.3456789),
    "steer_evaluation": STEER,
    "steering_defaults": DEFAULTS,
    "detection": Detection(value=0.8123456, low=0.7, high=NAN, n_items=12, n_groups=4,
                           per_concept={"joyful": 0.91234567, "afraid": 0.5}),
    "lint_report": LintReport(
        findings=(Finding(severity="warning", code="length-ratio", path="paired/b/sad.txt",
                          message="longer than its baseline"),
                  Finding(severity="error", code="empty-file", path="neutral/a.txt",
                          message="empty")),
        coverage={"sad": 2, "joyful": 3}, story_counts={"joyful": 1}, n_scenarios=3,
        n_neutral=2, forms={"first": 2, "third": 1}),
    "train_config": TrainConfig(model="tiny", backend="transformer_lens", method="paired",
                                normalisation="raw", layers=(2, 3), batch_size=4,
                                pooling=Pooling(kind="mean", skip=1), store=Path("/tmp/s"),
                                store_dtype="float16", device="cpu", dtype="bfloat16",
                                shrinkage=0.25),
    "train_config_defaults": TrainConfig(),
    "method_evaluation": PROBE,
    "evaluation_format4": EVALUATION,
}


def _circuit_file(out: Path) -> Path:
    return CIRCUIT.save(out, extra={"experiments": EXPERIMENTS.to_json()})


def _quality_file(out: Path) -> Path:
    return QUALITY.save(out)


def _steer_file(out: Path) -> Path:
    return STEER.save(out, path=out / "eval_steer.json")


def _defaults_file(out: Path) -> Path:
    return DEFAULTS.save(out)


def _evaluation_file(out: Path) -> Path:
    return write_json(RunDir(out).evaluation, EVALUATION.to_json())


FILES: dict[str, Callable[[Path], Path]] = {
    "joyful.json": _circuit_file, "quality.json": _quality_file,
    "eval_steer.json": _steer_file, "steering.json": _defaults_file,
    "evaluation.json": _evaluation_file,
}


def dumps(obj: Any) -> str:
    """The sample's ``to_json()`` as JSON text (key order and every value kept)."""
    return json.dumps(obj.to_json(), indent=1) + "\n"


def main(out: Path) -> None:
    """Write ``<name>.json`` per sample and the files the savers write into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, obj in SAMPLES.items():
        (out / f"{name}.json").write_text(dumps(obj))
    for make in FILES.values():
        make(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
