"""Stage 4, the vectors: extraction methods, steering-vector sets and the training pipeline.

The exporters are functions that take a set (`export_gguf(vectors, path, concept)`,
`save_pretrained(vectors, directory)`, `to_control_vector`, `to_steering_vector`) and the
importers return one (`import_gguf`, `from_pretrained`, ...), so `SteeringVectorSet` knows
no file format but its own and the modules import one way.
"""

from amygdala.vectors._bundle import ReadoutBundle, relative, shared_variance
from amygdala.vectors._extract import (
    METHODS,
    NORMALISATIONS,
    ExtractionInput,
    Method,
    Normalisation,
    RawDirections,
    extract,
    paired_differences,
)
from amygdala.vectors._gguf import export_gguf, import_gguf
from amygdala.vectors._interop import (
    from_control_vector,
    from_pretrained,
    from_steering_vector,
    save_pretrained,
    to_control_vector,
    to_steering_vector,
)
from amygdala.vectors._run import LayerChoice, RunDir, best_layer
from amygdala.vectors._set import SteeringVector, SteeringVectorSet
from amygdala.vectors._train import (
    Session,
    TrainConfig,
    TrainResult,
    capture_corpus,
    open_session,
    train,
)

__all__ = [
    "METHODS",
    "NORMALISATIONS",
    "ExtractionInput",
    "LayerChoice",
    "Method",
    "Normalisation",
    "RawDirections",
    "ReadoutBundle",
    "RunDir",
    "Session",
    "SteeringVector",
    "SteeringVectorSet",
    "TrainConfig",
    "TrainResult",
    "best_layer",
    "capture_corpus",
    "export_gguf",
    "extract",
    "from_control_vector",
    "from_pretrained",
    "from_steering_vector",
    "import_gguf",
    "open_session",
    "paired_differences",
    "relative",
    "save_pretrained",
    "shared_variance",
    "to_control_vector",
    "to_steering_vector",
    "train",
]
