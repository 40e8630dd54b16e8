"""The numbers in a transcript's words, parsed: what smart formatting and `numerals=true`
(pipeline/formatting.py) both start from, and the rules that write numbers alone as digits
(cardinals, decimals, ordinals, years, "minus five"). The entity rules built on these numbers
(currency, percentages, times, dates, phone numbers, addresses) are English only and live in
pipeline/entities.py; this module is what every language text2num reads needs.

Parsing number words is text2num's (a Rust library with a token API made for speech-to-text output:
it takes the timed words themselves and answers which run of them is which number, so a formatted
token carries exactly its words' times). Compared before choosing: nemo-text-processing covers more
classes with its WFST grammars, but needs pynini, pandas and transformers (about 450 MB, and the
ingress must not load transformers), compiles its grammars for 8 s per process (4.5 s from its
cache), takes about 2 ms a word (1.2 s for a 566-word transcript, against tens of microseconds
here), returns a string with no link back to the words and their times, and on callers' phrasing
wrote "he came 1st and she came 2nd", "03:30 p.m.", "25 %" and left "john.smith at gmail.com".
text2num (under 1 MB, no dependencies) leaves to pipeline/entities.py the entity rules on top of
its numbers, each a few lines over the parsed items below, and only for English; other languages
text2num reads (fr, es, pt, de, nl, da, it) get their numbers formatted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .transcript import Word

NUMBER_LANGUAGES = frozenset({"en", "fr", "es", "pt", "de", "nl", "da", "it"})  # the languages text2num reads
THRESHOLD = 3.0  # text2num's: a lone number below it ("one of the best") stays a word
_BREAK = (",", ".", ";", ":", "?", "!")  # marks Whisper put between phrases: nothing is joined across them

# Whisper's own written numbers: "25", "1,000", "2.5"; "3rd"; "3:30" / "3.30"; "3pm", "3:30p.m."
_NUMBER = re.compile(r"^(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?$")
_ORDINAL = re.compile(r"^(\d+)(st|nd|rd|th)$")
_CLOCK = re.compile(r"^(\d{1,2})[:.](\d{2})$")
_CLOCK_MERIDIEM = re.compile(r"^(\d{1,2})(?:[:.](\d{2}))?([ap])\.?m\.?$", re.IGNORECASE)

_SCALES = {"million": 10**6, "billion": 10**9, "trillion": 10**12}


@dataclass
class Item:
    """A run of source words [i, j): one word, or a number (spoken words or Whisper's digits)."""

    i: int
    j: int
    word: str  # the source word, normalised (for a number: its digits as written, "2.5", "21st")
    value: float | None = None
    ordinal: bool = False
    spoken: bool = False  # parsed from words by text2num, not written as digits by Whisper
    plain: bool = False  # a spoken number written as digits on its own (text2num's threshold)
    clock: tuple[int, int | None, str | None] | None = None  # Whisper's "3:30" / "3pm": hour, minute, "AM"/"PM"

    @property
    def integer(self) -> int | None:
        if self.value is None or self.ordinal or self.value != int(self.value) or "." in self.word:
            return None
        return int(self.value)

    @property
    def digits(self) -> str | None:
        """An integer's digits as said or written ("oh" is 0): what a phone number is made of."""
        return self.word.replace(",", "") if self.integer is not None else ("0" if self.word in ("oh", "o") else None)


@dataclass(frozen=True)
class Piece:
    text: str  # the written token, without the punctuation around it
    i: int
    j: int
    trail: str | None = None  # the punctuation after it, when not the last spoken word's ("March 3," before a year)


class _Token:
    """A word as text2num reads it (its `Token` protocol): the normalised word; a mark after the
    word before it or another speaker separates; Whisper's digits are not number words."""

    def __init__(self, words: list[Word], k: int) -> None:
        self.words, self.k = words, k

    def text(self) -> str:
        return self.words[self.k].word

    def nt_separated(self, previous: Any) -> bool:
        before = self.words[previous.k]
        return before.punctuated_word.endswith(_BREAK) or before.speaker != self.words[self.k].speaker

    def not_a_number_part(self) -> bool:
        # "2 million": a scale word after digits belongs to them, not a number of its own
        word = self.words[self.k].word
        return word[:1].isdigit() or (
            word in ("hundred", "thousand", *_SCALES) and self.k > 0 and self.words[self.k - 1].word[:1].isdigit()
        )


class Numbers:
    """The words as items (the numbers in them parsed), and the rules every language shares: each
    rule takes the item it starts at and answers the pieces to write and the item after them, or None."""

    def __init__(self, words: list[Word], language: str) -> None:
        self.words = words
        self.items = self._items(language)

    def _items(self, language: str) -> list[Item]:
        from text_to_num import find_numbers  # here: a request without formatting never loads it

        tokens = [_Token(self.words, k) for k in range(len(self.words))]
        # Threshold 0 finds every number ("one dollar", "the third of March"); the default
        # threshold says which are written as digits when no entity rule takes them.
        found = find_numbers(tokens, language, 0.0)
        plain = {(o.start, o.end) for o in find_numbers(tokens, language, THRESHOLD)}
        items: list[Item] = []
        k = 0
        for o in found:
            items.extend(self._word_item(m) for m in range(k, o.start))
            start = o.start
            first = self.words[start].word
            if first in ("hundred", "thousand", *_SCALES) and items and items[-1].word == "a" and items[-1].value is None:
                items.pop()  # "a hundred" is 100, not "a 100"
                start -= 1
            after_point = start > 0 and self.words[start - 1].word == "point"  # "point five" is not 5
            items.append(
                Item(start, o.end, o.text, float(o.value), o.is_ordinal, True, (o.start, o.end) in plain and not after_point)
            )
            k = o.end
        items.extend(self._word_item(m) for m in range(k, len(self.words)))
        _plain_groups(items, self.words)
        return items

    def _word_item(self, k: int) -> Item:
        word = self.words[k].word
        item = Item(k, k + 1, word)
        if not any(c.isdigit() for c in word):
            return item
        if m := _NUMBER.match(word):
            item.value = float(m.group(1).replace(",", "") + ("." + m.group(2) if m.group(2) else ""))
        elif m := _ORDINAL.match(word):
            item.value, item.ordinal = float(m.group(1)), True
        elif m := _CLOCK_MERIDIEM.match(word):
            item.clock = (int(m.group(1)), int(m.group(2)) if m.group(2) else None, m.group(3).upper() + "M")
        if m := _CLOCK.match(word):
            item.clock = (int(m.group(1)), int(m.group(2)), None)
        return item

    def _joined(self, a: int, b: int) -> bool:
        """Whether items a..b-1 were said as one phrase: no mark between them, one speaker."""
        words = self.words
        return all(
            not words[m].punctuated_word.endswith(_BREAK) and words[m].speaker == words[m + 1].speaker
            for m in range(self.items[a].i, self.items[b - 1].j - 1)
        )

    def _word_at(self, k: int) -> str | None:
        return self.items[k].word if k < len(self.items) and self.items[k].value is None else None

    def _number(self, k: int) -> tuple[list[Piece], int] | None:
        """A spoken number as digits; a round number of millions keeps its scale word ("5 million")."""
        item = self.items[k]
        if not item.spoken or not item.plain:
            return None
        if item.ordinal:
            return [Piece(item.word, item.i, item.j)], k + 1
        amount = self._amount(k)
        assert amount is not None  # a spoken number that is no ordinal
        number, scale, scale_at, n = amount
        if scale is None:
            return [Piece(number, item.i, item.j)], n
        return [Piece(number, item.i, scale_at), Piece(scale, scale_at, self.items[n - 1].j)], n

    def _signed(self, k: int) -> tuple[list[Piece], int] | None:
        """A negative number: "minus five" -> -5."""
        if self._word_at(k) not in ("minus", "negative") or k + 1 >= len(self.items) or not self._joined(k, k + 2):
            return None
        match = self._number(k + 1) if self.items[k + 1].value is not None else None
        if match is None or len(match[0]) != 1:
            return None
        piece = match[0][0]
        return [Piece("-" + piece.text, self.items[k].i, piece.j)], match[1]

    def _year(self, k: int) -> tuple[list[Piece], int] | None:
        """A year said in two halves: "nineteen ninety nine", "twenty twenty four", "twenty oh five"."""
        year = self._year_at(k)
        return None if year is None else ([Piece(str(year[0]), self.items[k].i, self.items[year[1] - 1].j)], year[1])

    def _year_at(self, k: int) -> tuple[int, int] | None:
        """A year at item k: (year, the item after it), said in halves or written ("2024")."""
        items = self.items
        head = items[k]
        if head.integer is not None and not head.spoken and 1000 <= head.integer <= 2999:
            return head.integer, k + 1
        if head.spoken and head.integer is not None and 1000 <= head.integer <= 2999 and head.j - head.i > 2:
            return head.integer, k + 1  # "two thousand and twenty four"
        if not head.spoken or head.integer is None or not 11 <= head.integer <= 20 or k + 1 >= len(items):
            return None
        tail = items[k + 1]
        if tail.spoken and tail.integer is not None and 10 <= tail.integer <= 99 and self._joined(k, k + 2):
            return head.integer * 100 + tail.integer, k + 2
        if tail.word in ("oh", "o") and k + 2 < len(items) and self._joined(k, k + 3):
            digit = items[k + 2].integer
            if items[k + 2].spoken and digit is not None and 1 <= digit <= 9:
                return head.integer * 100 + digit, k + 3
        return None

    def _amount(self, k: int) -> tuple[str, str | None, int, int] | None:
        """A number, with a scale word after it ("5 million", "one point five million"): (digits,
        scale word, the source word the scale word is, the item after)."""
        item = self.items[k]
        if item.value is None or item.ordinal:
            return None
        following = self.items[k + 1] if k + 1 < len(self.items) else None
        if following is not None and self.words[following.i].word in _SCALES and following.j - following.i == 1:
            if (not item.spoken and following.value is None) or (item.spoken and following.spoken and self._joined(k, k + 2)):
                return grouped(item), self.words[following.i].word, following.i, k + 2  # "2 million", "one point five million"
        last = self.words[item.j - 1].word
        if item.spoken and last in _SCALES and item.j - item.i > 1 and item.value % _SCALES[last] == 0:
            return f"{item.value / _SCALES[last]:g}", last, item.j - 1, k + 1
        return grouped(item), None, item.j, k + 1


def _plain_groups(items: list[Item], words: list[Word]) -> None:
    """Spoken numbers said one after another are written alike: all as digits when any is ("one
    thirty" is "1 30", not "one 30")."""
    k = 0
    while k < len(items):
        end = k + 1
        while (
            items[k].spoken
            and end < len(items)
            and items[end].spoken
            and not words[items[end - 1].j - 1].punctuated_word.endswith(_BREAK)
            and not items[end].ordinal
        ):
            end += 1
        if items[k].spoken and end - k > 1 and any(it.plain for it in items[k:end]):
            for it in items[k:end]:
                it.plain = True
        k = end
    for before, item in zip(items, items[1:]):
        if item.ordinal and item.spoken and (before.word in ("a", "an") or before.spoken):
            item.plain = False  # "a third", "two thirds": fractions, not ordinals


def grouped(item: Item) -> str:
    """A number as written: Whisper's as it wrote it, a spoken one with thousands separators from 10,000."""
    if not item.spoken or item.value is None or item.integer is None:
        return item.word
    return f"{item.integer:,}" if item.integer >= 10_000 else str(item.integer)
