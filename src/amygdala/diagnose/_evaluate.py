"""Held-out evaluation: leave one scenario out, classify its variants by projection.

For each scenario, directions are fitted on all other scenarios; each of its
variants is scored against the concepts the scenario carries by projecting
(variant - baseline) on every concept's reader, and the top-1 concept is
compared with the truth. Accuracy per method and layer is reported next to a
bag-of-words classifier evaluated the same way, and chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from amygdala.corpus._leakage import bag_of_words_loso
from amygdala.corpus._model import Corpus
from amygdala.vectors._extract import ExtractionInput, Method, Normalisation, extract

__all__ = ["Evaluation", "evaluate"]


@attrs.frozen(kw_only=True)
class Evaluation:
    """Leave-one-scenario-out top-1 accuracy.

    Attributes:
        methods: the methods evaluated.
        layers: the layers evaluated.
        accuracy: ``[methods, layers]``.
        per_concept: ``{method: {concept: accuracy at that method's best layer}}``.
        n_items: held-out variants classified.
        chance: expected accuracy of guessing among each scenario's concepts.
        bag_of_words: accuracy of the bag-of-words baseline (same folds, same choices).
    """

    methods: tuple[str, ...]
    layers: tuple[int, ...]
    accuracy: np.ndarray = attrs.field(eq=False)
    per_concept: dict[str, dict[str, float]]
    n_items: int
    chance: float
    bag_of_words: float

    def best_layer(self, method: str) -> tuple[int, float]:
        """The layer with the highest accuracy for ``method`` and that accuracy."""
        row = self.accuracy[self.methods.index(method)]
        i = int(np.argmax(row))
        return self.layers[i], float(row[i])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "methods": list(self.methods), "layers": list(self.layers),
            "accuracy": {m: [round(float(a), 4) for a in self.accuracy[i]]
                         for i, m in enumerate(self.methods)},
            "best": {m: {"layer": self.best_layer(m)[0],
                         "accuracy": round(self.best_layer(m)[1], 4)} for m in self.methods},
            "per_concept_at_best_layer": self.per_concept,
            "n_items": self.n_items, "chance": round(self.chance, 4),
            "bag_of_words": round(self.bag_of_words, 4),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        """Inverse of `to_json` (accuracies rounded to 4 digits)."""
        methods = tuple(data["methods"])
        return cls(methods=methods, layers=tuple(data["layers"]),
                   accuracy=np.array([data["accuracy"][m] for m in methods]),
                   per_concept=data["per_concept_at_best_layer"], n_items=data["n_items"],
                   chance=data["chance"], bag_of_words=data["bag_of_words"])

    def render(self) -> str:
        """A text table: one row per layer, one column per method."""
        head = "layer " + " ".join(f"{m:>14}" for m in self.methods)
        lines = [head]
        best = {m: self.best_layer(m)[0] for m in self.methods}
        for li, layer in enumerate(self.layers):
            cells = []
            for mi, m in enumerate(self.methods):
                mark = "*" if best[m] == layer else " "
                cells.append(f"{self.accuracy[mi, li]:>13.3f}{mark}")
            lines.append(f"{layer:>5} " + " ".join(cells))
        lines.append("best (*): " + ", ".join(
            f"{m} {self.best_layer(m)[1]:.3f} @ layer {self.best_layer(m)[0]}"
            for m in self.methods))
        lines.append(f"bag-of-words {self.bag_of_words:.3f}; chance {self.chance:.3f}; "
                     f"{self.n_items} held-out variants")
        return "\n".join(lines)


def _readers(directions: np.ndarray, std: np.ndarray) -> np.ndarray:
    w = directions / std[None] ** 2
    return w / np.linalg.norm(w, axis=-1, keepdims=True)  # type: ignore[no-any-return]


def evaluate(
    data: ExtractionInput, corpus: Corpus, *, methods: Sequence[Method] = ("paired",),
    normalisation: Normalisation = "standardise",
) -> Evaluation:
    """Leave-one-scenario-out top-1 accuracy for each method at each layer.

    Args:
        data: activations of every corpus text (from `capture_corpus`).
        corpus: the corpus.
        methods: methods to compare; ``unpaired`` needs stories.
        normalisation: as in `extract`.

    Returns:
        An `Evaluation`.
    """
    from amygdala.vectors._extract import reference_stats

    _, std = reference_stats(data, corpus)
    if normalisation == "raw":
        std = np.ones_like(std)
    n_layers = len(data.layers)
    correct = np.zeros((len(methods), n_layers))
    hits: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in methods}
    n_items = 0
    chances: list[float] = []
    fixed: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for held in corpus.scenarios:
        rest = attrs.evolve(corpus, scenarios=[s for s in corpus.scenarios if s is not held])
        # Only concepts the other scenarios also carry can be fitted, and a choice
        # needs at least two of them.
        candidates = [c for c in held.concepts if c in rest.paired_concepts]
        if len(candidates) < 2:
            continue
        diffs = data.rows([held.variants[c].id for c in candidates]) - data.rows(
            [held.baseline.id])  # [k, L, d]
        n_items += len(candidates)
        chances.append(1.0)  # k items, each guessed right with chance 1/k
        for mi, method in enumerate(methods):
            if method == "unpaired":
                if method not in fixed:
                    raw = extract(data, corpus, method=method, normalisation=normalisation)
                    fixed[method] = (raw.concepts, raw.directions)
                names, directions = fixed[method]
            else:
                raw = extract(data, rest, method=method, normalisation=normalisation,
                              concepts=candidates)
                names, directions = raw.concepts, raw.directions
            present = [c for c in candidates if c in names]
            readers = _readers(directions[[names.index(c) for c in present]], std)  # [k, L, d]
            rows = [candidates.index(c) for c in present]
            scores = np.einsum("kld,jld->ljk", readers, diffs[rows])  # [L, items, concepts]
            guess = scores.argmax(axis=-1)
            ok = guess == np.arange(len(present))[None, :]
            correct[mi] += ok.sum(axis=1)
            for j, concept in enumerate(present):
                hits[method].setdefault(concept, []).append(ok[:, j])
    if n_items == 0:
        from amygdala.errors import CorpusError

        raise CorpusError(
            "no held-out scenario shares two concepts with the others; leave-one-scenario-out "
            "evaluation needs each concept in at least two scenarios"
        )
    accuracy = correct / n_items
    per_concept: dict[str, dict[str, float]] = {}
    for mi, method in enumerate(methods):
        best = int(np.argmax(accuracy[mi]))
        per_concept[method] = {c: round(float(np.mean([h[best] for h in v])), 4)
                               for c, v in sorted(hits[method].items())}
    bow = bag_of_words_loso(corpus)
    return Evaluation(methods=tuple(methods), layers=data.layers, accuracy=accuracy,
                      per_concept=per_concept, n_items=n_items,
                      chance=float(np.sum(chances) / n_items), bag_of_words=bow.accuracy)
