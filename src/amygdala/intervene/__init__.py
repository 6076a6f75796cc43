"""Stage 6, intervention: steering, per-token read-out, and steering evaluation with a judge."""

from amygdala.intervene._eval_steer import FLUENCY_BUDGET, SteerEvaluation, evaluate_steering
from amygdala.intervene._events import Event, EventRule
from amygdala.intervene._hf_steering import steering
from amygdala.intervene._judge import Judge, fit_judge
from amygdala.intervene._monitor import EVENT_FORMAT, Monitor, MonitorResult, TokenRecord
from amygdala.intervene._readout import Readout, ReadoutStats, read, read_generation
from amygdala.intervene._steer import (
    POSITIONS,
    RunContext,
    circuit_ablations,
    modulate,
    open_run,
    steer,
    steered_generate,
)

__all__ = [
    "EVENT_FORMAT",
    "FLUENCY_BUDGET",
    "POSITIONS",
    "Event",
    "EventRule",
    "Judge",
    "Monitor",
    "MonitorResult",
    "Readout",
    "ReadoutStats",
    "RunContext",
    "SteerEvaluation",
    "TokenRecord",
    "circuit_ablations",
    "evaluate_steering",
    "fit_judge",
    "modulate",
    "open_run",
    "read",
    "read_generation",
    "steer",
    "steered_generate",
    "steering",
]
