"""The entities redaction (pipeline/redact.py) looks for: their kinds, and the ones that are words
rather than digits. Everything made of digits (cards, SSNs, phone numbers, CVVs, expiration dates,
ZIP codes, other numbers) is pipeline/pii_digits.py's, which reads runs of words as numbers;
the detectors here each look at a word or two around a cue ("@", "at", "my name is"), and
`redact.find` merges both. By patterns on the words, no model:

- `email_address`: a written address, or a spoken one ("john dot smith at gmail dot com").
- `ip_address`: a dotted IPv4 address.
- `name`: only after "my name is" / "my name's" or a title (Mr, Mrs, Ms, Miss, Dr): the next one or
  two capitalised words (any words, but function words, when the transcript has no capitals).
  Names anywhere else, addresses, account numbers without a card's checksum, dates and numbers
  written as number words ("twenty three") are NOT detected: there is no named-entity model here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .transcript import Word

# The entity kinds redaction detects, by Deepgram's entity names (its placeholders are these, upper-cased).
CARD, EXPIRY, CVV, SSN, PHONE = "credit_card", "credit_card_expiration", "cvv", "ssn", "phone_number"
EMAIL, IP, NAME, ZIP, NUMBER = "email_address", "ip_address", "name", "location_zip", "numerical_pii"
KINDS = (CARD, EXPIRY, CVV, SSN, PHONE, EMAIL, IP, NAME, ZIP, NUMBER)


@dataclass(frozen=True)
class Entity:
    start: int  # index of its first word
    end: int  # index past its last word
    kind: str


DIGIT_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7"}
DIGIT_WORDS |= {"eight": "8", "nine": "9"}
_EMAIL = re.compile(r"[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}")
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
SENTENCE_END = re.compile(r"[.?!]$")
TRAILING = re.compile(r"[.,;:?!]+$")
_ALNUM = re.compile(r"[a-z0-9]+")
_TLDS = {"com", "org", "net", "edu", "gov", "io", "co", "uk", "us", "de", "fr", "ca", "au", "in", "info", "biz", "me", "ai"}
_TITLES = {"mr", "mrs", "ms", "miss", "dr", "mister", "doctor"}
_NOT_NAMES = {"a", "an", "and", "but", "or", "the", "is", "i", "im", "i'm", "it", "its", "not", "so", "from"}
_NOT_NAMES |= {"to", "of", "in", "on", "at", "my", "your", "what", "just", "also", "really", "actually", "uh", "um"}


def addresses(words: list[Word]) -> list[Entity]:
    """Written emails and IP addresses, and spoken emails, in word order."""
    found: list[Entity] = []
    for i, w in enumerate(words):
        if _EMAIL.fullmatch(w.word):
            found.append(Entity(i, i + 1, EMAIL))
        elif _ip(w.word):
            found.append(Entity(i, i + 1, IP))
        elif w.word == "at" and (spoken := _spoken_email(words, i)) is not None:
            found.append(spoken)
    return found


def _ip(word: str) -> bool:
    match = _IPV4.fullmatch(word)
    return match is not None and all(int(octet) <= 255 for octet in match.groups())


def _spoken_email(words: list[Word], at: int) -> Entity | None:
    """ "john dot smith at gmail dot com" or "john at gmail.com", around the "at" at index `at`."""
    start, end = at - 1, at + 1
    if start < 0 or end >= len(words) or not _ALNUM.fullmatch(words[start].word):
        return None
    while start >= 2 and words[start - 1].word == "dot" and _ALNUM.fullmatch(words[start - 2].word):
        start -= 2
    domain = words[end].word
    if "." in domain:  # written: "gmail.com"
        found = _EMAIL.fullmatch("x@" + domain) is not None and domain.rsplit(".", 1)[-1] in _TLDS
        return Entity(start, end + 1, EMAIL) if found else None
    if not _ALNUM.fullmatch(domain):
        return None
    while end + 2 < len(words) and words[end + 1].word == "dot" and _ALNUM.fullmatch(words[end + 2].word):
        end += 2
    return Entity(start, end + 1, EMAIL) if end > at + 1 and words[end].word in _TLDS else None


def _name_trigger(words: list[Word], i: int) -> bool:
    """ "my name is", "my name's" or a title just before word i + 1."""
    word = words[i].word
    if word in _TITLES:
        return True
    if SENTENCE_END.search(words[i].punctuated_word):
        return False
    if word == "is":
        return i >= 2 and words[i - 1].word == "name" and words[i - 2].word == "my"
    return word == "name's" and i >= 1 and words[i - 1].word == "my"


def names(words: list[Word], cased: bool) -> list[Entity]:
    """The one or two name words after each trigger (stopping after punctuation)."""
    found = []
    for i in range(len(words)):
        if not _name_trigger(words, i):
            continue
        end = i + 1
        while end < len(words) and end - i <= 2 and _name_word(words[end], cased):
            end += 1
            if TRAILING.search(words[end - 1].punctuated_word):
                break
        if end > i + 1:
            found.append(Entity(i + 1, end, NAME))
    return found


def _name_word(w: Word, cased: bool) -> bool:
    if not re.fullmatch(r"[a-z][a-z'\-]*", w.word) or w.word in _NOT_NAMES or w.word in DIGIT_WORDS:
        return False
    return w.punctuated_word.lstrip("\"'(")[:1].isupper() if cased else True
