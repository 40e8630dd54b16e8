"""Smart formatting (`smart_format`, Pulse's `itn_normalize`) and `numerals=true`: spoken forms in a
finished transcript written the way people write them, every word keeping its time.

Whisper writes most numbers as digits already ("Go forward 10 meters", "In 1465"); what it does not
do consistently is what callers switch smart formatting on for. So this stage reads both spoken
words ("twenty five percent") and Whisper's own written forms ("25 percent", "3.30 p.m.") and
writes one form: numbers as digits, currency and percentages as symbols ("$5.50", "25%"), times and
dates one way ("3:30 PM", "March 3, 2024"), phone numbers grouped ("555-123-4567"), spoken emails
and web addresses joined ("john.smith@gmail.com", "www.example.com/pricing"). `numerals=true` alone
is the numbers part: cardinals, decimals, ordinals and years.

The stage is three modules, one per layer: pipeline/numerals.py parses the numbers (text2num, and
why that library) and holds the number rules every language shares; pipeline/entities.py holds the
English entity rules on top of them; this module is the driver, which tries the rules word by word
and writes the pieces they answer back into timed words.

A token written from several spoken words ("twenty five percent" -> "25%") takes the first word's
start, the last word's end, the lowest of their confidences (it is no surer than its least sure
word) and the first word's speaker; `punctuated_word` is the written token with the punctuation
around the spoken words ("percent." -> "25%."), `word` the same without it, lower case. Words that
are not rewritten are the same objects as before, and a transcript with nothing to rewrite comes
back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from .entities import MONTHS, Entities
from .numerals import NUMBER_LANGUAGES, Piece
from .transcript import Transcript, Word

_LEAD = re.compile(r"^[\"'(\[¿¡«“‘]+")
_TRAIL = re.compile(r"[.,;:?!\"')\]»”’…]+$")
_ADDRESS_WORDS = 8  # how far before its first "dot" a spoken address may start ("sarah underscore lee at yahoo dot")


def format_transcript(t: Transcript, entities: bool) -> Transcript:
    """`entities`: smart formatting (numbers and, in English, currency, percentages, times, dates,
    phone numbers, emails, web addresses); otherwise `numerals=true` (numbers only)."""
    language = t.language.split("-")[0]
    if language not in NUMBER_LANGUAGES or not t.words:
        return t
    words = format_words(t.words, language, entities and language == "en")
    if words is t.words:
        return t
    return Transcript(
        " ".join(w.punctuated_word for w in words), words, t.confidence, t.duration, t.language, t.language_confidence, t.channels
    )


def format_words(words: list[Word], language: str, entities: bool) -> list[Word]:
    """The words with spoken forms written; the same list when nothing was rewritten."""
    formatter = _Formatter(words, language, entities)
    out: list[Word] = []
    changed = False
    for piece_or_word in formatter.run():
        if isinstance(piece_or_word, Word):
            out.append(piece_or_word)
        else:
            new = _word(words, piece_or_word)
            changed = changed or piece_or_word.j - piece_or_word.i != 1 or new != words[piece_or_word.i]
            out.append(new)
    return out if changed else words


def _word(words: list[Word], piece: Piece) -> Word:
    first, last = words[piece.i], words[piece.j - 1]
    lead = _LEAD.match(first.punctuated_word)
    trail = _TRAIL.search(last.punctuated_word)
    after = piece.trail if piece.trail is not None else trail.group(0) if trail else ""
    if last.word in ("a.m", "p.m") and after.startswith(".") and piece.j < len(words):
        # "p.m." ends with its own dot: a sentence ends there only if the next word is capitalised
        after = after if words[piece.j].punctuated_word[:1].isupper() else after[1:]
    punctuated = (lead.group(0) if lead else "") + piece.text + after
    confidence = min(w.confidence for w in words[piece.i : piece.j])
    return Word(piece.text.lower(), punctuated, first.start, last.end, confidence, first.speaker)


class _Formatter(Entities):
    """The rules tried in turn at each item: the entity rules only when `entities`."""

    def __init__(self, words: list[Word], language: str, entities: bool) -> None:
        super().__init__(words, language)
        self.entities = entities

    def run(self) -> Iterator[Piece | Word]:
        items, k = self.items, 0
        numbers = (self._phone, self._money, self._percent, self._time) if self.entities else ()
        # Where an address could start: a spoken "dot" (or a dotted word) within a few words. The
        # rules are tried only where they could match, so most words cost one look-up.
        dots = [m for m, item in enumerate(items) if item.word == "dot" or ("." in item.word and item.value is None)]
        near_dot = [False] * len(items)
        for m in dots if self.entities else ():
            for n in range(max(0, m - _ADDRESS_WORDS), m):
                near_dot[n] = True
        while k < len(items):
            item = items[k]
            rules: tuple[Callable[[int], tuple[list[Piece], int] | None], ...] = ()
            if near_dot[k]:
                rules += (self._email, self._web)
            if item.value is not None or item.clock is not None or item.word in ("oh", "o"):
                rules += (*numbers, self._year, self._number)
            elif self.entities and item.word in MONTHS:
                rules += (self._date,)
            elif item.word in ("minus", "negative"):
                rules += (self._signed,)
            for rule in rules:
                match = rule(k)
                if match is not None:
                    pieces, k = match
                    yield from pieces
                    break
            else:
                yield from self.words[item.i : item.j]
                k += 1
