"""llama.cpp control vectors: the layout llama.cpp applies, defaults, import and round trip."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from amygdala.cli import main
from amygdala.errors import UnknownSiteError, VectorFileError
from amygdala.vectors._gguf import default_gguf_layers, export_gguf, import_gguf
from amygdala.vectors._set import SteeringVectorSet

D = 8


def make_set(n_layers: int = 6) -> SteeringVectorSet:
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(2, n_layers, D))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)  # sets hold unit directions
    return SteeringVectorSet(
        concepts=["joyful", "sad"], layers=range(n_layers), directions=directions,
        raw_norm=rng.uniform(1, 2, size=(2, n_layers)),
        resid_norm=np.arange(1, n_layers + 1, dtype=np.float32) * 10,
        mean=np.zeros((n_layers, D)), std=np.ones((n_layers, D)), method="paired",
        normalisation="raw", provenance={"model_fingerprint": "abc"})


def tensors(path: Path) -> dict[str, np.ndarray]:
    reader = gguf.GGUFReader(str(path))
    return {t.name: np.asarray(t.data, np.float32) for t in reader.tensors}


def write_control_vector(path: Path, vectors: dict[int, np.ndarray], hint: str = "llama") -> None:
    """What repeng's ControlVector.export_gguf writes: direction.{layer}, float32."""
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", hint)
    writer.add_uint32("controlvector.layer_count", len(vectors))
    for layer, vec in vectors.items():
        writer.add_tensor(f"direction.{layer}", vec.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_direction_l_holds_the_output_of_block_l(tmp_path: Path) -> None:
    vectors = make_set()
    path = export_gguf(vectors, tmp_path / "sad.gguf", "sad", layers=[2, 3, 5], strength=0.5)
    found = tensors(path)
    assert sorted(found) == ["direction.2", "direction.3", "direction.5"]
    for layer in (2, 3, 5):
        raw = vectors.directions[1, layer]
        expected = 0.5 * (10.0 * (layer + 1)) * raw / np.sqrt((raw**2).sum())
        np.testing.assert_allclose(found[f"direction.{layer}"], expected, rtol=1e-5)
    reader = gguf.GGUFReader(str(path))
    fields = {key: reader.get_field(key) for key in ("general.architecture",
                                                     "controlvector.layer_count")}
    assert {k: f.contents() for k, f in fields.items() if f is not None} == {
        "general.architecture": "controlvector", "controlvector.layer_count": 3}


def test_layer_zero_is_skipped_with_a_warning(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = export_gguf(make_set(), tmp_path / "a.gguf", "joyful", layers=[0, 1])
    assert sorted(tensors(path)) == ["direction.1"]
    assert "direction.0" in capsys.readouterr().err
    with pytest.raises(UnknownSiteError, match="no layer"):
        export_gguf(make_set(), tmp_path / "b.gguf", "joyful", layers=[0])
    with pytest.raises(UnknownSiteError):
        export_gguf(make_set(), tmp_path / "c.gguf", "joyful", layers=[9])


def test_defaults_are_a_band_at_a_useful_strength(tmp_path: Path) -> None:
    vectors = make_set(30)
    assert default_gguf_layers(vectors) == [13, 14, 15, 16, 17]
    assert default_gguf_layers(vectors, 1) == [1, 2, 3, 4, 5]  # never layer 0
    path = export_gguf(vectors, tmp_path / "j.gguf", "joyful")
    found = tensors(path)
    assert sorted(found, key=lambda n: int(n.split(".")[1])) == [
        f"direction.{x}" for x in range(13, 18)]
    # 0.04 of the residual norm per layer: 0.2 over the band, in the useful single-layer range.
    np.testing.assert_allclose(np.linalg.norm(found["direction.15"]), 0.04 * 160, rtol=1e-5)


def test_round_trip(tmp_path: Path) -> None:
    vectors = make_set()
    path = export_gguf(vectors, tmp_path / "x.gguf", "sad", layers=[1, 4], strength=0.3)
    back = import_gguf(path)
    assert back.concepts == ("sad",) and back.layers == (1, 4) and back.method == "paired"
    want = vectors.select(concepts=["sad"], layers=[1, 4])
    np.testing.assert_allclose(back.directions, want.directions, atol=1e-6)
    np.testing.assert_allclose(back.resid_norm, want.resid_norm, rtol=1e-6)
    np.testing.assert_allclose(back.raw_norm, want.raw_norm, rtol=1e-6)
    np.testing.assert_allclose(back.vector("sad", 4).steering(0.3), tensors(path)["direction.4"],
                               rtol=1e-5)
    assert back.provenance["model_fingerprint"] == "abc"


def test_import_a_repeng_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    raw = {layer: rng.normal(size=D) * layer for layer in range(1, 5)}
    path = tmp_path / "happy.gguf"
    write_control_vector(path, raw)
    vectors = import_gguf(path)
    assert vectors.concepts == ("happy",) and vectors.layers == (1, 2, 3, 4)
    assert vectors.method == "gguf" and vectors.provenance["model_hint"] == "llama"
    for layer, vec in raw.items():
        # Strength 1 adds exactly what llama-cli --control-vector adds at block `layer`.
        np.testing.assert_allclose(vectors.vector("happy", layer).steering(1.0), vec, rtol=1e-5)
    assert import_gguf(path, concept="joy").concepts == ("joy",)


def test_import_rejects_what_is_not_a_control_vector(tmp_path: Path) -> None:
    path = tmp_path / "zero.gguf"
    write_control_vector(path, {0: np.ones(D), 1: np.ones(D)})
    with pytest.raises(VectorFileError, match=r"direction\.N with N >= 1"):
        import_gguf(path)
    model = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(model), "llama")
    writer.add_tensor("token_embd.weight", np.ones((2, D), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(VectorFileError, match="not a control vector"):
        import_gguf(model)
    (tmp_path / "junk.gguf").write_bytes(b"not gguf at all")
    with pytest.raises(VectorFileError):
        import_gguf(tmp_path / "junk.gguf")


def test_import_gguf_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "calm.gguf"
    write_control_vector(path, {3: np.arange(D, dtype=np.float32) + 1})
    assert main(["import-gguf", str(path), "--out", str(tmp_path / "run")]) == 0
    loaded = SteeringVectorSet.load(tmp_path / "run")
    assert loaded.concepts == ("calm",) and loaded.layers == (3,)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["model"] == "smollm2-135m-instruct"
    assert "layers [3]" in capsys.readouterr().out
