"""Smart formatting (`smart_format`, Pulse's `itn_normalize`) and `numerals=true`: spoken forms in a
finished transcript written the way people write them, every word keeping its time.

Whisper writes most numbers as digits already ("Go forward 10 meters", "In 1465"); what it does not
do consistently is what callers switch smart formatting on for. So this stage reads both spoken
words ("twenty five percent") and Whisper's own written forms ("25 percent", "3.30 p.m.") and
writes one form: numbers as digits, currency and percentages as symbols ("$5.50", "25%"), times and
dates one way ("3:30 PM", "March 3, 2024"), phone numbers grouped ("555-123-4567"), spoken emails
and web addresses joined ("john.smith@gmail.com", "www.example.com/pricing"). `numerals=true` alone
is the numbers part: cardinals, decimals, ordinals and years.

Parsing number words is text2num's (a Rust library with a token API made for speech-to-text output:
it takes the timed words themselves and answers which run of them is which number, so a formatted
token carries exactly its words' times). Compared before choosing: nemo-text-processing covers more
classes with its WFST grammars, but needs pynini, pandas and transformers (about 450 MB, and the
ingress must not load transformers), compiles its grammars for 8 s per process (4.5 s from its
cache), takes about 2 ms a word (1.2 s for a 566-word transcript, against tens of microseconds
here), returns a string with no link back to the words and their times, and on callers' phrasing
wrote "he came 1st and she came 2nd", "03:30 p.m.", "25 %" and left "john.smith at gmail.com".
text2num (under 1 MB, no dependencies) leaves to this module the entity rules on top of its
numbers, each a few lines over the parsed items below, and only for English; other languages
text2num reads (fr, es, pt, de, nl, da, it) get their numbers formatted.

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
from dataclasses import dataclass
from typing import Any

from .transcript import Transcript, Word

NUMBER_LANGUAGES = frozenset({"en", "fr", "es", "pt", "de", "nl", "da", "it"})  # the languages text2num reads
THRESHOLD = 3.0  # text2num's: a lone number below it ("one of the best") stays a word

_LEAD = re.compile(r"^[\"'(\[¿¡«“‘]+")
_TRAIL = re.compile(r"[.,;:?!\"')\]»”’…]+$")
_BREAK = (",", ".", ";", ":", "?", "!")  # marks Whisper put between phrases: nothing is joined across them
_SENTENCE_END = (".", "?", "!")

# Whisper's own written numbers: "25", "1,000", "2.5"; "3rd"; "3:30" / "3.30"; "3pm", "3:30p.m."
_NUMBER = re.compile(r"^(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?$")
_ORDINAL = re.compile(r"^(\d+)(st|nd|rd|th)$")
_CLOCK = re.compile(r"^(\d{1,2})[:.](\d{2})$")
_CLOCK_MERIDIEM = re.compile(r"^(\d{1,2})(?:[:.](\d{2}))?([ap])\.?m\.?$", re.IGNORECASE)

_SCALES = {"million": 10**6, "billion": 10**9, "trillion": 10**12}
_CURRENCIES = {"dollar": "$", "dollars": "$", "bucks": "$", "pound": "£", "pounds": "£", "euro": "€", "euros": "€"}
_MONTHS = "january february march april may june july august september october november december".split()
_TLDS = frozenset("com org net edu gov io co ai uk us de fr info biz dev app me tv ca au in ly".split())
_CONNECTORS = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
# A one-word "local part" that is an ordinary word means "at" is the preposition ("visit us at
# example dot com" is a web address, not "us@example.com").
_NOT_A_MAILBOX = frozenset(
    "us me you him her them it this that look here there is are was be go stay visit online website site find reach email".split()
)
_ADDRESS_WORDS = 8  # how far before its first "dot" a spoken address may start ("sarah underscore lee at yahoo dot")
_TIME_CUES = frozenset("at it's by until till around before after from".split())  # "at one thirty" is a time


@dataclass
class _Item:
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
class _Piece:
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


def _word(words: list[Word], piece: _Piece) -> Word:
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


class _Formatter:
    def __init__(self, words: list[Word], language: str, entities: bool) -> None:
        self.words, self.entities = words, entities
        self.items = self._items(language)

    # --- items: the words, with the numbers in them parsed ----------------------------------------

    def _items(self, language: str) -> list[_Item]:
        from text_to_num import find_numbers  # here: a request without formatting never loads it

        tokens = [_Token(self.words, k) for k in range(len(self.words))]
        # Threshold 0 finds every number ("one dollar", "the third of March"); the default
        # threshold says which are written as digits when no entity rule takes them.
        found = find_numbers(tokens, language, 0.0)
        plain = {(o.start, o.end) for o in find_numbers(tokens, language, THRESHOLD)}
        items: list[_Item] = []
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
                _Item(start, o.end, o.text, float(o.value), o.is_ordinal, True, (o.start, o.end) in plain and not after_point)
            )
            k = o.end
        items.extend(self._word_item(m) for m in range(k, len(self.words)))
        _plain_groups(items, self.words)
        return items

    def _word_item(self, k: int) -> _Item:
        word = self.words[k].word
        item = _Item(k, k + 1, word)
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

    # --- rewriting ------------------------------------------------------------------------------

    def run(self) -> Iterator[_Piece | Word]:
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
            rules: tuple[Callable[[int], tuple[list[_Piece], int] | None], ...] = ()
            if near_dot[k]:
                rules += (self._email, self._web)
            if item.value is not None or item.clock is not None or item.word in ("oh", "o"):
                rules += (*numbers, self._year, self._number)
            elif self.entities and item.word in _MONTHS:
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

    def _joined(self, a: int, b: int) -> bool:
        """Whether items a..b-1 were said as one phrase: no mark between them, one speaker."""
        words = self.words
        return all(
            not words[m].punctuated_word.endswith(_BREAK) and words[m].speaker == words[m + 1].speaker
            for m in range(self.items[a].i, self.items[b - 1].j - 1)
        )

    def _word_at(self, k: int) -> str | None:
        return self.items[k].word if k < len(self.items) and self.items[k].value is None else None

    def _number(self, k: int) -> tuple[list[_Piece], int] | None:
        """A spoken number as digits; a round number of millions keeps its scale word ("5 million")."""
        item = self.items[k]
        if not item.spoken or not item.plain:
            return None
        if item.ordinal:
            return [_Piece(item.word, item.i, item.j)], k + 1
        amount = self._amount(k)
        assert amount is not None  # a spoken number that is no ordinal
        number, scale, scale_at, n = amount
        if scale is None:
            return [_Piece(number, item.i, item.j)], n
        return [_Piece(number, item.i, scale_at), _Piece(scale, scale_at, self.items[n - 1].j)], n

    def _signed(self, k: int) -> tuple[list[_Piece], int] | None:
        """A negative number: "minus five" -> -5."""
        if self._word_at(k) not in ("minus", "negative") or k + 1 >= len(self.items) or not self._joined(k, k + 2):
            return None
        match = self._number(k + 1) if self.items[k + 1].value is not None else None
        if match is None or len(match[0]) != 1:
            return None
        piece = match[0][0]
        return [_Piece("-" + piece.text, self.items[k].i, piece.j)], match[1]

    def _year(self, k: int) -> tuple[list[_Piece], int] | None:
        """A year said in two halves: "nineteen ninety nine", "twenty twenty four", "twenty oh five"."""
        year = self._year_at(k)
        return None if year is None else ([_Piece(str(year[0]), self.items[k].i, self.items[year[1] - 1].j)], year[1])

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

    # --- entities (English) -----------------------------------------------------------------------

    def _email(self, k: int) -> tuple[list[_Piece], int] | None:
        """A spoken email: "john dot smith at gmail dot com" -> john.smith@gmail.com."""
        local, k2 = self._address_part(k)
        if not local or self._word_at(k2) != "at" or (k2 == k + 1 and local in _NOT_A_MAILBOX):
            return None
        domain, end = self._address_part(k2 + 1)
        if "." not in domain or domain.rsplit(".", 1)[1] not in _TLDS or not self._joined(k, end):
            return None
        return [_Piece(f"{local}@{domain}", self.items[k].i, self.items[end - 1].j)], end

    def _web(self, k: int) -> tuple[list[_Piece], int] | None:
        """A spoken web address: "w w w dot example dot com slash pricing" -> www.example.com/pricing."""
        start = k
        prefix = ""
        if [self._word_at(k + m) for m in range(3)] == ["w", "w", "w"]:
            prefix, k = "www", k + 3
            if self._word_at(k) != "dot":
                return None
            prefix, k = "www.", k + 1
        host, end = self._address_part(k)
        if host.count(".") < 1 + (0 if prefix else 0) or host.rsplit(".", 1)[1] not in _TLDS or end == k + 1 and not prefix:
            return None  # one word ("example.com" as Whisper wrote it) is left as written
        while self._word_at(end) == "slash" and self._word_at(end + 1):
            host += "/" + (self._word_at(end + 1) or "")
            end += 2
        if not self._joined(start, end):
            return None
        return [_Piece(prefix + host, self.items[start].i, self.items[end - 1].j)], end

    def _address_part(self, k: int) -> tuple[str, int]:
        """Words joined by spoken "dot", "underscore", "dash": ("john.smith", the item after)."""
        part = ""
        while True:
            word = self._word_at(k)
            if not word or word in _CONNECTORS or word in ("at", "slash") or not re.fullmatch(r"[a-z0-9][a-z0-9.\-_]*", word):
                return part, k
            part, k = part + word, k + 1
            connector = _CONNECTORS.get(self._word_at(k) or "")
            if connector is None or not self._word_at(k + 1) or self._word_at(k + 1) in _CONNECTORS:
                return part, k
            part, k = part + connector, k + 1

    def _phone(self, k: int) -> tuple[list[_Piece], int] | None:
        """Digits said one group at a time: 7, 10 or 11 (a leading 1) digits are a phone number
        (555-1234, 555-123-4567, 1-800-555-1234); four or more single digits said without a pause
        are one number (a zip code, a PIN)."""
        items, digits, end, singles = self.items, "", k, True
        while (
            end < len(items)
            and items[end].digits is not None
            and (end == k or self._joined(end - 1, end) or items[end - 1].digits)
        ):
            if items[end].word in ("oh", "o") and end == k:
                return None
            digits += items[end].digits or ""
            singles = singles and len(items[end].digits or "") == 1
            if self.words[items[end].j - 1].punctuated_word.endswith(_SENTENCE_END):
                end += 1
                break
            end += 1
        count = end - k
        if count < 3 or any(not items[m].spoken and items[m].integer is None and items[m].digits != "0" for m in range(k, end)):
            return None
        if len(digits) == 10:
            text = f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
        elif len(digits) == 11 and digits[0] == "1":
            text = f"1-{digits[1:4]}-{digits[4:7]}-{digits[7:]}"
        elif len(digits) == 7:
            text = f"{digits[:3]}-{digits[3:]}"
        elif (
            singles
            and (count >= 4 or "0" in digits and any(items[m].word in ("oh", "o") for m in range(k, end)))
            and self._joined(k, end)
        ):
            text = digits
        else:
            return None
        return [_Piece(text, items[k].i, items[end - 1].j)], end

    def _amount(self, k: int) -> tuple[str, str | None, int, int] | None:
        """A number, with a scale word after it ("5 million", "one point five million"): (digits,
        scale word, the source word the scale word is, the item after)."""
        item = self.items[k]
        if item.value is None or item.ordinal:
            return None
        following = self.items[k + 1] if k + 1 < len(self.items) else None
        if following is not None and self.words[following.i].word in _SCALES and following.j - following.i == 1:
            if (not item.spoken and following.value is None) or (item.spoken and following.spoken and self._joined(k, k + 2)):
                return _grouped(item), self.words[following.i].word, following.i, k + 2  # "2 million", "one point five million"
        last = self.words[item.j - 1].word
        if item.spoken and last in _SCALES and item.j - item.i > 1 and item.value % _SCALES[last] == 0:
            return f"{item.value / _SCALES[last]:g}", last, item.j - 1, k + 1
        return _grouped(item), None, item.j, k + 1

    def _money(self, k: int) -> tuple[list[_Piece], int] | None:
        """Currency as symbols: "five dollars and fifty cents" -> $5.50; "2 million dollars" -> $2 million; "fifty cents" -> 50¢."""
        amount = self._amount(k)
        if amount is None:
            return None
        number, scale, scale_at, n = amount
        unit = self._word_at(n)
        if unit in ("cent", "cents") and scale is None and self._joined(k, n + 1):
            return [_Piece(f"{number}¢", self.items[k].i, self.items[n].j)], n + 1
        if unit not in _CURRENCIES or not self._joined(k, n + 1):
            return None
        symbol, end = _CURRENCIES[unit], n + 1
        if scale is None and self._word_at(end) == "and" and end + 2 < len(self.items) + 1:
            cents = self.items[end + 1] if end + 1 < len(self.items) else None
            if cents and cents.integer is not None and cents.integer < 100 and self._word_at(end + 2) in ("cent", "cents"):
                if self._joined(k, end + 3):
                    number, end = f"{number}.{cents.integer:02d}", end + 3
        i, j = self.items[k].i, self.items[end - 1].j
        if scale is None:
            return [_Piece(symbol + number, i, j)], end
        return [_Piece(symbol + number, i, scale_at), _Piece(scale, scale_at, j)], end

    def _percent(self, k: int) -> tuple[list[_Piece], int] | None:
        item = self.items[k]
        if item.value is None or item.ordinal:
            return None
        if self._word_at(k + 1) == "percent" and self._joined(k, k + 2):
            end = k + 2
        elif self._word_at(k + 1) == "per" and self._word_at(k + 2) == "cent" and self._joined(k, k + 3):
            end = k + 3
        else:
            return None
        return [_Piece(_grouped(item) + "%", item.i, self.items[end - 1].j)], end

    def _meridiem(self, k: int) -> tuple[str, int] | None:
        """AM or PM after a time ("p m", "pm", "p.m."): ("PM", the item after)."""
        word = self._word_at(k)
        if word in ("am", "a.m", "pm", "p.m"):
            return word[0].upper() + "M", k + 1
        if word in ("a", "p") and self._word_at(k + 1) in ("m", "m."):
            return word.upper() + "M", k + 2
        return None

    def _minutes(self, k: int) -> tuple[int, int] | None:
        """Minutes after an hour: "thirty", "oh five", "30": (minutes, the item after)."""
        item = self.items[k] if k < len(self.items) else None
        if item is None:
            return None
        if item.word in ("oh", "o") and k + 1 < len(self.items):
            digit = self.items[k + 1].integer
            return (digit, k + 2) if digit is not None and digit <= 9 and self.items[k + 1].spoken else None
        if item.integer is not None and 10 <= item.integer <= 59 and (item.spoken or len(item.word) == 2):
            return item.integer, k + 1
        return None

    def _time(self, k: int) -> tuple[list[_Piece], int] | None:
        """Times in one form: "three thirty p m", "3.30 p.m.", "3pm" -> 3:30 PM, 3 PM; "at one
        thirty" -> at 1:30; "three o'clock" -> 3:00."""
        item, items = self.items[k], self.items
        if item.clock is not None:
            return self._written_time(k, *item.clock)
        hour = item.integer
        if hour is None or not 1 <= hour <= 12:
            return None
        if self._word_at(k + 1) == "o'clock" and self._joined(k, k + 2):
            return [_Piece(f"{hour}:00", item.i, items[k + 1].j)], k + 2
        minutes = self._minutes(k + 1)
        n = minutes[1] if minutes else k + 1
        after = self._meridiem(n)
        if after is not None and self._joined(k, after[1]):
            clock = f"{hour}:{minutes[0]:02d}" if minutes else str(hour)
            return [_Piece(clock, item.i, items[n - 1].j), _Piece(after[0], items[n].i, items[after[1] - 1].j)], after[1]
        cue = k > 0 and self._word_at(k - 1) in _TIME_CUES
        if minutes and cue and item.spoken and self._joined(k, n):
            return [_Piece(f"{hour}:{minutes[0]:02d}", item.i, items[n - 1].j)], n
        return None

    def _written_time(self, k: int, hour: int, minute: int | None, meridiem: str | None) -> tuple[list[_Piece], int] | None:
        """Whisper's "3.30" before "p.m.", or "3pm": 3:30 PM, 3 PM."""
        item, n = self.items[k], k + 1
        if meridiem is None and (after := self._meridiem(n)) is not None and self._joined(k, after[1]):
            meridiem, n = after
        if meridiem is None or not 1 <= hour <= 12:
            return None
        clock = f"{hour}:{minute:02d}" if minute is not None else str(hour)
        if n == k + 1:  # written onto the time ("3pm"): AM/PM becomes a word of its own, at the same time
            return [_Piece(clock, item.i, item.j, trail=""), _Piece(meridiem, item.i, item.j)], n
        return [_Piece(clock, item.i, item.j), _Piece(meridiem, self.items[k + 1].i, self.items[n - 1].j)], n

    def _date(self, k: int) -> tuple[list[_Piece], int] | None:
        """Dates in one form: "March third twenty twenty four", "March 3rd, 2024" -> March 3, 2024; "March 2024"."""
        word = self._word_at(k)
        source = self.words[self.items[k].i]
        if word not in _MONTHS or (word == "may" and not source.punctuated_word.lstrip("\"'(").startswith("M")):
            return None
        month = word.capitalize()
        n = k + 1 + (self._word_at(k + 1) == "the")
        day = self.items[n] if n < len(self.items) else None
        pieces = [_Piece(month, self.items[k].i, self.items[k].j)]
        said_year = self._year_at(n) if day is not None and not day.ordinal else None
        if said_year is not None and said_year[1] == n + 1:
            said_year = None  # one number after a month is its day ("March 3"), two halves a year ("May twenty twenty")
        if (
            day is not None
            and said_year is None
            and day.value is not None
            and day.value == int(day.value)
            and 1 <= day.value <= 31
            and self._joined(k, n + 1)
        ):
            year = self._year_at(n + 1) if n + 1 < len(self.items) else None
            if year is not None and not self.words[day.j - 1].punctuated_word.endswith(_SENTENCE_END):
                pieces.append(_Piece(str(int(day.value)), self.items[k + 1].i, day.j, trail=","))
                pieces.append(_Piece(str(year[0]), self.items[n + 1].i, self.items[year[1] - 1].j))
                return pieces, year[1]
            pieces.append(_Piece(str(int(day.value)), self.items[k + 1].i, day.j))
            return pieces, n + 1
        year = self._year_at(k + 1) if k + 1 < len(self.items) else None
        if year is not None and self._joined(k, year[1]):
            pieces.append(_Piece(str(year[0]), self.items[k + 1].i, self.items[year[1] - 1].j))
            return pieces, year[1]
        return None


def _plain_groups(items: list[_Item], words: list[Word]) -> None:
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


def _grouped(item: _Item) -> str:
    """A number as written: Whisper's as it wrote it, a spoken one with thousands separators from 10,000."""
    if not item.spoken or item.value is None or item.integer is None:
        return item.word
    return f"{item.integer:,}" if item.integer >= 10_000 else str(item.integer)
