"""The exception hierarchy: every error amygdala raises is an `AmygdalaError`.

Each class also subclasses the builtin a caller would naturally catch, so
``except KeyError`` still works for an unknown concept. Messages follow one
shape: what was expected, what came, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AmygdalaError",
    "BackendError",
    "CaptureInterruptedError",
    "CircuitFileError",
    "CircuitMissingError",
    "CorpusError",
    "DegenerateDirectionError",
    "DeviceError",
    "DimensionMismatchError",
    "EvaluationFileError",
    "LintError",
    "MissingDependencyError",
    "ModelLoadError",
    "NeutralTextsError",
    "NonFiniteError",
    "PoolingError",
    "QualityFileError",
    "RequestError",
    "StoreError",
    "UnknownConceptError",
    "UnknownSiteError",
    "UnsupportedArchitectureError",
    "VectorFileError",
    "ViewError",
]


class AmygdalaError(Exception):
    """Base class of every error raised by amygdala."""


class CorpusError(AmygdalaError, ValueError):
    """A corpus on disk is malformed (missing baseline, empty file, bad encoding...)."""


class LintError(CorpusError):
    """A corpus failed lint with errors (raised by `Corpus.lint(strict=True)`)."""


class ModelLoadError(AmygdalaError, OSError):
    """A model or tokenizer could not be found or loaded."""


class DeviceError(AmygdalaError, ValueError):
    """A device or dtype name is unknown, or the device is not available on this machine."""


class MissingDependencyError(AmygdalaError, ImportError):
    """An optional dependency is not installed; the message names the install command."""


class UnsupportedArchitectureError(AmygdalaError, NotImplementedError):
    """The torch backend has no module map for this model architecture."""


class BackendError(AmygdalaError, RuntimeError):
    """A backend could not perform an operation (unknown backend name, failed hook...)."""


class PoolingError(AmygdalaError, ValueError):
    """A pooling specification is malformed."""


class UnknownSiteError(AmygdalaError, LookupError):
    """A site names a layer or hook point the model does not have."""


class UnknownConceptError(AmygdalaError, KeyError):
    """A concept is not present in a vector set, store or corpus."""

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class DimensionMismatchError(AmygdalaError, ValueError):
    """Two arrays that must share a dimension do not (hidden size, layer count...)."""


class NonFiniteError(AmygdalaError, ValueError):
    """An activation or vector contains NaN or infinity."""


class DegenerateDirectionError(AmygdalaError, ValueError):
    """An extraction method cannot give a finite, non-zero direction from this data
    (one concept where it needs a contrast, a zero mean difference...)."""


class StoreError(AmygdalaError, OSError):
    """An activation store on disk is unreadable, foreign or inconsistent."""


class CaptureInterruptedError(AmygdalaError, RuntimeError):
    """A capture stopped part-way; finished batches are kept and a rerun resumes."""


class VectorFileError(AmygdalaError, ValueError):
    """A steering-vector file is malformed or from an incompatible version."""


class NeutralTextsError(AmygdalaError, FileNotFoundError):
    """No neutral texts are available to calibrate the readout."""


class CircuitMissingError(AmygdalaError, FileNotFoundError):
    """A run directory has no circuit file for a concept."""


class CircuitFileError(AmygdalaError, ValueError):
    """A circuit JSON file is missing, malformed or from a newer format."""


class QualityFileError(AmygdalaError, ValueError):
    """A quality.json file is missing, malformed or from a newer schema."""


class EvaluationFileError(AmygdalaError, ValueError):
    """An evaluation.json file is malformed or from a newer format."""


class ViewError(AmygdalaError, ValueError):
    """A read-out view is not one of ``z``, ``relative`` (or ``both`` for a display)."""


class RequestError(AmygdalaError, ValueError):
    """An HTTP request to ``amygdala serve`` is malformed or over a limit.

    Attributes:
        status: the HTTP status to answer with (400, 401, 404, 413, 429...).
        param: the request field at fault, when there is one.
        code: a short machine-readable reason (``invalid_value``, ``queue_full``...).
    """

    def __init__(self, message: str, *, status: int = 400, param: str | None = None,
                 code: str = "invalid_value") -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code
