"""Readout: per-token concept scores at a layer, z-scored against neutral text.

``score[t, c] = readers(layer)[c] . hidden[t] + offsets(layer)[c]`` (the method's own
score, `SteeringVectorSet.readers`); each concept's score is then
z-scored with the mean and spread of that same score over the tokens of neutral
texts (positions after the first ``skip``, whose huge norms would swamp the
statistics). A z of 3 means "as high as the top ~0.1% of neutral tokens".
``skip`` is the run's own: the ``skip`` of its mean pooling (``provenance["pooling"]``);
for last-token pooling or a set without pooling (an imported control vector) it is
2, and `readout_skip` says so (stderr, and ``skip_source`` in the JSON).

Neutral statistics for every layer come from one pass over the corpus's neutral
texts and are cached in ``RUN_DIR/readout_stats.json`` (keyed by the vectors'
model fingerprint and corpus hash, so a retrained run recomputes them).

Two options change what is shown: a *band* of layers (the z-scores of each layer,
averaged over the band) and the *relative* read-out (each concept's z minus the mean
over concepts, which removes the component every concept shares). The exported bundle
(`amygdala.vectors._bundle.ReadoutBundle`) computes the same numbers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import numpy as np
import torch

from amygdala._codec import from_data, spec, to_data
from amygdala._io import write_atomic
from amygdala._types import Site
from amygdala._views import View, view_from_file
from amygdala.backends._registry import Backend, Generation
from amygdala.errors import (
    DimensionMismatchError,
    MissingDependencyError,
    NeutralTextsError,
)
from amygdala.vectors._bundle import ReadoutBundle
from amygdala.vectors._bundle import relative as _relative
from amygdala.vectors._files import EVALUATION_FILE, READOUT_STATS_FILE
from amygdala.vectors._set import SteeringVectorSet

__all__ = [
    "STATS_FILE",
    "NeutralTextsError",
    "Readout",
    "ReadoutStats",
    "RecommendedRead",
    "bundle_from_stats",
    "compute_stats",
    "load_or_compute_stats",
    "neutral_texts",
    "read",
    "read_generation",
    "recommended_from_evaluation",
    "recommended_read",
    "score_tokens",
    "zscore_tokens",
]

STATS_FILE: Final = READOUT_STATS_FILE  # the old name, kept for existing imports
# 2: scores include the method's offsets and readers are no longer unit-normalised.
_STATS_FORMAT = 2
# First positions excluded from neutral statistics (attention-sink tokens) when the
# run's pooling does not say how many.
_SKIP = 2


def readout_skip(vectors: SteeringVectorSet) -> tuple[int, str]:
    """How many first tokens the readout leaves out of its statistics, and why.

    The run's mean-pooling ``skip`` when its provenance records one; else 2.

    >>> import numpy as np
    >>> vs = SteeringVectorSet(concepts=["a"], layers=[0], directions=np.ones((1, 1, 2)),
    ...     raw_norm=np.ones((1, 1)), resid_norm=np.ones(1), mean=np.zeros((1, 2)),
    ...     std=np.ones((1, 2)), method="paired", normalisation="raw",
    ...     provenance={"pooling": "mean_skip4"})
    >>> readout_skip(vs)
    (4, 'run pooling mean_skip4')
    """
    from amygdala._types import Pooling
    from amygdala.errors import PoolingError

    key = vectors.provenance.get("pooling")
    if isinstance(key, str):
        try:
            pooling = Pooling.parse(key)
        except PoolingError:
            return _SKIP, f"default {_SKIP} (the run's pooling {key!r} is not one amygdala reads)"
        if pooling.kind == "mean":
            return pooling.skip, f"run pooling {key}"
        return _SKIP, f"default {_SKIP} (the run pools the last token, which sets no skip)"
    return _SKIP, f"default {_SKIP} (the vectors record no pooling)"


def _strs(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(x) for x in items)


def _int_tuple(items: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(x) for x in items)


@attrs.frozen(kw_only=True)
class ReadoutStats:
    """Per-layer, per-concept mean and spread of reader scores over neutral tokens.

    Attributes:
        concepts: concept order of the rows.
        mean: ``{layer: [concepts]}``.
        std: ``{layer: [concepts]}``.
        n_tokens: neutral tokens the statistics came from.
        key: identifies the vectors they belong to (fingerprint + corpus hash + method
            + skip).
        skip: first positions of each text left out (see `readout_skip`).
        skip_source: where ``skip`` came from.
    """

    concepts: tuple[str, ...] = attrs.field(converter=_strs)
    mean: dict[int, np.ndarray] = attrs.field(eq=False)
    std: dict[int, np.ndarray] = attrs.field(eq=False)
    n_tokens: int
    key: str
    skip: int = _SKIP
    skip_source: str = f"default {_SKIP}"

    def zscore(self, layer: int, scores: np.ndarray) -> np.ndarray:
        """Z-score ``[tokens, concepts]`` raw scores at ``layer``."""
        if layer not in self.mean:
            raise DimensionMismatchError(
                f"no neutral statistics at layer {layer}; have {sorted(self.mean)}")
        return (scores - self.mean[layer]) / self.std[layer]  # type: ignore[no-any-return]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``readout_stats.json``, through `amygdala._codec`)."""
        layers = {k: _LayerStats(mean=self.mean[k], std=self.std[k]) for k in sorted(self.mean)}
        record = _StatsFile(key=self.key, skip=self.skip, skip_source=self.skip_source,
                            concepts=self.concepts, n_tokens=self.n_tokens, layers=layers)
        return {"format_version": _STATS_FORMAT, **to_data(record)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReadoutStats:
        """Inverse of `to_json` (files without ``skip`` read the default).

        The caller checks ``format_version``: `load_or_compute_stats` recomputes a file of
        another format rather than refusing it (it is a cache).
        """
        record = from_data(_StatsFile, data)
        return cls(concepts=record.concepts, n_tokens=record.n_tokens, key=record.key,
                   skip=record.skip, skip_source=record.skip_source,
                   mean={k: v.mean for k, v in record.layers.items()},
                   std={k: v.std for k, v in record.layers.items()})


@attrs.frozen(kw_only=True)
class _LayerStats:
    """One layer's entry of ``readout_stats.json``."""

    mean: np.ndarray = attrs.field(eq=False, metadata=spec(dtype="float32"))
    std: np.ndarray = attrs.field(eq=False, metadata=spec(dtype="float32"))


@attrs.frozen(kw_only=True)
class _StatsFile:
    """``readout_stats.json`` as written (its layout, per layer ``{mean, std}``, predates
    the codec; the field order is the file's key order)."""

    key: str
    skip: int = _SKIP
    skip_source: str = f"default {_SKIP}"
    concepts: tuple[str, ...]
    n_tokens: int
    layers: dict[int, _LayerStats]


def _stats_key(vectors: SteeringVectorSet) -> str:
    p = vectors.provenance
    return (f"{p.get('model_fingerprint', '?')}:{p.get('corpus_hash', '?')}:"
            f"{vectors.method}:{vectors.normalisation}:{','.join(vectors.concepts)}:"
            f"skip{readout_skip(vectors)[0]}")


def score_tokens(vectors: SteeringVectorSet, layer: int,
                 hidden: torch.Tensor | np.ndarray) -> np.ndarray:
    """Raw reader scores ``[tokens, concepts]`` of hidden states ``[tokens, d_model]``."""
    h = hidden.detach().float().cpu().numpy() if isinstance(hidden, torch.Tensor) else hidden
    return (np.asarray(h, np.float32) @ vectors.readers(layer).T  # type: ignore[no-any-return]
            + vectors.offsets(layer))


def zscore_tokens(vectors: SteeringVectorSet, stats: ReadoutStats,
                  hidden: Mapping[int, torch.Tensor | np.ndarray], layers: Sequence[int], *,
                  relative: bool = False) -> np.ndarray:
    """Z-scores ``[tokens, concepts]``: the mean over ``layers`` of each layer's z.

    Args:
        vectors: gives readers and offsets.
        stats: neutral statistics of the scores.
        hidden: ``{layer: [tokens, d_model]}`` residual stream at each layer.
        layers: one layer, or a band to average.
        relative: subtract the mean over concepts (`amygdala.vectors._bundle.relative`).
    """
    z = np.mean([stats.zscore(x, score_tokens(vectors, x, hidden[x])) for x in layers], axis=0)
    return _relative(z) if relative else z


def compute_stats(backend: Backend, vectors: SteeringVectorSet,
                  texts: Sequence[str], *, batch_size: int = 8) -> ReadoutStats:
    """Measure neutral statistics at every layer of ``vectors`` in one pass over ``texts``.

    Each text's first `readout_skip` tokens are left out.
    """
    skip, source = readout_skip(vectors)
    sites = [Site(layer=layer) for layer in vectors.layers]
    per_layer: dict[int, list[np.ndarray]] = {layer: [] for layer in vectors.layers}
    n_tokens = 0
    for begin in range(0, len(texts), batch_size):
        captured = backend.capture_tokens(texts[begin:begin + batch_size], sites)
        for item in captured:
            n_tokens += max(0, len(item[sites[0]]) - skip)
            for site in sites:
                acts = item[site][skip:]
                if len(acts):
                    per_layer[site.layer].append(score_tokens(vectors, site.layer, acts))
    if n_tokens < 2:
        raise NeutralTextsError("neutral texts gave fewer than 2 tokens; add longer texts")
    mean, std = {}, {}
    for layer, chunks in per_layer.items():
        scores = np.concatenate(chunks)
        mean[layer] = scores.mean(axis=0).astype(np.float32)
        std[layer] = np.maximum(scores.std(axis=0), 1e-6).astype(np.float32)
    return ReadoutStats(concepts=vectors.concepts, mean=mean, std=std, n_tokens=n_tokens,
                        key=_stats_key(vectors), skip=skip, skip_source=source)


def neutral_texts(vectors: SteeringVectorSet, corpus: Path | str | None = None) -> list[str]:
    """The neutral texts of the run's corpus (baselines when it has no neutral texts).

    Raises:
        NeutralTextsError: the corpus cannot be found; pass ``corpus`` (``--corpus``).
    """
    from amygdala.corpus._model import Corpus
    from amygdala.vectors._extract import reference_ids

    root = Path(corpus) if corpus is not None else Path(
        str(vectors.provenance.get("corpus_root", "")))
    if not str(root) or not ((root / "paired").is_dir() or root.name == "paired"):
        raise NeutralTextsError(
            f"cannot find the run's corpus at {str(root)!r} to calibrate the readout; "
            "pass the corpus root (holding paired/ and neutral/) with --corpus / corpus="
        )
    loaded = Corpus.load(root)
    by_id = {t.id: t.text for t in loaded.texts}
    return [by_id[i] for i in reference_ids(loaded)]


def load_or_compute_stats(run_dir: Path | str, backend: Backend, vectors: SteeringVectorSet,
                          *, corpus: Path | str | None = None) -> ReadoutStats:
    """Read ``RUN_DIR/readout_stats.json`` if it matches ``vectors``; else compute and write it."""
    path = Path(run_dir) / STATS_FILE
    key = _stats_key(vectors)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("format_version") == _STATS_FORMAT and data.get("key") == key:
                stats = ReadoutStats.from_json(data)
                if set(vectors.layers) <= set(stats.mean):
                    return stats
        except (json.JSONDecodeError, KeyError, ValueError):
            pass  # stale or damaged: recompute below
    skip, source = readout_skip(vectors)
    if not source.startswith("run pooling"):
        print(f"note: the readout leaves out the first {skip} tokens of each text: {source}",
              file=sys.stderr)
    stats = compute_stats(backend, vectors, neutral_texts(vectors, corpus))
    write_atomic(path, (json.dumps(stats.to_json()) + "\n").encode())
    return stats


@attrs.frozen(kw_only=True)
class Readout:
    """Per-token concept scores of one text at one layer.

    Attributes:
        tokens: the token strings.
        concepts: column order.
        layer: the layer read.
        z: ``[tokens, concepts]`` z-scores against neutral text.
        start: index of the first token that belongs to the part of interest
            (the first generated token for `read_generation`, else 0).
        band: the layers averaged when more than one (``layer`` is then the middle one).
        relative: whether each concept's z has the mean over concepts removed.
        skip: first positions outside the neutral statistics (the stats' ``skip``).
        skip_source: where ``skip`` came from (see `readout_skip`).
    """

    tokens: tuple[str, ...] = attrs.field(converter=_strs)
    concepts: tuple[str, ...] = attrs.field(converter=_strs)
    layer: int
    z: np.ndarray = attrs.field(eq=False)
    start: int = 0
    band: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)
    relative: bool = False
    skip: int = _SKIP
    skip_source: str = f"default {_SKIP}"

    @property
    def label(self) -> str:
        """``layer 15``, ``layers 12-18 (mean z)``, with ``relative`` when it applies."""
        where = (f"layers {self.band[0]}-{self.band[-1]} (mean z)" if len(self.band) > 1
                 else f"layer {self.layer}")
        return where + (", relative to the mean over concepts" if self.relative else "")

    def top(self, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per token, the ``k`` highest-scoring concepts with their z-scores."""
        order = np.argsort(-self.z, axis=1)[:, :k]
        return [[(self.concepts[j], float(self.z[t, j])) for j in row]
                for t, row in enumerate(order)]

    def mean_z(self, concept: str, *, skip: int | None = None) -> float:
        """Mean z of one concept over tokens from ``max(start, skip)`` on (default
        ``skip``: the readout's own)."""
        first = self.skip if skip is None else skip
        rows = self.z[max(self.start, first):, self.concepts.index(concept)]
        return float(rows.mean()) if len(rows) else 0.0

    @property
    def view(self) -> View:
        """The view of ``z``: ``relative`` or ``z`` (`amygdala._views`)."""
        return "relative" if self.relative else "z"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``view`` names what ``z`` holds; ``relative`` is its old flag)."""
        return {"layer": self.layer, "band": list(self.band), "relative": self.relative,
                "view": self.view, "start": self.start, "skip": self.skip,
                "skip_source": self.skip_source, "tokens": list(self.tokens),
                "concepts": list(self.concepts),
                "z": np.round(self.z, 3).tolist()}

    def render(self, *, top: int = 3, color: bool | None = None) -> str:
        """A compact terminal view: one line per token with its top concepts.

        Each line starts with a coloured cell (ANSI, when ``color`` or stdout is a
        TTY) whose colour is the token's top concept and whose brightness its z.
        """
        use_color = sys.stdout.isatty() if color is None else color
        width = max((len(repr(t)) for t in self.tokens), default=4)
        lines = [f"{self.label}: z-scores against neutral text (top {top} per token)"]
        strip = []
        for t, (token, best) in enumerate(zip(self.tokens, self.top(top), strict=True)):
            cells = "  ".join(f"{c} {z:+.1f}" for c, z in best)
            # "~": attention-sink positions, outside the neutral statistics; "*": generated.
            mark = "~" if t < self.skip else "*" if t >= self.start and self.start else " "
            block = _ansi_block(self.concepts.index(best[0][0]), best[0][1]) if use_color else ""
            strip.append(block or ("#" if best[0][1] >= 2 else "+" if best[0][1] >= 1 else "."))
            lines.append(f"{block}{mark}{token!r:<{width}}  {cells}")
        lines.append("strip: " + "".join(strip) + ("\x1b[0m" if use_color else ""))
        return "\n".join(lines)

    def to_html(self, *, title: str = "amygdala readout") -> str:
        """A self-contained HTML heat map: concepts as rows, tokens as columns.

        Attention-sink tokens are blank and left out of the colour scale, which is
        robust (`amygdala.intervene._display.color_limit`); a relative table (each
        concept against the others) follows the z one unless the z is relative.
        """
        from amygdala.intervene._display import heatmap_html

        return heatmap_html(self.tokens, self.concepts, self.z, title=title,
                            heading=f"{title}: {self.label}, z against neutral text",
                            skip=self.skip, relative_view=not self.relative)

    def save_html(self, path: Path | str) -> Path:
        """Write `to_html` atomically."""
        write_atomic(Path(path), self.to_html().encode())
        return Path(path)

    def save_png(self, path: Path | str) -> Path:
        """Write a PNG heat map, z and relative panels (needs ``amygdala[plot]``).

        Sinks are grey and outside the colour scale; limits are the 98th percentile of |z|.
        """
        from amygdala.intervene._display import heatmap_png

        return heatmap_png(path, self.tokens, self.concepts, self.z,
                           title=f"readout at {self.label}", skip=self.skip,
                           relative_view=not self.relative)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "PNG output needs matplotlib: pip install 'amygdala[plot]' (or use --html)"
        ) from exc
    return plt


def _rgb(z: float, limit: float) -> str:
    v = max(-1.0, min(1.0, z / limit))
    fade = int(255 * (1 - abs(v)))
    return f"rgb(255,{fade},{fade})" if v > 0 else f"rgb({fade},{fade},255)"


# 6 distinguishable ANSI 256-colour hues, 3 brightness steps each.
_HUES = ((52, 124, 196), (22, 28, 46), (17, 21, 33), (58, 142, 226), (53, 91, 201),
         (23, 37, 51))


def _ansi_block(concept_index: int, z: float) -> str:
    steps = _HUES[concept_index % len(_HUES)]
    colour = steps[0 if z < 1 else 1 if z < 2 else 2]
    return f"\x1b[48;5;{colour}m \x1b[0m"


def _token_strings(backend: Backend, ids: Sequence[int]) -> list[str]:
    tok: Any = backend.tokenizer
    return [str(tok.decode([i])) for i in ids]


def read(backend: Backend, vectors: SteeringVectorSet, text: str, *, layer: int,
         stats: ReadoutStats, band: Sequence[int] | None = None,
         relative: bool = False) -> Readout:
    """Score every token of ``text`` against every concept at ``layer``.

    Args:
        backend: the model.
        vectors: readers and offsets.
        text: the text.
        layer: the layer to read (ignored when ``band`` is given).
        stats: neutral statistics at every layer read.
        band: layers whose z-scores are averaged (the multi-layer read-out).
        relative: subtract the mean over concepts from every z.

    >>> r = read(backend, vectors, "I finally got the job!", layer=15,
    ...          stats=load_or_compute_stats(run_dir, backend, vectors))  # doctest: +SKIP
    >>> r.top(1)[-1]  # doctest: +SKIP
    [('joyful', 3.1)]
    """
    layers = list(band) if band else [layer]
    for x in layers:
        vectors.layer_index(x)
    sites = [Site(layer=x) for x in layers]
    captured = backend.capture_tokens([text], sites)[0]
    tok: Any = backend.tokenizer
    ids = tok(text, add_special_tokens=True)["input_ids"]
    z = zscore_tokens(vectors, stats, {s.layer: captured[s] for s in sites}, layers,
                      relative=relative)
    return Readout(tokens=_token_strings(backend, ids), concepts=vectors.concepts,
                   layer=layers[len(layers) // 2], z=z, band=tuple(layers) if band else (),
                   relative=relative, skip=stats.skip, skip_source=stats.skip_source)


@attrs.frozen(kw_only=True)
class RecommendedRead:
    """How ``evaluation.json`` says to read a run's vectors.

    Attributes:
        layer: the read-out's best single layer (None when the file names none).
        band: the band of layers to average, when the inner selection preferred one.
        view: ``z`` or ``relative`` (the one with the higher nested detection AUC;
            ``z`` when the file names none).
        source: where the values came from, for messages.
        view_named: whether the file named the view (else ``view`` is the default).
    """

    layer: int | None
    band: tuple[int, ...] = ()
    view: View = "z"
    source: str = "defaults (no evaluation.json)"
    view_named: bool = False

    @property
    def layers(self) -> list[int]:
        """The layers to read: the band, else the layer (empty when neither is known)."""
        return list(self.band) if self.band else ([] if self.layer is None else [self.layer])


def recommended_read(run_dir: Path | str | None, method: str) -> RecommendedRead:
    """The recommended read-out of ``method`` in ``RUN_DIR/evaluation.json``.

    Files of format 3 and later name it in ``recommended_read[method]`` (layer, band,
    view, chosen on inner folds of the baseline-free task; format 3 spelled the ``z`` view
    ``raw``); older files give the paired task's ``recommended_layer[method]`` and no band
    or view.
    """
    path = None if run_dir is None else Path(run_dir) / EVALUATION_FILE
    if path is None or not path.is_file():
        return RecommendedRead(layer=None)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return RecommendedRead(layer=None, source=f"defaults ({path} is unreadable)")

    def as_ints(value: Any) -> tuple[int, ...]:
        if isinstance(value, int):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            return tuple(value)
        return ()

    entry = (data.get("recommended_read") or {}).get(method)
    if isinstance(entry, dict):
        layer = as_ints(entry.get("layer"))
        view = view_from_file(entry.get("view"))
        return RecommendedRead(layer=layer[0] if layer else None,
                               band=as_ints(entry.get("band")), view=view or "z",
                               view_named=view is not None,
                               source=f"{path} (read-out, chosen on inner folds)")
    layer = as_ints((data.get("recommended_layer") or {}).get(method))
    return RecommendedRead(layer=layer[0] if layer else None,
                           band=as_ints((data.get("recommended_band") or {}).get(method)),
                           source=f"{path} (paired task's layer; an older evaluation)")


def recommended_from_evaluation(run_dir: Path | str | None,
                                method: str) -> tuple[list[int], list[int]]:
    """The recommended read-out layer(s) and band of ``method`` (see `recommended_read`);
    empty lists when the file or field is missing."""
    rec = recommended_read(run_dir, method)
    return ([] if rec.layer is None else [rec.layer]), list(rec.band)


def bundle_from_stats(vectors: SteeringVectorSet, stats: ReadoutStats, *,
                      recommended_layers: Sequence[int], band: Sequence[int] = (),
                      shared: Mapping[str, Any] | None = None,
                      view: View = "z") -> ReadoutBundle:
    """The read-out bundle of ``vectors`` with the neutral statistics ``stats``.

    Raises:
        DimensionMismatchError: ``stats`` lack a layer of ``vectors``.
    """
    missing = [x for x in vectors.layers if x not in stats.mean]
    if missing or tuple(stats.concepts) != tuple(vectors.concepts):
        raise DimensionMismatchError(
            f"neutral statistics cover layers {sorted(stats.mean)} and concepts "
            f"{list(stats.concepts)}; the vectors need layers {list(vectors.layers)} and "
            f"concepts {list(vectors.concepts)}: recompute them with compute_stats")
    return vectors.readout_bundle(
        neutral_mean=stats.mean, neutral_std=stats.std, n_neutral_tokens=stats.n_tokens,
        skip=stats.skip, recommended_layers=recommended_layers, band=band, shared=shared,
        view=view)


def read_generation(
    backend: Backend, vectors: SteeringVectorSet, prompt: str, *, layer: int,
    stats: ReadoutStats, max_new_tokens: int = 40, chat: bool = False,
) -> tuple[Generation, Readout]:
    """Generate from ``prompt`` and read every token as it is produced.

    Activations are recorded during generation (`Backend.tracing`), so steering
    or modulation active around this call shows in the scores; ``Readout.start``
    marks the first generated token. Works with and without the KV cache. The
    last generated token is never fed back, so it has no activation and is not
    in the readout.
    """
    site = Site(layer=layer)
    with backend.tracing([site]) as trace:
        generation = backend.generate(prompt, max_new_tokens=max_new_tokens, chat=chat)
    steps = trace.steps[site]
    fed = len(generation.token_ids) - 1  # the last new token is never fed back
    # With a KV cache each call sees only its new tokens (concatenate them); without
    # one, every call re-reads the whole prefix and the last call covers all positions.
    cached = sum(int(s.shape[1]) for s in steps) == fed
    acts = (trace.stacked(site) if cached else steps[-1])[0, :fed]
    ids = generation.token_ids[:fed]
    z = stats.zscore(layer, score_tokens(vectors, layer, acts))
    return generation, Readout(tokens=_token_strings(backend, ids), concepts=vectors.concepts,
                               layer=layer, z=z, start=generation.prompt_len,
                               skip=stats.skip, skip_source=stats.skip_source)


def shared_component(vectors: SteeringVectorSet, stats: ReadoutStats,
                     hidden: Mapping[int, np.ndarray], layers: Sequence[int], *,
                     measured_on: str) -> dict[str, Any]:
    """How much of each concept's z-score variance the mean over concepts explains.

    Args:
        vectors: readers and offsets.
        stats: neutral per-token statistics (the z-scores are the read-out's).
        hidden: ``{layer: [items, d_model]}`` activations to measure on (pooled texts or
            tokens).
        layers: one layer or a band (z averaged over it, as the read-out does).
        measured_on: a description of the items, recorded with the numbers.

    Returns:
        ``{"layers", "per_concept": {concept: R^2}, "mean", "median", "n_items",
        "measured_on"}`` (R^2 rounded to 4 digits).
    """
    from amygdala.vectors._bundle import shared_variance

    z = zscore_tokens(vectors, stats, hidden, layers)
    r2 = shared_variance(z)
    # A concept whose z is constant over the items has no R^2 (NaN); with none left there
    # is no summary (None), rather than the mean of an empty slice.
    finite = r2[np.isfinite(r2)]
    mean, median = ((round(float(finite.mean()), 4), round(float(np.median(finite)), 4))
                    if finite.size else (None, None))
    return {"layers": list(layers),
            "per_concept": {c: round(float(v), 4) for c, v in zip(vectors.concepts, r2,
                                                                   strict=True)},
            "mean": mean, "median": median,
            "n_items": int(z.shape[0]), "measured_on": measured_on}


def export_run_bundle(run_dir: Path | str, backend: Backend, vectors: SteeringVectorSet, *,
                      corpus: Path | str | None = None,
                      data: Any = None, emotional_ids: Sequence[str] = ()) -> Path:
    """Measure neutral statistics and write the read-out bundle into ``run_dir``.

    The recommended layer(s) and band come from ``run_dir/evaluation.json`` when it names
    them (else the middle layer). When ``data`` (an `ExtractionInput` of the corpus) and
    ``emotional_ids`` are given, the shared component is measured on those pooled texts at
    the recommended layer(s) and recorded in ``readout.json``.
    """
    stats = load_or_compute_stats(run_dir, backend, vectors, corpus=corpus)
    rec = recommended_read(run_dir, vectors.method)
    layers = [x for x in ([] if rec.layer is None else [rec.layer]) if x in vectors.layers]
    band = [x for x in rec.band if x in vectors.layers]
    shared = None
    if data is not None and emotional_ids:
        chosen = band or layers or [vectors.layers[len(vectors.layers) // 2]]
        rows = data.rows(list(emotional_ids))
        hidden = {x: rows[:, data.layers.index(x)] for x in chosen}
        shared = shared_component(vectors, stats, hidden, chosen,
                                  measured_on=f"{len(emotional_ids)} pooled corpus texts "
                                              "(variants and stories)")
    bundle = bundle_from_stats(vectors, stats, recommended_layers=layers, band=band,
                               shared=shared, view=rec.view)
    return bundle.save(run_dir)
