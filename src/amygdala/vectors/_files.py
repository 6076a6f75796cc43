"""The file names of a run directory, spelled once (see `amygdala.vectors.RunDir`).

A leaf module (no imports) so that every stage, from the vector set that writes
``vectors.json`` to the steering evaluation that writes ``steering.json``, can name its
file without importing the others.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CIRCUITS_DIR",
    "CIRCUIT_OVERLAP_FILE",
    "CIRCUIT_SUMMARY_FILE",
    "EVALUATION_FILE",
    "QUALITY_FILE",
    "READOUT_ARRAYS",
    "READOUT_META",
    "READOUT_STATS_FILE",
    "RUN_FILE",
    "STEERING_FILE",
    "VECTORS_ARRAYS",
    "VECTORS_META",
    "circuit_file",
]

VECTORS_ARRAYS: Final = "vectors.safetensors"
VECTORS_META: Final = "vectors.json"
RUN_FILE: Final = "run.json"
EVALUATION_FILE: Final = "evaluation.json"
QUALITY_FILE: Final = "quality.json"
READOUT_ARRAYS: Final = "readout.safetensors"
READOUT_META: Final = "readout.json"
READOUT_STATS_FILE: Final = "readout_stats.json"
STEERING_FILE: Final = "steering.json"
CIRCUITS_DIR: Final = "circuits"
CIRCUIT_SUMMARY_FILE: Final = "summary.json"
CIRCUIT_OVERLAP_FILE: Final = "overlap.json"


def circuit_file(concept: str) -> str:
    """The file name of ``concept``'s circuit in ``circuits/`` (`Circuit.save`).

    >>> circuit_file("afraid")
    'afraid.json'
    """
    return f"{concept}.json"
