"""Corpus-wide checks for cues a direction could learn instead of the state.

A paired direction is the mean of ``variant - baseline``. Anything that differs between
variants and baselines *in the same way for every concept* (length), or that marks one
concept's variants across scenarios (a stock word or turn of phrase), ends up in the
direction and lets a bag of words, not the model's sense of the state, do the work.
These checks look at the whole corpus at once:

- ``length-bias``: variants systematically longer (or shorter) than their baselines;
- ``cue-word``: a (simply lemmatised) word common in one concept's variants, rare in
  baselines and in other concepts' variants;
- ``cue-phrase``: a run of three or more words shared by several variants of one concept
  and by no baseline;
- ``event-drift``: a variant whose content words overlap its baseline much less than the
  scenario's other variants do, a pointer to a retelling that changed the event.

Thresholds are module constants, documented in ``docs/corpus.md``.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from amygdala.corpus._text import ScenarioDraft

__all__ = [
    "CUE_MAX_BASELINES",
    "CUE_MAX_OTHERS",
    "CUE_MIN_SHARE",
    "DRIFT_GAP",
    "LENGTH_BIAS_SHARE",
    "MEDIAN_RATIO_RANGE",
    "PHRASE_MIN_VARIANTS",
    "PHRASE_WORDS",
    "cue_findings",
    "lemma",
]

# A concept (or the corpus) whose variants are longer than their baselines more often
# than this is length-biased.
LENGTH_BIAS_SHARE = 0.6
# The corpus-wide median variant/baseline word ratio must stay in this range.
MEDIAN_RATIO_RANGE = (0.97, 1.03)
# cue-word: share of the concept's variants that use the word (at least), and shares
# of baselines and of other concepts' variants (at most).
CUE_MIN_SHARE = 0.25
CUE_MAX_BASELINES = 0.05
CUE_MAX_OTHERS = 0.10
# A cue needs at least this many variants behind it, whatever the shares say.
CUE_MIN_COUNT = 3
# cue-phrase: runs of this many words shared by at least this many variants of one
# concept, in no baseline, and in at most CUE_MAX_OTHERS of other concepts' variants.
PHRASE_WORDS = 3
PHRASE_MIN_VARIANTS = 3
# event-drift: a variant keeping this much less of its baseline's content words than
# the median of its scenario's other variants.
DRIFT_GAP = 0.2

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*")
# Function words: never cues on their own, and not content words for event-drift.
_STOPWORDS_TEXT = (
    "a about above after again against all am an and any are as at be because been before "
    "being below between both but by can could did do does doing down during each few for "
    "from further had has have having he her here hers herself him himself his how i if in "
    "into is it its itself just me more most my myself no nor not now of off on once only or "
    "other our ours ourselves out over own same she should so some such than that the their "
    "theirs them themselves then there these they this those through to too under until up "
    "very was we were what when where which while who whom why will with would you your yours "
    "yourself yourselves s t don't didn't isn't wasn't it's i'm i'd i'll i've he's she's "
    "that's there's they're we're you're can't won't couldn't wouldn't let's one two back "
    "still also "
)
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def lemma(word: str) -> str:
    """Reduce an English word to a crude stem so inflections count together.

    Args:
        word: a lower-case word.

    Returns:
        The stem: plural, past and progressive endings removed.

    >>> [lemma(w) for w in ("thanks", "thanked", "thanking", "stories", "stopped", "glass")]
    ['thank', 'thank', 'thank', 'story', 'stop', 'glass']
    """
    w = word.split("'")[0]
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            stem = w[: -len(suffix)]
            if len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]  # stopped -> stop, but fall -> fall
            return stem
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _words(text: str) -> list[str]:
    return [lemma(t) for t in _TOKEN.findall(text.lower().replace("\u2019", "'"))]


def _content(text: str) -> set[str]:
    return {w for w in _words(text) if w not in STOPWORDS and len(w) > 2}


def _grams(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    grams = (tuple(words[i : i + PHRASE_WORDS]) for i in range(len(words) - PHRASE_WORDS + 1))
    return {g for g in grams if any(w not in STOPWORDS for w in g)}


def _length_bias(scenarios: Sequence[ScenarioDraft]) -> list[tuple[str, str, str]]:
    longer: dict[str, list[bool]] = defaultdict(list)
    ratios: list[float] = []
    for draft in scenarios:
        if draft.baseline is None:
            continue
        n_base = len(draft.baseline.text.split())
        for concept, variant in draft.variants.items():
            n = len(variant.text.split())
            longer[concept].append(n > n_base)
            ratios.append(n / max(n_base, 1))
    out: list[tuple[str, str, str]] = []
    if not ratios:
        return out
    every = [flag for flags in longer.values() for flag in flags]
    share = sum(every) / len(every)
    if share > LENGTH_BIAS_SHARE:
        out.append(("paired", "length-bias",
                    f"{sum(every)} of {len(every)} variants ({share:.0%}) are longer than their "
                    f"baselines; expected at most {LENGTH_BIAS_SHARE:.0%} so length does not "
                    "mark 'emotional vs baseline'. Fix: trim some variants below their "
                    "baseline's length."))
    median = statistics.median(ratios)
    lo, hi = MEDIAN_RATIO_RANGE
    if not lo <= median <= hi:
        out.append(("paired", "length-bias",
                    f"median variant/baseline word ratio is {median:.3f}; expected {lo}-{hi}. "
                    "Fix: balance longer and shorter variants."))
    for concept, flags in sorted(longer.items()):
        share = sum(flags) / len(flags)
        if len(flags) >= CUE_MIN_COUNT and share > LENGTH_BIAS_SHARE:
            out.append(("paired", "length-bias",
                        f"{sum(flags)} of {len(flags)} {concept!r} variants ({share:.0%}) are "
                        f"longer than their baselines; expected at most "
                        f"{LENGTH_BIAS_SHARE:.0%}. Fix: trim some of them below their "
                        "baseline's length."))
    return out


def _shares(
    by_concept: dict[str, list[set[str]]] | dict[str, list[set[tuple[str, ...]]]],
) -> tuple[dict[str, Counter[object]], Counter[object], int]:
    """Per concept, how many of its variants hold each item; the totals; the variant count."""
    counts: dict[str, Counter[object]] = {
        c: Counter(x for item in items for x in item) for c, items in by_concept.items()}
    total: Counter[object] = Counter()
    for c in counts.values():
        total.update(c)
    return counts, total, sum(len(v) for v in by_concept.values())


def _cue_words(scenarios: Sequence[ScenarioDraft]) -> list[tuple[str, str, str]]:
    baselines = [_content(d.baseline.text) for d in scenarios if d.baseline is not None]
    base_counts: Counter[str] = Counter(w for b in baselines for w in b)
    by_concept: dict[str, list[set[str]]] = defaultdict(list)
    for draft in scenarios:
        for concept, variant in draft.variants.items():
            by_concept[concept].append(set(_words(variant.text)) - STOPWORDS)
    counts, total, n_all = _shares(by_concept)
    out: list[tuple[str, str, str]] = []
    for concept, items in sorted(by_concept.items()):
        n_c, n_other = len(items), n_all - len(items)
        for word, k in sorted(counts[concept].items(), key=lambda kv: (-kv[1], str(kv[0]))):
            if k < max(CUE_MIN_COUNT, CUE_MIN_SHARE * n_c):
                break
            other = total[word] - k
            base = base_counts[str(word)]
            if (base <= CUE_MAX_BASELINES * len(baselines)
                    and other <= CUE_MAX_OTHERS * max(n_other, 1)):
                out.append(("paired", "cue-word",
                            f"{word}: {concept} {k}/{n_c}, baselines {base}/{len(baselines)}, "
                            f"other concepts' variants {other}/{n_other}; a bag of words can "
                            f"use it to spot {concept!r}. Fix: vary how the state is shown "
                            "across scenarios, or add the word to lexicon.json."))
    return out


def _cue_phrases(scenarios: Sequence[ScenarioDraft]) -> list[tuple[str, str, str]]:
    in_baselines: set[tuple[str, ...]] = set()
    for draft in scenarios:
        if draft.baseline is not None:
            in_baselines |= _grams(draft.baseline.text)
    by_concept: dict[str, list[set[tuple[str, ...]]]] = defaultdict(list)
    for draft in scenarios:
        for concept, variant in draft.variants.items():
            by_concept[concept].append(_grams(variant.text) - in_baselines)
    counts, total, n_all = _shares(by_concept)
    out: list[tuple[str, str, str]] = []
    for concept, items in sorted(by_concept.items()):
        n_other = n_all - len(items)
        for gram, k in sorted(counts[concept].items(), key=lambda kv: (-kv[1], str(kv[0]))):
            if k < PHRASE_MIN_VARIANTS:
                break
            other = total[gram] - k
            if other <= CUE_MAX_OTHERS * max(n_other, 1) and other < k:
                phrase = " ".join(gram)  # type: ignore[arg-type]
                out.append(("paired", "cue-phrase",
                            f"'{phrase}': in {k}/{len(items)} {concept} variants, no baseline, "
                            f"{other}/{n_other} other concepts' variants; a stock turn marks "
                            "the concept. Fix: say it differently in each scenario."))
    return out


def _event_drift(scenarios: Sequence[ScenarioDraft]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for draft in scenarios:
        if draft.baseline is None or len(draft.variants) < 3:
            continue
        base = _content(draft.baseline.text)
        if not base:
            continue
        kept = {c: len(_content(v.text) & base) / len(base) for c, v in draft.variants.items()}
        for concept, share in sorted(kept.items()):
            others = statistics.median(s for c, s in kept.items() if c != concept)
            if share < others - DRIFT_GAP:
                out.append((draft.variants[concept].id, "event-drift",
                            f"keeps {share:.0%} of the baseline's content words against "
                            f"{others:.0%} for the scenario's other variants (median); expected "
                            "the same event, objects and outcome, recoloured. Fix: retell the "
                            "baseline's facts instead of adding or changing events."))
    return out


def cue_findings(scenarios: Iterable[ScenarioDraft]) -> list[tuple[str, str, str]]:
    """Run every corpus-wide cue check.

    Args:
        scenarios: the scenarios as read from disk.

    Returns:
        ``(path, code, message)`` for each warning, in check order.
    """
    drafts = list(scenarios)
    return [*_length_bias(drafts), *_cue_words(drafts), *_cue_phrases(drafts),
            *_event_drift(drafts)]

