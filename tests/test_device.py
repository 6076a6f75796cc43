"""--device/--dtype: names, errors, TrainConfig, load_model and every model-loading command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from amygdala._types import Pooling, Site
from amygdala.backends._device import dtype_name, resolve_device, resolve_dtype
from amygdala.backends._loading import load_model
from amygdala.backends._registry import get_backend
from amygdala.cli import build_parser
from amygdala.errors import DeviceError
from amygdala.vectors._train import TrainConfig
from tests.conftest import tiny_llama

# Every command that loads a model.
MODEL_COMMANDS = ("train", "evaluate", "report", "circuits", "info", "steer", "read",
                  "eval-steer", "watch", "serve")


def test_dtype_names_round_trip() -> None:
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16),
                        ("float16", torch.float16)):
        assert resolve_dtype(name) == dtype == resolve_dtype(dtype)
        assert dtype_name(dtype) == name
    with pytest.raises(DeviceError, match="float32, bfloat16, float16"):
        resolve_dtype("float64")
    with pytest.raises(DeviceError, match="expected one of"):
        resolve_dtype(torch.int8)


def test_devices_resolve_or_say_what_is_missing() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(DeviceError, match="not a device name"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--device cpu"):
            resolve_device("cuda")


def test_train_config_carries_device_and_dtype() -> None:
    config = TrainConfig(device="cpu", dtype="bfloat16")
    assert config.to_json()["device"] == "cpu" and config.to_json()["dtype"] == "bfloat16"
    assert TrainConfig().dtype == "float32" and TrainConfig().device == "auto"
    with pytest.raises(DeviceError, match="float64"):
        TrainConfig(dtype="float64")  # type: ignore[arg-type]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_takes_device_and_dtype(command: str) -> None:
    sub = _subparsers(build_parser())[command]
    options = {o for a in sub._actions for o in a.option_strings}
    assert {"--device", "--dtype"} <= options
    dtype = next(a for a in sub._actions if "--dtype" in a.option_strings)
    assert set(dtype.choices or ()) == {"float32", "bfloat16", "float16"}


def test_load_model_in_bfloat16_pools_in_float32(tmp_path: Path) -> None:
    lm = tiny_llama()
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), dtype="bfloat16", device="cpu")
    assert loaded.model.dtype == torch.bfloat16
    backend = get_backend("torch", loaded)
    out = backend.capture(["The kettle clicked off."], [Site(layer=1)], Pooling())[Site(layer=1)]
    reference = get_backend("torch", lm).capture(["The kettle clicked off."], [Site(layer=1)],
                                                  Pooling())[Site(layer=1)]
    assert out.dtype == torch.float32
    # bfloat16 keeps ~3 significant digits: close to the float32 model, not equal.
    torch.testing.assert_close(out, reference, rtol=0.1, atol=0.1)
    with pytest.raises(DeviceError, match="float64"):
        load_model(str(tmp_path), dtype="float64")
