"""The entities of redaction (pipeline/redact.py) that are made of digits, found in runs of
number words; the kinds that are words (emails, IP addresses, names) are pipeline/pii.py's. A
separate module because digits need their own reading (written groups, spelled-out digits, "oh")
and their own checks (Luhn, group shapes, the words announcing a CVV or a ZIP code):

- digits as Whisper writes them ("4111 1111 1111 1111", "123-45-6789", "(555) 123-4567") and as
  it sometimes spells them ("four one one one ..."; "oh" as zero between digits), joined across
  words into runs; a run ends at a sentence end. Runs are split only between written groups, never
  inside a spelled-out stretch.
- `credit_card`: 13-19 digits passing Luhn's check, as one group, in fours (4-4-4-4, ...),
  4-6-5 / 4-6-4, or spelled out. Digits that fail Luhn are not a card (`numbers` still takes them).
- `ssn`: 9 digits as 3-2-4, as one group or spelled out, none of its parts all zeros (666 and 9xx
  are kept: Deepgram's own example redacts a 666, and 9xx are taxpayer numbers, as private).
- `phone_number`: 10 digits as 3-3-4, one group or spelled out; 11 starting with 1; 7 as 3-4 or
  spelled out; 8-15 written after a "+".
- `cvv` (3-4 digits), `credit_card_expiration` (3-6 digits), `location_zip` (5 or 5-4 digits): only
  right after words that say so ("cvv", "security code"; "expiration", "expires"; "zip code").
- `numerical_pii` (`numbers` only): any other run of three or more digits, and any word with three
  digits in a row ("A12345").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .pii import CARD, CVV, DIGIT_WORDS, EXPIRY, NUMBER, PHONE, SENTENCE_END, SSN, ZIP, Entity
from .transcript import Word

_WRITTEN = re.compile(r"\+?[\d\-().,/]*\d[\d\-().,/]*")  # digits with the separators Whisper writes between groups
_DIGITS = re.compile(r"\d+")
_THREE_DIGITS = re.compile(r"\d{3}")
# Words that make the digits after them a CVV, an expiration date or a ZIP code (within 4 words before).
_CONTEXT = {
    CVV: re.compile(r"\b(cvv2?|cvc2?|csc|cv|(security|verification) code)\b"),
    EXPIRY: re.compile(r"\b(expiration|expiry|expires|expire|exp)\b"),
    ZIP: re.compile(r"\b(zip|postal|postcode)\b"),
}
_CONTEXT_DIGITS = {CVV: (3, 4), EXPIRY: (3, 6), ZIP: (5, 9)}


# --- reading the words ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """One written number word, or a stretch of spelled-out digits: runs split only between pieces."""

    first: int
    last: int  # inclusive
    digits: str
    groups: tuple[int, ...]  # lengths of the written groups; a spelled-out stretch counts as one
    plus: bool = False  # written with a leading "+"


def _digit_word(words: list[Word], i: int) -> str | None:
    """The digit a spelled-out word stands for: "oh" only between two digits, or after two ("nine oh
    two one oh": a ZIP code ends in it)."""
    word = words[i].word
    if word in DIGIT_WORDS:
        return DIGIT_WORDS[word]

    def digit(k: int) -> bool:
        return 0 <= k < len(words) and (words[k].word in DIGIT_WORDS or bool(_WRITTEN.fullmatch(words[k].word)))

    if word in ("oh", "o") and digit(i - 1) and (digit(i + 1) or digit(i - 2)):
        return "0"
    return None


def _runs(words: list[Word], taken: set[int]) -> list[list[_Piece]]:
    """Runs of consecutive number words, each a list of pieces; a run ends at a sentence end."""
    runs: list[list[_Piece]] = []
    current: list[_Piece] = []
    spelled: list[tuple[int, str]] = []

    def close_spelled() -> None:
        if spelled:
            current.append(_Piece(spelled[0][0], spelled[-1][0], "".join(d for _, d in spelled), (len(spelled),)))
            spelled.clear()

    def close_run() -> None:
        close_spelled()
        if current:
            runs.append(current[:])
            current.clear()

    for i, w in enumerate(words):
        digit = None if i in taken else _digit_word(words, i)
        if digit is not None:
            spelled.append((i, digit))
        elif i not in taken and _WRITTEN.fullmatch(w.word):
            close_spelled()
            groups = tuple(len(g) for g in _DIGITS.findall(w.word))
            plus = w.punctuated_word.lstrip("\"'(").startswith("+")  # `word` lost it with the punctuation
            current.append(_Piece(i, i, "".join(_DIGITS.findall(w.word)), groups, plus))
        else:
            close_run()
            continue
        if SENTENCE_END.search(w.punctuated_word):
            close_run()
    close_run()
    return runs


# --- what a run of digits is --------------------------------------------------------------------


def _luhn(digits: str) -> bool:
    total = 0
    for k, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if k % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _spelled_or_one(pieces: list[_Piece]) -> bool:
    """Digits with no written grouping to check: spelled out, or one written group."""
    return all(len(p.groups) == 1 and p.first != p.last for p in pieces) or (len(pieces) == 1 and len(pieces[0].groups) == 1)


def _groups(pieces: list[_Piece]) -> tuple[int, ...]:
    return tuple(g for p in pieces for g in p.groups)


def _card(pieces: list[_Piece], digits: str) -> bool:
    if not 13 <= len(digits) <= 19 or not _luhn(digits):
        return False
    groups = _groups(pieces)
    fours = all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4
    return _spelled_or_one(pieces) or fours or groups in ((4, 6, 5), (4, 6, 4))


def _ssn(pieces: list[_Piece], digits: str) -> bool:
    if len(digits) != 9 or digits[:3] == "000" or digits[3:5] == "00" or digits[5:] == "0000":
        return False
    return _spelled_or_one(pieces) or _groups(pieces) == (3, 2, 4)


def _phone(pieces: list[_Piece], digits: str) -> bool:
    if pieces[0].plus:
        return 8 <= len(digits) <= 15
    groups, loose = _groups(pieces), _spelled_or_one(pieces)
    if len(digits) == 10:
        return loose or groups == (3, 3, 4)
    if len(digits) == 11 and digits[0] == "1":
        return loose or groups == (1, 3, 3, 4)
    if len(digits) == 7:
        return groups == (3, 4) or all(p.first != p.last for p in pieces)  # spelled out, or 3-4
    return False


def _context(words: list[Word], first: int, length: int) -> str | None:
    """The kind the nearest of the words before `first` (at most 4) announces, if these digits can be one."""
    before = " ".join(w.word for w in words[max(0, first - 4) : first])
    best, at = None, -1
    for kind, pattern in _CONTEXT.items():
        lo, hi = _CONTEXT_DIGITS[kind]
        for match in pattern.finditer(before):
            if lo <= length <= hi and match.end() > at:
                best, at = kind, match.end()
    return best


def _number_kind(words: list[Word], pieces: list[_Piece]) -> str | None:
    digits = "".join(p.digits for p in pieces)
    announced = _context(words, pieces[0].first, len(digits))
    if announced is not None:
        return announced
    if _card(pieces, digits):
        return CARD
    if _phone(pieces, digits):
        return PHONE
    if _ssn(pieces, digits):
        return SSN
    return None


def _numbers(words: list[Word], run: list[_Piece]) -> list[Entity]:
    """A run's entities: from each piece, the longest stretch of pieces that is one, left to right;
    what is left, when it has three digits or more, is a plain number."""
    found: list[Entity] = []
    loose: list[_Piece] = []

    def flush() -> None:
        if loose and sum(len(p.digits) for p in loose) >= 3:
            found.append(Entity(loose[0].first, loose[-1].last + 1, NUMBER))
        loose.clear()

    s = 0
    while s < len(run):
        for e in range(len(run), s, -1):
            kind = _number_kind(words, run[s:e])
            if kind is not None:
                flush()
                found.append(Entity(run[s].first, run[e - 1].last + 1, kind))
                s = e
                break
        else:
            loose.append(run[s])
            s += 1
    flush()
    return found


def digit_entities(words: list[Word], taken: set[int]) -> list[Entity]:
    """The entities made of digits, in word order, among the words not `taken` (by an email or an IP address)."""
    found: list[Entity] = []
    for run in _runs(words, taken):
        found.extend(_numbers(words, run))
    taken = taken | {k for e in found for k in range(e.start, e.end)}
    for i, w in enumerate(words):  # "A12345": three digits in a word that is not a number
        if i not in taken and _THREE_DIGITS.search(w.word) and not _WRITTEN.fullmatch(w.word):
            found.append(Entity(i, i + 1, NUMBER))
    return found
