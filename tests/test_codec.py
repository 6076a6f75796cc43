"""The JSON codec (`amygdala._codec`): its rules on small classes, and every value class
reading and writing the files the code before the codec wrote (``tests/data/codec/``,
made by ``python -m tests.codec_samples DIR`` on that code)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from amygdala._codec import check_version, from_data, register, spec, to_data
from amygdala._types import Pooling
from amygdala.diagnose._circuit_experiments import CircuitExperiments, CrossFitExperiments
from amygdala.diagnose._circuits import Circuit
from amygdala.diagnose._curve import CurvePoint
from amygdala.diagnose._detection import Detection
from amygdala.diagnose._evaluate import FORMAT_VERSION, Evaluation, MethodEvaluation
from amygdala.diagnose._heldout import HeldoutTransfer
from amygdala.diagnose._intervals import Accuracy, Confusion
from amygdala.diagnose._quality import ConceptQuality, LayerQuality, QualityReport
from amygdala.diagnose._transfer import Transfer
from amygdala.errors import (
    CircuitFileError,
    EvaluationFileError,
    QualityFileError,
    VectorFileError,
)
from amygdala.intervene._eval_steer import SteerEvaluation
from amygdala.intervene._events import Event, EventRule
from amygdala.vectors._run import config_from_json
from amygdala.vectors._train import TrainConfig
from tests import codec_samples

DATA = Path(__file__).parent / "data" / "codec"


@attrs.frozen(kw_only=True)
class _Inner:
    name: str
    score: float = attrs.field(metadata=spec(round=2))


@attrs.frozen(kw_only=True)
class _Outer:
    inner: _Inner
    pairs: tuple[tuple[int, str], ...]
    by_layer: dict[int, _Inner]
    maybe: _Inner | None
    weights: np.ndarray = attrs.field(eq=False, metadata=spec(dtype="float32"))
    counts: np.ndarray = attrs.field(eq=False, metadata=spec(key="n", dtype="int64"))
    gap: float = math.nan
    extra: Mapping[str, Any] = attrs.field(factory=dict)


def _outer() -> _Outer:
    return _Outer(inner=_Inner(name="a", score=0.125), pairs=((1, "x"), (2, "y")),
                  by_layer={3: _Inner(name="b", score=1.0)}, maybe=None,
                  weights=np.array([[0.5, 1.5]]), counts=np.array([1, 2]),
                  extra={"t": (1, 2), "bad": math.inf})


def test_nested_classes_int_keys_tuples_arrays_and_renames_round_trip() -> None:
    data = to_data(_outer())
    gap = data.pop("gap")
    assert gap != gap  # NaN stays NaN unless finite=True
    assert data == {"inner": {"name": "a", "score": 0.12}, "pairs": [[1, "x"], [2, "y"]],
                    "by_layer": {"3": {"name": "b", "score": 1.0}}, "maybe": None,
                    "weights": [[0.5, 1.5]], "n": [1, 2],
                    "extra": {"t": [1, 2], "bad": math.inf}}
    back = from_data(_Outer, json.loads(json.dumps({**data, "gap": gap})))
    assert back.inner == _Inner(name="a", score=0.12)
    assert back.pairs == ((1, "x"), (2, "y"))
    assert back.by_layer == {3: _Inner(name="b", score=1.0)}
    assert back.maybe is None
    assert back.weights.dtype == np.float32 and back.weights.tolist() == [[0.5, 1.5]]
    assert back.counts.dtype == np.int64 and back.counts.tolist() == [1, 2]
    assert math.isnan(back.gap)


def test_finite_writes_null_and_null_floats_read_back_as_nan() -> None:
    data = to_data(_outer(), finite=True)
    assert data["gap"] is None and data["extra"]["bad"] is None
    assert json.dumps(data, allow_nan=False)  # strict JSON
    assert math.isnan(from_data(_Outer, data).gap)


def test_missing_fields_take_defaults_and_required_ones_fail() -> None:
    data = to_data(_outer())
    del data["gap"], data["extra"]
    back = from_data(_Outer, data)
    assert math.isnan(back.gap) and back.extra == {}
    del data["inner"]
    with pytest.raises(KeyError, match="inner"):
        from_data(_Outer, data)


@attrs.frozen
class Pair:
    a: int
    b: int


@attrs.frozen
class Holder:
    pair: Pair


def test_a_registered_class_uses_its_own_format() -> None:
    register(Pair, encode=lambda p: [p.a, p.b], decode=lambda d: Pair(d[0], d[1]))
    assert to_data(Holder(Pair(1, 2))) == {"pair": [1, 2]}
    assert from_data(Holder, {"pair": [3, 4]}) == Holder(Pair(3, 4))


def test_check_version_names_found_readable_and_fix() -> None:
    assert check_version({"v": 2}, key="v", readable=(1, 2), error=VectorFileError,
                         what="f", fix="x") == 2
    for bad in ({"v": 3}, {}, {"v": True}, {"v": "2"}):
        with pytest.raises(VectorFileError) as info:
            check_version(bad, key="v", readable=(1, 2), error=VectorFileError,
                          what="vectors.json", fix="upgrade amygdala")
        assert str(info.value) == (f"vectors.json has v {bad.get('v')}, this amygdala reads "
                                   "1, 2; upgrade amygdala")


# ----- every value class against the files of the code before the codec -----------------

READERS: dict[str, Any] = {
    "accuracy": Accuracy.from_json, "accuracy_nan": Accuracy.from_json,
    "confusion": Confusion.from_json, "curve_point": CurvePoint.from_json,
    "curve_point_all": CurvePoint.from_json, "transfer": Transfer.from_json,
    "heldout": HeldoutTransfer.from_json, "circuit": Circuit.from_json,
    "layer_quality": LayerQuality.from_json, "concept_quality": ConceptQuality.from_json,
    "quality_report": QualityReport.from_json, "experiments": CircuitExperiments.from_json,
    "crossfit": CrossFitExperiments.from_json, "event_rule": EventRule.from_json,
    "event": Event.from_json, "steer_evaluation": SteerEvaluation.from_json,
    "detection": Detection.from_json, "train_config": config_from_json,
    "train_config_defaults": config_from_json,
    "method_evaluation": lambda data: MethodEvaluation.from_json("probe", data),
    "evaluation_format4": Evaluation.from_json,
}
# Written rounded: a round trip gives the rounded values, not the originals.
ROUNDED = {"accuracy", "curve_point", "transfer", "heldout", "event", "detection",
           "method_evaluation", "evaluation_format4"}


def same(a: Any, b: Any) -> bool:
    """Equal field by field, arrays by value and dtype, NaN equal to NaN, types kept."""
    if attrs.has(type(a)):
        return type(a) is type(b) and all(same(getattr(a, f.name), getattr(b, f.name))
                                          for f in attrs.fields(type(a)))
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, Mapping):
        return (isinstance(b, Mapping) and list(a) == list(b)
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, tuple | list):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b, strict=True)))
    return type(a) is type(b) and bool(a == b)


def test_the_sample_comparison_can_fail() -> None:
    acc = codec_samples.ACC
    assert same(acc, attrs.evolve(acc))
    assert not same(acc, attrs.evolve(acc, value=0.5))
    assert not same(codec_samples.SAMPLES["confusion"], Confusion(
        labels=("a", "b"), matrix=np.array([[2, 1], [0, 4]])))
    assert not same((1,), [1])


@pytest.mark.parametrize("name", sorted(codec_samples.SAMPLES))
def test_to_json_writes_what_the_code_before_the_codec_wrote(name: str) -> None:
    old = (DATA / f"{name}.json").read_text()
    assert codec_samples.dumps(codec_samples.SAMPLES[name]) == old


@pytest.mark.parametrize("name", sorted(READERS))
def test_each_file_reads_and_writes_back_byte_for_byte(name: str) -> None:
    text = (DATA / f"{name}.json").read_text()
    assert codec_samples.dumps(READERS[name](json.loads(text))) == text


@pytest.mark.parametrize("name", sorted(READERS))
def test_files_of_the_code_before_the_codec_load_and_round_trip(name: str) -> None:
    read = READERS[name]
    sample = codec_samples.SAMPLES[name]
    old = read(json.loads((DATA / f"{name}.json").read_text()))
    again = read(json.loads(json.dumps(sample.to_json())))
    if name in ROUNDED:
        assert same(again, old)
        assert same(read(json.loads(json.dumps(old.to_json()))), old)
    else:
        assert same(old, sample)
        assert same(again, sample)


@pytest.mark.parametrize("name", sorted(codec_samples.FILES))
def test_saved_files_are_byte_for_byte_those_of_the_code_before(name: str,
                                                                tmp_path: Path) -> None:
    path = codec_samples.FILES[name](tmp_path)
    assert path.read_bytes() == (DATA / name).read_bytes()


def test_saved_files_of_the_code_before_load() -> None:
    circuit = Circuit.load(DATA / "joyful.json")
    assert same(circuit, codec_samples.CIRCUIT)
    assert same(QualityReport.load(DATA / "quality.json"), codec_samples.QUALITY)
    steer = SteerEvaluation.from_json(json.loads((DATA / "eval_steer.json").read_text()))
    assert same(steer, codec_samples.STEER)


def test_newer_or_broken_files_raise_the_typed_error(tmp_path: Path) -> None:
    data = json.loads((DATA / "quality.json").read_text())
    with pytest.raises(QualityFileError, match="schema_version 9, this amygdala reads 1, 2"):
        QualityReport.from_json({**data, "schema_version": 9})
    with pytest.raises(QualityFileError, match="lacks or mistypes field 'concepts'"):
        QualityReport.from_json({k: v for k, v in data.items() if k != "concepts"})
    circuit = json.loads((DATA / "joyful.json").read_text())
    with pytest.raises(CircuitFileError, match="format_version 2, this amygdala reads 1"):
        Circuit.from_json({**circuit, "format_version": 2})
    with pytest.raises(CircuitFileError, match="malformed circuit"):
        Circuit.from_json({**circuit, "layer": "three"})


def test_circuit_save_takes_a_directory_and_load_a_file_or_directory(tmp_path: Path) -> None:
    circuit = codec_samples.CIRCUIT
    path = circuit.save(tmp_path / "circuits")
    assert path == tmp_path / "circuits" / "joyful.json"
    assert same(Circuit.load(path), circuit)
    assert same(Circuit.load(tmp_path / "circuits", concept="joyful"), circuit)
    with pytest.raises(CircuitFileError, match="is a directory; pass the concept"):
        Circuit.load(tmp_path / "circuits")
    with pytest.raises(CircuitFileError, match="cannot read"):
        Circuit.load(tmp_path / "circuits", concept="afraid")


def test_steering_defaults_of_the_code_before_load(tmp_path: Path) -> None:
    from amygdala.intervene._eval_steer import load_defaults

    (tmp_path / "steering.json").write_bytes((DATA / "steering.json").read_bytes())
    loaded = load_defaults(tmp_path)
    assert loaded is not None
    want = codec_samples.DEFAULTS
    assert same(attrs.evolve(loaded, table=()), attrs.evolve(want, table=()))
    assert loaded.table == ({"layer": 3, "alpha": 4.0, "lift": None},)  # NaN was written null


@pytest.mark.parametrize(("name", "want"), [
    ("train_config_first_release", TrainConfig(method="paired", layers=(10, 20),
                                               pooling=Pooling.parse("last"), batch_size=8)),
    ("train_config_import_gguf", TrainConfig(method="paired", normalisation="raw",
                                             layers=(3, 4))),
])
def test_run_json_configs_of_older_writers_load_with_defaults(name: str,
                                                              want: TrainConfig) -> None:
    # run.json of the first release (no device, dtype, shrinkage) and of `import-gguf`.
    assert same(config_from_json(json.loads((DATA / f"{name}.json").read_text())), want)


def test_null_config_fields_take_their_defaults() -> None:
    # The reader before the codec used `config.get(key) or default` for every field.
    assert same(config_from_json({"model": None, "pooling": None, "batch_size": None,
                                  "dtype": None, "shrinkage": None}), TrainConfig())


def test_an_evaluation_of_the_first_release_loads() -> None:
    # evaluation.json before format_version: no results; "best" names the layer.
    ev = Evaluation.from_json(json.loads((DATA / "evaluation_format1.json").read_text()))
    assert ev.methods == ("paired", "pca") and ev.recommended == {"paired": 1, "pca": 1}
    assert ev.best_layer("paired") == (1, 0.75) and ev.results == {}
    np.testing.assert_array_equal(ev.accuracy, [[0.5, 0.75, 0.625], [0.375, 0.5, 0.5]])
    assert ev.to_json()["format_version"] == FORMAT_VERSION


def test_a_newer_or_broken_evaluation_raises_the_typed_error() -> None:
    data = json.loads((DATA / "evaluation.json").read_text())
    with pytest.raises(EvaluationFileError, match="format_version 9, this amygdala reads 1, 2"):
        Evaluation.from_json({**data, "format_version": 9})
    with pytest.raises(EvaluationFileError, match="lacks or mistypes field 'n_items'"):
        Evaluation.from_json({k: v for k, v in data.items() if k != "n_items"})
    broken = {**data, "results": {"probe": {**data["results"]["probe"], "paired": {}}}}
    with pytest.raises(EvaluationFileError, match="lacks or mistypes"):
        Evaluation.from_json(broken)
