"""Stage 5, diagnosis: held-out evaluation, quality reports and circuits."""

from amygdala.diagnose._circuit_experiments import (
    AblationEffect,
    CircuitExperiments,
    Enhancement,
    Specificity,
    circuit_experiments,
)
from amygdala.diagnose._circuits import (
    Circuit,
    HeadScore,
    NeuronScore,
    circuit_from_pairs,
    find_circuit,
    overlap_matrix,
)
from amygdala.diagnose._evaluate import Evaluation, evaluate
from amygdala.diagnose._quality import (
    CLEAN_FIRST_PC,
    CONTAMINATED_COSINE,
    FRAGMENTED_FIRST_PC,
    MIN_STORIES,
    REDUNDANT_R2,
    SINGLE_NEURON_COSINE,
    UNSTABLE_COSINE,
    ConceptQuality,
    LayerQuality,
    QualityReport,
    Thresholds,
    build_quality_report,
    compute_quality,
)
from amygdala.diagnose._quality_render import compare_reports, render_report

__all__ = [
    "CLEAN_FIRST_PC",
    "CONTAMINATED_COSINE",
    "FRAGMENTED_FIRST_PC",
    "MIN_STORIES",
    "REDUNDANT_R2",
    "SINGLE_NEURON_COSINE",
    "UNSTABLE_COSINE",
    "AblationEffect",
    "Circuit",
    "CircuitExperiments",
    "ConceptQuality",
    "Enhancement",
    "Evaluation",
    "HeadScore",
    "LayerQuality",
    "NeuronScore",
    "QualityReport",
    "Specificity",
    "Thresholds",
    "build_quality_report",
    "circuit_experiments",
    "circuit_from_pairs",
    "compare_reports",
    "compute_quality",
    "evaluate",
    "find_circuit",
    "overlap_matrix",
    "render_report",
]
