"""amygdala: find, check and use emotion directions inside transformer language models.

The package is laid out as the pipeline it runs; each stage is a subpackage with its
own public names, and the names most people need are re-exported here:

- `amygdala.corpus`: `Corpus`, `Scenario`, lint and leakage checks;
- `amygdala.backends`: `load_model`, the `Backend` protocol and its implementations;
- `amygdala.store`: `ActivationStore`;
- `amygdala.vectors`: `extract`, `SteeringVector(Set)`, `RunDir` (a run directory's files,
  config, loader and best layer);
- `amygdala.diagnose`: `evaluate`, `QualityReport`, circuits;
- `amygdala.intervene`: `steer`, `read`, steering evaluation;
- `amygdala.pipeline`: `train`, the whole job that writes a complete run directory;
- `amygdala.errors`: every exception, all subclasses of `AmygdalaError`.

Modules whose names start with an underscore are private. Importing has no side effects.

>>> import amygdala
>>> amygdala.Site.parse("resid_post.12")
Site(layer=12, point='resid_post')
"""

from amygdala import backends, corpus, diagnose, errors, intervene, pipeline, store, vectors
from amygdala._types import ModelDims, Pooling, Site
from amygdala.backends import (
    DEFAULT_MODEL,
    Backend,
    LoadedModel,
    attach,
    available_backends,
    get_backend,
    load_model,
)
from amygdala.corpus import CANONICAL_CONCEPTS, Corpus, Scenario, Text, lint_path
from amygdala.diagnose import (
    Circuit,
    Evaluation,
    QualityReport,
    circuit_experiments,
    compute_quality,
    evaluate,
    find_circuit,
)
from amygdala.errors import AmygdalaError
from amygdala.intervene import (
    Readout,
    RunContext,
    evaluate_steering,
    open_run,
    read,
    read_generation,
    steer,
    steered_generate,
    steering,
)
from amygdala.pipeline import RunOptions, train
from amygdala.store import ActivationStore
from amygdala.vectors import (
    METHODS,
    ExtractionInput,
    SteeringVector,
    SteeringVectorSet,
    TrainConfig,
    capture_corpus,
    extract,
    open_session,
)
from amygdala.vectors._run import RunDir

__all__ = [
    "CANONICAL_CONCEPTS",
    "DEFAULT_MODEL",
    "METHODS",
    "ActivationStore",
    "AmygdalaError",
    "Backend",
    "Circuit",
    "Corpus",
    "Evaluation",
    "ExtractionInput",
    "LoadedModel",
    "ModelDims",
    "Pooling",
    "QualityReport",
    "Readout",
    "RunContext",
    "RunDir",
    "RunOptions",
    "Scenario",
    "Site",
    "SteeringVector",
    "SteeringVectorSet",
    "Text",
    "TrainConfig",
    "attach",
    "available_backends",
    "backends",
    "capture_corpus",
    "circuit_experiments",
    "compute_quality",
    "corpus",
    "diagnose",
    "errors",
    "evaluate",
    "evaluate_steering",
    "extract",
    "find_circuit",
    "get_backend",
    "intervene",
    "lint_path",
    "load_model",
    "open_run",
    "open_session",
    "pipeline",
    "read",
    "read_generation",
    "steer",
    "steered_generate",
    "steering",
    "store",
    "train",
    "vectors",
]
