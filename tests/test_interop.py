"""Interop with steering-vectors and repeng objects, and the Hub-style folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from amygdala._types import Site
from amygdala.backends._registry import get_backend
from amygdala.errors import MissingDependencyError, VectorFileError
from amygdala.intervene._steer import steer
from amygdala.vectors._interop import (
    from_control_vector,
    from_pretrained,
    from_steering_vector,
    save_pretrained,
    to_control_vector,
    to_steering_vector,
)
from amygdala.vectors._set import SteeringVectorSet
from tests.conftest import tiny_llama

TEXTS = ["The kettle clicked off.", "He read the letter twice, then folded it."]


def _vectors(d_model: int = 32, layers: tuple[int, ...] = (0, 1, 2)) -> SteeringVectorSet:
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(2, len(layers), d_model)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return SteeringVectorSet(
        concepts=["calm", "joyful"], layers=layers, directions=directions,
        raw_norm=np.ones((2, len(layers)), np.float32),
        resid_norm=np.array([2.0, 3.0, 4.0][: len(layers)], np.float32),
        mean=np.zeros((len(layers), d_model), np.float32),
        std=np.ones((len(layers), d_model), np.float32), method="paired", normalisation="raw",
        provenance={"model_id": "tiny-llama", "model_fingerprint": "abc"},
    )


def _importable(name: str) -> Any:
    try:
        return __import__(name)
    except Exception as exc:  # repeng 0.4 raises AttributeError under NumPy 2
        pytest.skip(f"{name} is not importable here ({type(exc).__name__}: {exc})")


def test_steering_vectors_apply_matches_amygdala_steer() -> None:
    _importable("steering_vectors")
    vectors = _vectors()
    sv = to_steering_vector(vectors, "joyful", alpha=0.5, layers=[1])
    assert sorted(sv.layer_activations) == [1]
    np.testing.assert_allclose(sv.layer_activations[1].numpy(),
                               0.5 * 3.0 * vectors.directions[1, 1], rtol=1e-6)
    lm = tiny_llama()
    backend = get_backend("torch", lm)
    with steer(backend, vectors, {"joyful": 0.5}, layers=[1]):
        ours = backend.logits(TEXTS)
    plain = backend.logits(TEXTS)
    with sv.apply(lm.model, multiplier=1.0):
        theirs = backend.logits(TEXTS)
    assert not torch.allclose(ours, plain)
    torch.testing.assert_close(theirs, ours)


def test_steering_vector_round_trips() -> None:
    sv_module = _importable("steering_vectors")
    vectors = _vectors()
    sv = to_steering_vector(vectors, "calm", alpha=2.0)
    back = from_steering_vector(sv, concept="calm", model_id="tiny-llama")
    assert back.layers == vectors.layers and back.concepts == ("calm",)
    for layer in vectors.layers:
        np.testing.assert_allclose(back.vector("calm", layer).steering(1.0),
                                   vectors.vector("calm", layer).steering(2.0), rtol=1e-5)
    other = sv_module.SteeringVector(layer_activations={1: torch.ones(32)}, layer_type="mlp")
    with pytest.raises(VectorFileError, match="decoder_block"):
        from_steering_vector(other, concept="x")


def test_repeng_control_vector_round_trips() -> None:
    _importable("repeng")
    vectors = _vectors()
    cv = to_control_vector(vectors, "joyful", alpha=1.0, layers=[2])
    np.testing.assert_allclose(cv.directions[2], 4.0 * vectors.directions[1, 2], rtol=1e-6)
    back = from_control_vector(cv, concept="joyful")
    np.testing.assert_allclose(back.vector("joyful", 2).steering(1.0), cv.directions[2])


class _Directions:
    """The two attributes repeng's ControlVector carries, for the layer arithmetic only."""

    def __init__(self, directions: dict[int, np.ndarray]) -> None:
        self.model_type = "llama"
        self.directions = directions


def test_negative_repeng_layers_need_the_layer_count() -> None:
    cv = _Directions({-1: np.ones(4, np.float32), -2: 2 * np.ones(4, np.float32)})
    with pytest.raises(VectorFileError, match="n_layers"):
        from_control_vector(cv, concept="x")
    placed = from_control_vector(cv, concept="x", n_layers=30)
    assert placed.layers == (28, 29)
    np.testing.assert_allclose(placed.vector("x", 28).steering(1.0), 2 * np.ones(4))
    with pytest.raises(VectorFileError, match="twice"):
        from_control_vector(_Directions({-1: np.ones(4), 29: np.ones(4)}), concept="x",
                            n_layers=30)


def test_a_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in ("steering_vectors", "repeng"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(MissingDependencyError, match=r"amygdala-lens\[steering-vectors\]"):
        to_steering_vector(_vectors(), "calm")
    with pytest.raises(MissingDependencyError, match=r"amygdala-lens\[repeng\]"):
        to_control_vector(_vectors(), "calm")


def test_save_pretrained_writes_a_hub_folder_that_reads_back(tmp_path: Path) -> None:
    vectors = _vectors()
    out = save_pretrained(vectors, tmp_path / "hub")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "vectors.json", "vectors.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["concepts"] == ["calm", "joyful"] and config["d_model"] == 32
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: amygdala\n") and "base_model: tiny-llama" in card
    back = from_pretrained(out)
    np.testing.assert_array_equal(back.directions, vectors.directions)
    np.testing.assert_array_equal(back.resid_norm, vectors.resid_norm)
    assert back.provenance["model_fingerprint"] == "abc"


def test_from_pretrained_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(VectorFileError, match="snapshot_download"):
        from_pretrained("someone/emotions")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(VectorFileError, match="not an amygdala vector folder"):
        from_pretrained(tmp_path / "model")
    out = save_pretrained(_vectors(), tmp_path / "hub")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "layers": [5]}))
    with pytest.raises(VectorFileError, match="edited by hand"):
        from_pretrained(out)


def test_exported_vectors_steer_the_same_site() -> None:
    # An independent check of the convention: steering-vectors' decoder_block layer L
    # is amygdala's resid_post L, so its edit shows up in resid_post L and not before.
    _importable("steering_vectors")
    vectors = _vectors()
    sv = to_steering_vector(vectors, "calm", alpha=1.0, layers=[1])
    lm = tiny_llama()
    backend = get_backend("torch", lm)
    sites = [Site(layer=1, point="resid_mid"), Site(layer=1)]
    plain = backend.capture_tokens(TEXTS[:1], sites)[0]
    with sv.apply(lm.model):
        moved = backend.capture_tokens(TEXTS[:1], sites)[0]
    torch.testing.assert_close(moved[sites[0]], plain[sites[0]])
    torch.testing.assert_close(moved[sites[1]] - plain[sites[1]],
                               sv.layer_activations[1].expand_as(plain[sites[1]]))
