"""A language guess and keywords for a piece of text, from stop words alone.

No model and no download: each of seven common languages has a list of its most frequent
function words; the language whose words the text uses most wins, with words that several
languages share counting for less. Keywords are the most frequent remaining words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOP_WORDS: dict[str, frozenset[str]] = {
    "en": _set(
        "the and of to a in is it that for on with as was are be this by not or have from "
        "at but an they which you we his her their has were will can would there been if "
        "its our your all more when also i he she them than then so no these those"
    ),
    "de": _set(
        "der die das und ist nicht ein eine zu den von mit sich des auf für im dem auch es "
        "an als werden wird aus er sie hat dass nach bei einer um noch wie über so zum war "
        "sind oder aber vor zur bis kann nur wir ich ihr sein haben wenn"
    ),
    "fr": _set(
        "le la les de des et est un une du en que qui dans pour pas sur au avec ce il elle "
        "ne se plus par sont mais ou nous vous aux cette été leur son sa ses être comme ont "
        "fait je on tout aussi"
    ),
    "es": _set(
        "el la los las de del y que en un una es por con para no se su al lo como más pero "
        "sus le ya o fue este ha muy también son entre cuando todo esta ser dos porque está "
        "hay yo nos"
    ),
    "it": _set(
        "il lo la gli le di del della che è e un una per non con in sono da si al alla dei "
        "delle nel nella come anche più ma questo questa ha ho essere stato ci loro sua suo "
        "io noi"
    ),
    "pt": _set(
        "o a os as de do da dos das e que em um uma é para com não no na por se mais como "
        "mas ao foi ele ela seu sua são também nos já está isso muito há pelo pela eu"
    ),
    "nl": _set(
        "de het een en van is dat op te in voor met niet zijn aan er ook als bij door maar "
        "om dan wordt nog naar uit worden deze wel kan geen werd hij zij wij heeft hebben "
        "over meer dit ik"
    ),
}
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
}
_ALL_STOP_WORDS = frozenset().union(*STOP_WORDS.values())
_SHARED_BY: dict[str, int] = Counter(word for words in STOP_WORDS.values() for word in words)
_NOISE = frozenset({"http", "https", "www", "com", "org", "html", "null", "true", "false"})
# Letters only, with inner apostrophes (straight or typographic): "don't", "it's".
_WORD = re.compile("[^\\W\\d_]+(?:['\u2019][^\\W\\d_]+)*")
# Fewer stop words than this is not enough to tell a language.
_MIN_EVIDENCE = 3.0


def words_of(text: str) -> list[str]:
    """The words of ``text``, lower-cased; numbers and punctuation dropped."""
    return [word.lower() for word in _WORD.findall(text)]


def guess_language(words: Sequence[str]) -> str | None:
    """An ISO 639-1 code (``en``, ``de``, ...) or None when the evidence is too thin."""
    scores = dict.fromkeys(STOP_WORDS, 0.0)
    for word in words:
        shared = _SHARED_BY.get(word)
        if shared is None:
            continue
        for code, stop_words in STOP_WORDS.items():
            if word in stop_words:
                scores[code] += 1.0 / shared
    best = max(scores, key=lambda code: scores[code])
    return best if scores[best] >= _MIN_EVIDENCE else None


def keywords(words: Sequence[str], count: int = 5) -> list[str]:
    """The ``count`` most frequent words that are not stop words; ties by first use."""
    counted = Counter(
        word
        for word in words
        # Contractions ("don't") are function words too.
        if len(word) >= 3
        and word not in _ALL_STOP_WORDS
        and word not in _NOISE
        and "'" not in word
        and "\u2019" not in word
    )
    return [word for word, _ in counted.most_common(count)]
