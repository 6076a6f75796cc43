"""amygdala: find, check and use emotion directions inside transformer language models.

The whole public API is importable from here; everything in ``amygdala._*``
modules is private. Importing has no side effects.

>>> import amygdala
>>> amygdala.Site.parse("resid_post.12")
Site(layer=12, point='resid_post')
"""

from amygdala._backends import (
    Ablation,
    Backend,
    Edit,
    Generation,
    Trace,
    available_backends,
    get_backend,
)
from amygdala._circuit_experiments import (
    AblationEffect,
    CircuitExperiments,
    Enhancement,
    Specificity,
    circuit_experiments,
)
from amygdala._circuits import (
    Circuit,
    CircuitFileError,
    HeadScore,
    NeuronScore,
    circuit_from_pairs,
    find_circuit,
    overlap_matrix,
)
from amygdala._corpus import CANONICAL_CONCEPTS, Corpus, Scenario, Text
from amygdala._errors import (
    AmygdalaError,
    BackendError,
    CaptureInterruptedError,
    CorpusError,
    DimensionMismatchError,
    LintError,
    MissingDependencyError,
    ModelLoadError,
    NonFiniteError,
    PoolingError,
    StoreError,
    UnknownConceptError,
    UnknownSiteError,
    UnsupportedArchitectureError,
    VectorFileError,
)
from amygdala._eval_steer import FLUENCY_BUDGET, SteerEvaluation, evaluate_steering
from amygdala._evaluate import Evaluation, evaluate
from amygdala._extract import METHODS, NORMALISATIONS, ExtractionInput, extract
from amygdala._judge import Judge, fit_judge
from amygdala._leakage import LeakageResult, bag_of_words_loso
from amygdala._lint import Finding, LintReport, lint_path
from amygdala._model import DEFAULT_MODEL, LoadedModel, load_model
from amygdala._quality import (
    CLEAN_FIRST_PC,
    CONTAMINATED_COSINE,
    FRAGMENTED_FIRST_PC,
    MIN_STORIES,
    REDUNDANT_R2,
    SINGLE_NEURON_COSINE,
    UNSTABLE_COSINE,
    ConceptQuality,
    LayerQuality,
    QualityFileError,
    QualityReport,
    Thresholds,
    build_quality_report,
    compute_quality,
)
from amygdala._readout import NeutralTextsError, Readout, ReadoutStats, read, read_generation
from amygdala._steer import (
    POSITIONS,
    CircuitMissingError,
    RunContext,
    circuit_ablations,
    modulate,
    open_run,
    steer,
    steered_generate,
)
from amygdala._store import Activations, ActivationStore
from amygdala._train import Session, TrainConfig, TrainResult, capture_corpus, open_session, train
from amygdala._types import ModelDims, Pooling, Site
from amygdala._vectors import SteeringVector, SteeringVectorSet

__all__ = [
    "CANONICAL_CONCEPTS",
    "CLEAN_FIRST_PC",
    "CONTAMINATED_COSINE",
    "DEFAULT_MODEL",
    "FLUENCY_BUDGET",
    "FRAGMENTED_FIRST_PC",
    "METHODS",
    "MIN_STORIES",
    "NORMALISATIONS",
    "POSITIONS",
    "REDUNDANT_R2",
    "SINGLE_NEURON_COSINE",
    "UNSTABLE_COSINE",
    "Ablation",
    "AblationEffect",
    "ActivationStore",
    "Activations",
    "AmygdalaError",
    "Backend",
    "BackendError",
    "CaptureInterruptedError",
    "Circuit",
    "CircuitExperiments",
    "CircuitFileError",
    "CircuitMissingError",
    "ConceptQuality",
    "Corpus",
    "CorpusError",
    "DimensionMismatchError",
    "Edit",
    "Enhancement",
    "Evaluation",
    "ExtractionInput",
    "Finding",
    "Generation",
    "HeadScore",
    "Judge",
    "LayerQuality",
    "LeakageResult",
    "LintError",
    "LintReport",
    "LoadedModel",
    "MissingDependencyError",
    "ModelDims",
    "ModelLoadError",
    "NeuronScore",
    "NeutralTextsError",
    "NonFiniteError",
    "Pooling",
    "PoolingError",
    "QualityFileError",
    "QualityReport",
    "Readout",
    "ReadoutStats",
    "RunContext",
    "Scenario",
    "Session",
    "Site",
    "Specificity",
    "SteerEvaluation",
    "SteeringVector",
    "SteeringVectorSet",
    "StoreError",
    "Text",
    "Thresholds",
    "Trace",
    "TrainConfig",
    "TrainResult",
    "UnknownConceptError",
    "UnknownSiteError",
    "UnsupportedArchitectureError",
    "VectorFileError",
    "available_backends",
    "bag_of_words_loso",
    "build_quality_report",
    "capture_corpus",
    "circuit_ablations",
    "circuit_experiments",
    "circuit_from_pairs",
    "compute_quality",
    "evaluate",
    "evaluate_steering",
    "extract",
    "find_circuit",
    "fit_judge",
    "get_backend",
    "lint_path",
    "load_model",
    "modulate",
    "open_run",
    "open_session",
    "overlap_matrix",
    "read",
    "read_generation",
    "steer",
    "steered_generate",
    "train",
]
