"""The entity rules of smart formatting (pipeline/formatting.py), English only: currency and
percentages as symbols ("$5.50", "25%"), times and dates one way ("3:30 PM", "March 3, 2024"), phone
numbers grouped ("555-123-4567"), spoken emails and web addresses joined ("john.smith@gmail.com",
"www.example.com/pricing"). They sit on top of the parsed numbers of pipeline/numerals.py (which
`numerals=true` uses alone, in every language text2num reads), so they are a separate module: each
rule reads the items from the one it starts at and answers the pieces to write and the item after.
"""

from __future__ import annotations

import re

from .numerals import Numbers, Piece, grouped

_SENTENCE_END = (".", "?", "!")
_CURRENCIES = {"dollar": "$", "dollars": "$", "bucks": "$", "pound": "£", "pounds": "£", "euro": "€", "euros": "€"}
MONTHS = "january february march april may june july august september october november december".split()
_TLDS = frozenset("com org net edu gov io co ai uk us de fr info biz dev app me tv ca au in ly".split())
_CONNECTORS = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
# A one-word "local part" that is an ordinary word means "at" is the preposition ("visit us at
# example dot com" is a web address, not "us@example.com").
_NOT_A_MAILBOX = frozenset(
    "us me you him her them it this that look here there is are was be go stay visit online website site find reach email".split()
)
_TIME_CUES = frozenset("at it's by until till around before after from".split())  # "at one thirty" is a time


class Entities(Numbers):
    """The entity rules, over the items of `Numbers`."""

    def _email(self, k: int) -> tuple[list[Piece], int] | None:
        """A spoken email: "john dot smith at gmail dot com" -> john.smith@gmail.com."""
        local, k2 = self._address_part(k)
        if not local or self._word_at(k2) != "at" or (k2 == k + 1 and local in _NOT_A_MAILBOX):
            return None
        domain, end = self._address_part(k2 + 1)
        if "." not in domain or domain.rsplit(".", 1)[1] not in _TLDS or not self._joined(k, end):
            return None
        return [Piece(f"{local}@{domain}", self.items[k].i, self.items[end - 1].j)], end

    def _web(self, k: int) -> tuple[list[Piece], int] | None:
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
        return [Piece(prefix + host, self.items[start].i, self.items[end - 1].j)], end

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

    def _phone(self, k: int) -> tuple[list[Piece], int] | None:
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
        return [Piece(text, items[k].i, items[end - 1].j)], end

    def _money(self, k: int) -> tuple[list[Piece], int] | None:
        """Currency as symbols: "five dollars and fifty cents" -> $5.50; "2 million dollars" -> $2 million; "fifty cents" -> 50¢."""
        amount = self._amount(k)
        if amount is None:
            return None
        number, scale, scale_at, n = amount
        unit = self._word_at(n)
        if unit in ("cent", "cents") and scale is None and self._joined(k, n + 1):
            return [Piece(f"{number}¢", self.items[k].i, self.items[n].j)], n + 1
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
            return [Piece(symbol + number, i, j)], end
        return [Piece(symbol + number, i, scale_at), Piece(scale, scale_at, j)], end

    def _percent(self, k: int) -> tuple[list[Piece], int] | None:
        item = self.items[k]
        if item.value is None or item.ordinal:
            return None
        if self._word_at(k + 1) == "percent" and self._joined(k, k + 2):
            end = k + 2
        elif self._word_at(k + 1) == "per" and self._word_at(k + 2) == "cent" and self._joined(k, k + 3):
            end = k + 3
        else:
            return None
        return [Piece(grouped(item) + "%", item.i, self.items[end - 1].j)], end

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

    def _time(self, k: int) -> tuple[list[Piece], int] | None:
        """Times in one form: "three thirty p m", "3.30 p.m.", "3pm" -> 3:30 PM, 3 PM; "at one
        thirty" -> at 1:30; "three o'clock" -> 3:00."""
        item, items = self.items[k], self.items
        if item.clock is not None:
            return self._written_time(k, *item.clock)
        hour = item.integer
        if hour is None or not 1 <= hour <= 12:
            return None
        if self._word_at(k + 1) == "o'clock" and self._joined(k, k + 2):
            return [Piece(f"{hour}:00", item.i, items[k + 1].j)], k + 2
        minutes = self._minutes(k + 1)
        n = minutes[1] if minutes else k + 1
        after = self._meridiem(n)
        if after is not None and self._joined(k, after[1]):
            clock = f"{hour}:{minutes[0]:02d}" if minutes else str(hour)
            return [Piece(clock, item.i, items[n - 1].j), Piece(after[0], items[n].i, items[after[1] - 1].j)], after[1]
        cue = k > 0 and self._word_at(k - 1) in _TIME_CUES
        if minutes and cue and item.spoken and self._joined(k, n):
            return [Piece(f"{hour}:{minutes[0]:02d}", item.i, items[n - 1].j)], n
        return None

    def _written_time(self, k: int, hour: int, minute: int | None, meridiem: str | None) -> tuple[list[Piece], int] | None:
        """Whisper's "3.30" before "p.m.", or "3pm": 3:30 PM, 3 PM."""
        item, n = self.items[k], k + 1
        if meridiem is None and (after := self._meridiem(n)) is not None and self._joined(k, after[1]):
            meridiem, n = after
        if meridiem is None or not 1 <= hour <= 12:
            return None
        clock = f"{hour}:{minute:02d}" if minute is not None else str(hour)
        if n == k + 1:  # written onto the time ("3pm"): AM/PM becomes a word of its own, at the same time
            return [Piece(clock, item.i, item.j, trail=""), Piece(meridiem, item.i, item.j)], n
        return [Piece(clock, item.i, item.j), Piece(meridiem, self.items[k + 1].i, self.items[n - 1].j)], n

    def _date(self, k: int) -> tuple[list[Piece], int] | None:
        """Dates in one form: "March third twenty twenty four", "March 3rd, 2024" -> March 3, 2024; "March 2024"."""
        word = self._word_at(k)
        source = self.words[self.items[k].i]
        if word not in MONTHS or (word == "may" and not source.punctuated_word.lstrip("\"'(").startswith("M")):
            return None
        month = word.capitalize()
        n = k + 1 + (self._word_at(k + 1) == "the")
        day = self.items[n] if n < len(self.items) else None
        pieces = [Piece(month, self.items[k].i, self.items[k].j)]
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
                pieces.append(Piece(str(int(day.value)), self.items[k + 1].i, day.j, trail=","))
                pieces.append(Piece(str(year[0]), self.items[n + 1].i, self.items[year[1] - 1].j))
                return pieces, year[1]
            pieces.append(Piece(str(int(day.value)), self.items[k + 1].i, day.j))
            return pieces, n + 1
        year = self._year_at(k + 1) if k + 1 < len(self.items) else None
        if year is not None and self._joined(k, year[1]):
            pieces.append(Piece(str(year[0]), self.items[k + 1].i, self.items[year[1] - 1].j))
            return pieces, year[1]
        return None
