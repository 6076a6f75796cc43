"""Stage 4, the vectors: extraction methods, steering-vector sets and the training pipeline."""

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
from amygdala.vectors._interop import (
    from_control_vector,
    from_steering_vector,
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
    "RunDir",
    "Session",
    "SteeringVector",
    "SteeringVectorSet",
    "TrainConfig",
    "TrainResult",
    "best_layer",
    "capture_corpus",
    "extract",
    "from_control_vector",
    "from_steering_vector",
    "open_session",
    "paired_differences",
    "to_control_vector",
    "to_steering_vector",
    "train",
]
