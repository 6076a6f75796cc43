"""A small real run for the live read-out tests: three concepts, two layers, SmolLM2.

Trained with the library's own `train` on a tiny corpus written here, so the
run directory is what `amygdala train` writes (vectors, run.json) and the
neutral statistics come from `load_or_compute_stats`, like a user's run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.corpus_helpers import write

LAYERS = (9, 15)
CONCEPTS = ("joyful", "afraid", "calm")
_SCENARIOS = {
    "garden_gate": {
        "baseline": "I walked to the garden gate and looked at the path.",
        "joyful": "I ran to the garden gate laughing, thrilled, my heart bursting with delight.",
        "afraid": "I crept to the garden gate, terrified, my heart pounding at every shadow.",
        "calm": "I strolled to the garden gate, relaxed and unhurried, breathing slowly.",
    },
    "letter": {
        "baseline": "The letter arrived on Tuesday and I opened it at the table.",
        "joyful": "The letter arrived and I shrieked with joy, grinning as I read it twice.",
        "afraid": "The letter arrived and my hands shook with dread as I tore it open.",
        "calm": "The letter arrived and I opened it peacefully, at ease with whatever it said.",
    },
    "night_train": {
        "baseline": "The night train stopped at the station and the doors opened.",
        "joyful": "The night train stopped and I cheered, overjoyed to be home at last.",
        "afraid": "The night train stopped in the dark and I froze, scared of who was outside.",
        "calm": "The night train stopped and I sat serenely, content to wait in the quiet.",
    },
}
_NEUTRAL = (
    "The bus left the depot at nine and turned onto the main road past the market.",
    "Place the folder on the second shelf and label the drawer with the date.",
    "The library opens at ten on weekdays and closes at six in the evening.",
    "Water boils at a lower temperature at high altitude because the pressure is lower.",
)


def write_corpus(root: Path) -> Path:
    """Write the tiny corpus under ``root`` and return it."""
    for slug, texts in _SCENARIOS.items():
        for name, text in texts.items():
            write(root / "paired" / slug / f"{name}.txt", text + "\n")
    for i, text in enumerate(_NEUTRAL):
        write(root / "neutral" / f"n{i}.txt", text + "\n")
    return root


def build_run(backend: Any, workdir: Path, layers: tuple[int, ...] = LAYERS) -> Path:
    """Train the small run with ``backend``'s model at ``layers``; compute its neutral
    statistics."""
    from amygdala._types import Pooling
    from amygdala.corpus._model import Corpus
    from amygdala.intervene._readout import load_or_compute_stats
    from amygdala.store._store import ActivationStore
    from amygdala.vectors._train import Session, TrainConfig, train

    corpus = Corpus.load(write_corpus(workdir / "corpus"))
    loaded = backend.loaded
    store = ActivationStore(workdir / "store", fingerprint=loaded.fingerprint, pooling=Pooling())
    session = Session(loaded=loaded, backend=backend, store=store)
    result = train(corpus, config=TrainConfig(layers=layers), out=workdir / "run",
                   session=session)
    assert result.run_dir is not None
    load_or_compute_stats(result.run_dir, backend, result.vectors)
    return result.run_dir
