"""Device and dtype names as users type them (``--device cuda:1 --dtype bfloat16``).

Activations are captured in the model's dtype and pooled in float32 (see
`amygdala.backends._hooked.pool`), so a bfloat16 model on a GPU gives float32
statistics; the dtype is part of the model's fingerprint, so its activations are
stored apart from a float32 load of the same weights.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import torch

from amygdala.errors import DeviceError

__all__ = ["DEVICE_HELP", "DTYPES", "DtypeName", "dtype_name", "resolve_device", "resolve_dtype"]

DtypeName = Literal["float32", "bfloat16", "float16"]
DTYPES: Final[dict[DtypeName, torch.dtype]] = {
    "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
}
DEVICE_HELP: Final = "'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1' or 'mps'"


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Turn ``"bfloat16"`` (or a `torch.dtype`) into the `torch.dtype`.

    Raises:
        DeviceError: not one of float32, bfloat16, float16.

    >>> resolve_dtype("bfloat16")
    torch.bfloat16
    """
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        name = str(dtype).removeprefix("torch.")
    else:
        name = dtype.removeprefix("torch.")
        if name in DTYPES:
            return DTYPES[name]
    raise DeviceError(
        f"dtype {name!r} is not supported; expected one of {', '.join(get_args(DtypeName))} "
        "(float32 on CPU; bfloat16 on recent GPUs; float16 on older ones)"
    )


def dtype_name(dtype: torch.dtype) -> DtypeName:
    """The name `resolve_dtype` accepts for ``dtype``.

    >>> dtype_name(torch.float16)
    'float16'
    """
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise DeviceError(f"dtype {dtype} has no name; expected one of {', '.join(DTYPES)}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``"auto"``, ``"cuda:1"``... into a `torch.device` that exists here.

    Raises:
        DeviceError: the name is not a device, or the device is not available.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        chosen = device
    elif device == "auto":
        # Not MPS: some ops still fall back or fail there, so it stays opt-in.
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            chosen = torch.device(device)
        except (RuntimeError, ValueError) as exc:
            raise DeviceError(f"device {device!r} is not a device name; expected "
                              f"{DEVICE_HELP}") from exc
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"device {str(chosen)!r} asked for, but PyTorch sees no CUDA device (torch "
                f"{torch.__version__}); use --device cpu, or install a CUDA build of PyTorch "
                "on a machine with an NVIDIA GPU (see docs/gpu.md)")
        if chosen.index is not None and chosen.index >= count:
            raise DeviceError(f"device {str(chosen)!r} does not exist; this machine has "
                              f"cuda:0..cuda:{count - 1}")
    if chosen.type == "mps" and not _mps_available():
        raise DeviceError("device 'mps' asked for, but Apple's MPS backend is not available "
                          "here; use --device cpu")
    return chosen
