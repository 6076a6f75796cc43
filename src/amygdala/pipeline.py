"""The whole train job: a corpus in, a complete run directory out.

`train` is what ``amygdala train CORPUS --out RUN_DIR`` runs, so a run written from
Python and one written from the command line hold the same files:

1. the vectors and ``run.json`` (`amygdala.vectors.train`);
2. ``evaluation.json``, the nested leave-one-scenario-out evaluation of the run's method
   (`amygdala.evaluate`) when the corpus has paired scenarios; its recommended layer is
   the run's best layer (`amygdala.vectors.best_layer`);
3. the exports asked for in `RunOptions`: llama.cpp control vectors (``<concept>.gguf``)
   and the read-out bundle (``readout.*``);
4. ``quality.json`` when asked (`QualityReport`).

Every path comes from `amygdala.vectors.RunDir`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from amygdala._io import write_json
from amygdala.corpus._model import Corpus
from amygdala.diagnose._evaluate import Evaluation, evaluate
from amygdala.diagnose._folds import SHRINKAGE_GRID
from amygdala.diagnose._quality import QualityReport, build_quality_report
from amygdala.intervene._readout import export_run_bundle
from amygdala.vectors._extract import ExtractionInput
from amygdala.vectors._gguf import DEFAULT_GGUF_STRENGTH, default_gguf_layers, export_gguf
from amygdala.vectors._run import RunDir, best_layer
from amygdala.vectors._set import SteeringVectorSet
from amygdala.vectors._train import Session, TrainConfig, open_session, write_run_json
from amygdala.vectors._train import train as train_vectors

__all__ = ["RunOptions", "RunResult", "train"]


def _strs(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _optional_ints(values: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)


@attrs.frozen(kw_only=True)
class RunOptions:
    """What `train` writes besides the vectors and ``run.json``.

    Attributes:
        evaluate: run the nested evaluation and write ``evaluation.json`` (skipped, with
            a note in `RunResult.notes`, when the corpus has no paired scenarios).
        quality: compute the quality report and write ``quality.json``.
        export_readout: write the read-out bundle (``readout.*``; needs a run directory).
        gguf: concepts to export as llama.cpp control vectors (``<concept>.gguf``).
        gguf_layers: the control vectors' layers (default: the band around the best layer).
        gguf_strength: per-layer strength, in units of the layer's residual norm.
    """

    evaluate: bool = True
    quality: bool = False
    export_readout: bool = False
    gguf: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    gguf_layers: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_ints)
    gguf_strength: float = DEFAULT_GGUF_STRENGTH


@attrs.frozen(kw_only=True)
class RunResult:
    """What `train` produced.

    Attributes:
        vectors: the steering vectors.
        data: the pooled activations they were extracted from.
        captured: texts captured anew (0 on a warm store).
        seconds: wall time of the vector step (capture + extraction).
        run_dir: the run directory, or None when nothing was written.
        evaluation: the nested evaluation, or None (not asked, or no paired scenarios).
        quality: the quality report, or None when not asked.
        gguf: ``{concept: path}`` of the control vectors written.
        gguf_layers: the control vectors' layers.
        readout: the directory holding the read-out bundle, or None.
        notes: sentences about steps that were skipped and why.
    """

    vectors: SteeringVectorSet
    data: ExtractionInput
    captured: int
    seconds: float
    run_dir: Path | None
    evaluation: Evaluation | None = None
    quality: QualityReport | None = None
    gguf: dict[str, Path] = attrs.field(factory=dict)
    gguf_layers: tuple[int, ...] = ()
    readout: Path | None = None
    notes: tuple[str, ...] = ()


def train(
    corpus: Corpus, *, config: TrainConfig | None = None, out: Path | str | None = None,
    options: RunOptions | None = None, session: Session | None = None,
    progress: bool = False,
) -> RunResult:
    """Train vectors on ``corpus``, evaluate them and write a complete run into ``out``.

    Args:
        corpus: the loaded corpus.
        config: model, backend, method, layers... (recorded in ``run.json``; default
            `TrainConfig()`).
        out: the run directory; None computes everything in memory and writes nothing.
        options: evaluation, quality report and exports (default `RunOptions()`).
        session: a session from `open_session` to reuse (skips loading the model).
        progress: show a capture progress bar on stderr.

    Returns:
        The vectors, their activations, the evaluation and whatever else was written.

    Raises:
        ValueError: an export was asked for without ``out``.

    >>> corpus = amygdala.Corpus.load("paired")  # doctest: +SKIP
    >>> result = amygdala.train(corpus, out="runs/demo")  # doctest: +SKIP
    >>> result.evaluation.best_layer("paired")  # doctest: +SKIP
    (20, 0.83)
    """
    config = config if config is not None else TrainConfig()
    options = options if options is not None else RunOptions()
    if out is None and (options.export_readout or options.gguf):
        raise ValueError("the read-out bundle and control vectors are files: pass out=RUN_DIR "
                         "to export them")
    session = session or open_session(config)
    trained = train_vectors(corpus, config=config, out=out, session=session, progress=progress)
    vectors, run = trained.vectors, (RunDir(out) if out is not None else None)
    notes: list[str] = []
    evaluation = None
    if options.evaluate and not corpus.scenarios:
        notes.append("no paired scenarios: the held-out evaluation (leave one scenario out) "
                     "is skipped; add paired/ scenarios to measure accuracy")
    elif options.evaluate:
        evaluation = evaluate(trained.data, corpus, methods=[config.method],
                              normalisation=config.normalisation,
                              shrinkages=SHRINKAGE_GRID if config.shrinkage is None
                              else (config.shrinkage,))
        chosen = evaluation.results[config.method].settings.get("readout", {}).get("shrinkage")
        if chosen is not None and config.shrinkage is None:
            # The shipped readers use what the nested procedure chose on the whole corpus.
            config = attrs.evolve(config, shrinkage=chosen)
            first = trained
            trained = train_vectors(corpus, config=config, out=out, session=session)
            trained = attrs.evolve(trained, captured=first.captured,
                                   seconds=first.seconds + trained.seconds)
            if run is not None:
                write_run_json(run.root, config=config, corpus=corpus, session=session,
                               captured=trained.captured, seconds=trained.seconds)
            vectors = trained.vectors
            notes.append(f"probe shrinkage {chosen:g} chosen on inner folds (read-out task)")
        if run is not None:
            write_json(run.evaluation, evaluation.to_json())
    gguf: dict[str, Path] = {}
    gguf_layers: tuple[int, ...] = ()
    if options.gguf and run is not None:
        center = best_layer(None if evaluation is None else evaluation.to_json(),
                            vectors.method, vectors.layers).layer
        gguf_layers = options.gguf_layers or tuple(default_gguf_layers(vectors, center))
        hint = str(getattr(session.loaded.model.config, "model_type", "llama"))
        for concept in options.gguf:
            gguf[concept] = export_gguf(vectors, run.gguf(concept), concept,
                                        layers=gguf_layers, strength=options.gguf_strength,
                                        model_hint=hint)
    readout = None
    if options.export_readout and run is not None:
        emotional = [t.id for s in corpus.scenarios for t in s.variants.values()] + [
            t.id for t in corpus.stories]
        readout = export_run_bundle(run.root, session.backend, vectors, corpus=corpus.root,
                                    data=trained.data, emotional_ids=emotional)
    quality = None
    if options.quality:
        quality = build_quality_report(session, vectors, trained.data, corpus,
                                       evaluation=evaluation)
        if run is not None:
            quality.save(run.root)
    return RunResult(vectors=vectors, data=trained.data, captured=trained.captured,
                     seconds=trained.seconds, run_dir=trained.run_dir, evaluation=evaluation,
                     quality=quality, gguf=gguf, gguf_layers=gguf_layers, readout=readout,
                     notes=tuple(notes))
