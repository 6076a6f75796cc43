"""Words a corpus text must not use: each concept's name family, and emotion labels.

A variant that names its own concept ("she was afraid") teaches a model the word, not
the state, so the linter bans each concept's name family in that concept's texts.
``BANNED_WORDS`` holds the built-in families (inflections included); multiword entries
are phrases matched as a whole. ``EMOTION_WORDS`` is a general list of emotion
adjectives and nouns used to detect explicit labels ("felt happy") and emotional
colouring in baselines and neutral texts. Users extend the families with a JSON file
``{concept: [words...]}`` (`load_lexicon`); a corpus root's ``lexicon.json`` is picked
up automatically by the linter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from amygdala.errors import CorpusError

__all__ = ["BANNED_WORDS", "EMOTION_WORDS", "Lexicon", "load_lexicon", "merge_lexicons"]

Lexicon = Mapping[str, frozenset[str]]

_FAMILIES: dict[str, str] = {
    "angry": "anger angers angry angrier angriest angrily angered rage rages raged raging "
    "enrage enraged furious furiously fury mad irate wrath",
    "sad": "sad sadder saddest sadly sadness saddened sorrow sorrows sorrowful unhappy",
    "joyful": "joy joys joyful joyfully joyous happy happier happiest happily happiness "
    "glad gladly gladness delight delighted delightful",
    "afraid": "afraid fear fears feared fearing fearful fearfully scared scare scares "
    "scaring frightened fright frighten frightening terrified terrify terrifying terror",
    "disgusted": "disgust disgusts disgusted disgusting revolted revolting revulsion gross "
    "grossed",
    "surprised": "surprise surprises surprised surprising surprisingly astonished "
    "astonishing astonishment shocked shocking",
    "calm": "calm calms calmer calmest calmly calmness calmed calming serene serenity "
    "tranquil peaceful peacefully",
    "anxious": "anxious anxiously anxiety anxieties worried worry worries worrying nervous "
    "nervously nervousness",
    "tender": "tender tenderly tenderness",
    "ashamed": "ashamed shame shames shamed shameful shaming embarrassed embarrassing "
    "embarrassment humiliated humiliating humiliation",
    "proud": "proud prouder proudest proudly pride",
    "relieved": "relieved relief relieve relieves relieving",
    "bored": "bored boredom boring",
    "curious": "curious curiously curiosity curiosities",
    "nostalgic": "nostalgic nostalgically nostalgia",
    "hopeful": "hope hopes hoped hoping hopeful hopefully hopefulness hopeless",
    "frustrated": "frustrated frustrating frustration frustrate frustrates",
    "lonely": "lonely lonelier loneliest loneliness lonesome",
    "awed": "awe awed awesome awestruck",
    "grateful": "grateful gratefully gratefulness gratitude thankful thankfully thank thanks "
    "thanked thanking",
    "onto_something": "",
    "stuck": "stuck",
    "in_flow": "flow flows flowed flowing",
    "determined": "determined determinedly determination determine determines determining",
}
_PHRASES: dict[str, tuple[str, ...]] = {
    "onto_something": ("onto something",),
    "in_flow": ("in the zone",),
}

BANNED_WORDS: Lexicon = MappingProxyType(
    {
        concept: frozenset(words.split()) | frozenset(_PHRASES.get(concept, ()))
        for concept, words in _FAMILIES.items()
    }
)
"""Each canonical concept's name family: banned in that concept's own texts."""

_GENERAL = """
happy unhappy upset excited excitement nervous scared worried embarrassed jealous jealousy
envious envy guilty guilt remorse regretful miserable cheerful merry jolly elated elation
ecstatic euphoric overjoyed blissful bliss thrilled pleased satisfied fulfilled
heartbroken devastated depressed despondent dejected gloomy glum melancholy mournful grief
grieving anguish anguished despair desperate helpless panic panicked panicky dread
dreading horror horrified alarmed apprehensive uneasy tense stressed overwhelmed agitated
jittery jumpy edgy distressed distraught frantic hysterical petrified spooked timid shy
bashful sheepish mortified irritated irritation annoyed annoyance exasperated livid
outraged indignant resentful resentment hostile hatred hate loathing contempt disdain
repulsed nauseated sickened amazed amazement stunned startled bewildered baffled puzzled
confused perplexed dumbfounded flabbergasted wonderstruck interested fascinated intrigued
eager enthusiastic impatient weary listless apathetic indifferent homesick wistful
sentimental longing yearning optimistic pessimistic confident triumphant smug
appreciative compassion compassionate sympathy sympathetic pity affectionate fond
fondness adoring forlorn desolate heartsick insecure relaxed moody
"""

EMOTION_WORDS: frozenset[str] = frozenset(_GENERAL.split()) | frozenset(
    word for family in BANNED_WORDS.values() for word in family if " " not in word
) - frozenset({"stuck", "flow", "flows", "flowed", "flowing", "determine", "determines",
               "determining", "tender"})
"""General emotion adjectives and nouns, for label detection and neutral-text checks.

Cognitive-state words (``stuck``, ``flow``...) and ``tender`` (also "legal tender",
"tender meat") are left out: they are banned only in their own concept's texts.
"""


def merge_lexicons(*lexicons: Mapping[str, Iterable[str]]) -> Lexicon:
    """Union several lexicons concept by concept (words are lowercased and stripped).

    Args:
        lexicons: mappings of concept to words or phrases.

    Returns:
        A read-only mapping of concept to the union of its words.

    >>> merged = merge_lexicons(BANNED_WORDS, {"stuck": ["Jammed"]})
    >>> sorted(merged["stuck"])
    ['jammed', 'stuck']
    """
    merged: dict[str, set[str]] = {}
    for lexicon in lexicons:
        for concept, words in lexicon.items():
            bucket = merged.setdefault(concept, set())
            bucket.update(" ".join(word.lower().split()) for word in words if word.strip())
    return MappingProxyType({concept: frozenset(words) for concept, words in merged.items()})


def load_lexicon(path: str | Path) -> Lexicon:
    """Read a user lexicon ``{concept: [words...]}`` and extend the built-in one with it.

    Args:
        path: a JSON file mapping concept names to lists of banned words or phrases.

    Returns:
        `BANNED_WORDS` extended by the file's words (the file can add, never remove).

    Raises:
        CorpusError: the file is missing, not JSON, or not an object of string lists.

    >>> import json, pathlib, tempfile
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "lexicon.json"
    >>> _ = file.write_text(json.dumps({"stuck": ["wedged"], "wistful": ["wistful"]}))
    >>> lexicon = load_lexicon(file)
    >>> "wedged" in lexicon["stuck"], sorted(lexicon["wistful"])
    (True, ['wistful'])
    """
    file = Path(path)
    expected = 'expected a JSON object like {"stuck": ["wedged", "jammed"]}'
    try:
        raw = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(
            f"lexicon file {file} does not exist; {expected}. Fix: check the path given "
            "to --lexicon."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"cannot read lexicon file {file}: {exc}; {expected}.") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"lexicon file {file} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); {expected}."
        ) from None
    if not isinstance(data, dict):
        raise CorpusError(f"lexicon file {file} holds a {type(data).__name__}; {expected}.")
    for concept, words in data.items():
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise CorpusError(
                f"lexicon file {file}: entry {concept!r} is {words!r}, not a list of "
                f"strings; {expected}."
            )
    return merge_lexicons(BANNED_WORDS, data)
