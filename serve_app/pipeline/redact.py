"""Redaction: sensitive spans of a finished transcript replaced by placeholders, in its words (each
keeping its times) and so in its text and in everything built from words (utterances, paragraphs,
captions, Pulse's utterances, callbacks, live results). A transform (pipeline/transforms.py), run
last, after any formatting, so that nothing added later can bring the clear text back.

How the two APIs render it, and what this module does:

- Deepgram (`redact=pci|ssn|numbers|true|pii`, repeatable, or entity names such as `credit_card`):
  its redaction docs say the redacted content is replaced by the entity type and the count of that
  type in the transcript: "my social security number is [SSN_1] and his is [SSN_2]"; with
  `redact=pci&redact=pii`, "my credit card number is [CREDIT_CARD_1] with an expiration date of
  [CREDIT_CARD_EXPIRATION_1] and the cvv code is [CVV_1] ... my phone number is [PHONE_NUMBER_1]".
  A whole entity becomes one placeholder however many words it was spoken in; here it is one word
  of the answer, from the first word's start to the last one's end (its confidence the lowest of
  theirs, its speaker the first one's), with the last word's trailing punctuation kept so that
  sentences, paragraphs and captions still end where they did. `word` and `punctuated_word` are the
  same placeholder.
- Smallest Pulse (`redact_pii=true`, `redact_pci=true`): its docs render `[ENTITYTYPE_N]` without
  underscores inside the type: names as `[FIRSTNAME_1]` `[LASTNAME_1]` (one per word), phone
  numbers `[PHONENUMBER_1]`, CVVs `[CREDITCARDCVV_1]`, ZIP codes `[ZIPCODE_1]`, and card and
  account numbers `[ACCOUNTNUMBER_1]` (the SDK's words for `redact_pci`); its answers list the
  placeholders in `redacted_entities` (api/pulse.py, api/pulse_live.py). Types Pulse does not name
  are written the same way from Deepgram's: `[SSN_1]`, `[EMAILADDRESS_1]`, `[IPADDRESS_1]`,
  `[CREDITCARDEXPIRATION_1]`.
Counting is per transcript: per file (per channel with `multichannel`), per live result.

What is detected, by patterns on the words (no model; nothing is loaded or paid unless asked):

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
- `email_address`: a written address, or a spoken one ("john dot smith at gmail dot com").
- `ip_address`: a dotted IPv4 address.
- `name`: only after "my name is" / "my name's" or a title (Mr, Mrs, Ms, Miss, Dr): the next one or
  two capitalised words (any words, but function words, when the transcript has no capitals).
  Names anywhere else, addresses, account numbers without a card's checksum, dates and numbers
  written as number words ("twenty three") are NOT detected: there is no named-entity model here.
- `numerical_pii` (`numbers` only): any other run of three or more digits, and any word with three
  digits in a row ("A12345").

Groups: Deepgram's `pci` = card, expiration, CVV; `ssn` = SSN; `numbers` (or `true`) = every
number kind above; `pii` = everything but `numerical_pii` (Deepgram's PII table lists cards, their
expiration and CVV too). Pulse's `redact_pci` = card, expiration, CVV, ZIP; `redact_pii` = names,
phone numbers, emails, SSNs, IP addresses. What cannot be honoured (`phi`, `aggressive_numbers`,
other entity names) is a 400, never ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .transcript import Transcript, Word

DEEPGRAM, PULSE = "deepgram", "pulse"

# The entity kinds this module detects, by Deepgram's entity names (its placeholders are these, upper-cased).
CARD, EXPIRY, CVV, SSN, PHONE = "credit_card", "credit_card_expiration", "cvv", "ssn", "phone_number"
EMAIL, IP, NAME, ZIP, NUMBER = "email_address", "ip_address", "name", "location_zip", "numerical_pii"
KINDS = (CARD, EXPIRY, CVV, SSN, PHONE, EMAIL, IP, NAME, ZIP, NUMBER)

_PCI = (CARD, EXPIRY, CVV)
_NUMBERS = (CARD, EXPIRY, CVV, SSN, PHONE, IP, ZIP, NUMBER)
DEEPGRAM_GROUPS: dict[str, tuple[str, ...]] = {
    "pci": _PCI,
    "ssn": (SSN,),
    "numbers": _NUMBERS,
    "true": _NUMBERS,
    "pii": tuple(k for k in KINDS if k != NUMBER),
    **{kind: (kind,) for kind in KINDS},  # Deepgram's entity names, for the kinds detected here
    "false": (),
}
PULSE_PCI = (CARD, EXPIRY, CVV, ZIP)
PULSE_PII = (NAME, PHONE, EMAIL, SSN, IP)
_PULSE_LABELS = {CARD: "ACCOUNTNUMBER", CVV: "CREDITCARDCVV", ZIP: "ZIPCODE", PHONE: "PHONENUMBER"}


def deepgram_kinds(values: Iterable[str]) -> tuple[str, ...]:
    """Deepgram's `redact` values -> the kinds to redact; KeyError for a value this server cannot honour."""
    kinds = {kind for value in values for kind in DEEPGRAM_GROUPS[value.strip().lower()]}
    return tuple(k for k in KINDS if k in kinds)


def pulse_kinds(pii: bool, pci: bool) -> tuple[str, ...]:
    kinds = set(PULSE_PII if pii else ()) | set(PULSE_PCI if pci else ())
    return tuple(k for k in KINDS if k in kinds)


@dataclass(frozen=True)
class Entity:
    start: int  # index of its first word
    end: int  # index past its last word
    kind: str


# --- reading the words ---------------------------------------------------------------------------

_DIGIT_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7"}
_DIGIT_WORDS |= {"eight": "8", "nine": "9"}
_WRITTEN = re.compile(r"\+?[\d\-().,/]*\d[\d\-().,/]*")  # digits with the separators Whisper writes between groups
_DIGITS = re.compile(r"\d+")
_THREE_DIGITS = re.compile(r"\d{3}")
_EMAIL = re.compile(r"[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}")
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_SENTENCE_END = re.compile(r"[.?!]$")
_TRAILING = re.compile(r"[.,;:?!]+$")
_ALNUM = re.compile(r"[a-z0-9]+")
_TLDS = {"com", "org", "net", "edu", "gov", "io", "co", "uk", "us", "de", "fr", "ca", "au", "in", "info", "biz", "me", "ai"}
_TITLES = {"mr", "mrs", "ms", "miss", "dr", "mister", "doctor"}
_NOT_NAMES = {"a", "an", "and", "but", "or", "the", "is", "i", "im", "i'm", "it", "its", "not", "so", "from"}
_NOT_NAMES |= {"to", "of", "in", "on", "at", "my", "your", "what", "just", "also", "really", "actually", "uh", "um"}
# Words that make the digits after them a CVV, an expiration date or a ZIP code (within 4 words before).
_CONTEXT = {
    CVV: re.compile(r"\b(cvv2?|cvc2?|csc|cv|(security|verification) code)\b"),
    EXPIRY: re.compile(r"\b(expiration|expiry|expires|expire|exp)\b"),
    ZIP: re.compile(r"\b(zip|postal|postcode)\b"),
}
_CONTEXT_DIGITS = {CVV: (3, 4), EXPIRY: (3, 6), ZIP: (5, 9)}


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
    if word in _DIGIT_WORDS:
        return _DIGIT_WORDS[word]

    def digit(k: int) -> bool:
        return 0 <= k < len(words) and (words[k].word in _DIGIT_WORDS or bool(_WRITTEN.fullmatch(words[k].word)))

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
        if _SENTENCE_END.search(w.punctuated_word):
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


# --- words that are not digits ------------------------------------------------------------------


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
    if _SENTENCE_END.search(words[i].punctuated_word):
        return False
    if word == "is":
        return i >= 2 and words[i - 1].word == "name" and words[i - 2].word == "my"
    return word == "name's" and i >= 1 and words[i - 1].word == "my"


def _names(words: list[Word], cased: bool) -> list[Entity]:
    """The one or two name words after each trigger (stopping after punctuation)."""
    found = []
    for i in range(len(words)):
        if not _name_trigger(words, i):
            continue
        end = i + 1
        while end < len(words) and end - i <= 2 and _name_word(words[end], cased):
            end += 1
            if _TRAILING.search(words[end - 1].punctuated_word):
                break
        if end > i + 1:
            found.append(Entity(i + 1, end, NAME))
    return found


def _name_word(w: Word, cased: bool) -> bool:
    if not re.fullmatch(r"[a-z][a-z'\-]*", w.word) or w.word in _NOT_NAMES or w.word in _DIGIT_WORDS:
        return False
    return w.punctuated_word.lstrip("\"'(")[:1].isupper() if cased else True


def find(words: list[Word]) -> list[Entity]:
    """Every entity of every kind, in word order, none overlapping (all kinds are looked for whatever
    the request asks, so that a card's digits are never taken for a shorter kind)."""
    found: list[Entity] = []
    for i, w in enumerate(words):
        if _EMAIL.fullmatch(w.word):
            found.append(Entity(i, i + 1, EMAIL))
        elif _ip(w.word):
            found.append(Entity(i, i + 1, IP))
        elif w.word == "at" and (spoken := _spoken_email(words, i)) is not None:
            found.append(spoken)
    taken = {k for e in found for k in range(e.start, e.end)}
    for run in _runs(words, taken):
        found.extend(_numbers(words, run))
    taken = {k for e in found for k in range(e.start, e.end)}
    for i, w in enumerate(words):  # "A12345": three digits in a word that is not a number
        if i not in taken and _THREE_DIGITS.search(w.word) and not _WRITTEN.fullmatch(w.word):
            found.append(Entity(i, i + 1, NUMBER))
    cased = any(w.punctuated_word[:1].isupper() for w in words)
    found.extend(_names(words, cased))
    kept: list[Entity] = []
    for entity in sorted(found, key=lambda e: (e.start, -e.end)):
        if not kept or entity.start >= kept[-1].end:
            kept.append(entity)
    return kept


# --- writing the placeholders --------------------------------------------------------------------


def _labels(kind: str, count: int, style: str) -> list[str]:
    """The placeholder type(s) of an entity of `count` words: Pulse names take one per word."""
    if style == PULSE:
        if kind == NAME:
            return ["FIRSTNAME"] + ["LASTNAME"] * (count - 1)
        return [_PULSE_LABELS.get(kind, kind.replace("_", "").upper())]
    return [kind.upper()]


PLACEHOLDER = re.compile(r"^\[[A-Z]+(?:_[A-Z]+)*_\d+\]$")  # [SSN_1], [CREDIT_CARD_2]


def is_placeholder(word: Word) -> bool:
    """A redacted entity's word: the stages after redaction leave it as it is (its digit is a count)."""
    return bool(PLACEHOLDER.match(word.word))


def _placeholder(words: list[Word], label: str, numbers: dict[str, int]) -> Word:
    numbers[label] = numbers.get(label, 0) + 1
    token = f"[{label}_{numbers[label]}]"
    trailing = _TRAILING.search(words[-1].punctuated_word)
    punctuated = token + (trailing.group() if trailing else "")
    return Word(token, punctuated, words[0].start, words[-1].end, min(w.confidence for w in words), words[0].speaker)


def redact_words(words: list[Word], kinds: Iterable[str], style: str = DEEPGRAM) -> list[Word]:
    wanted = set(kinds)
    out: list[Word] = []
    numbers: dict[str, int] = {}
    at = 0
    for entity in find(words):
        if entity.kind not in wanted:
            continue
        out.extend(words[at : entity.start])
        span = words[entity.start : entity.end]
        labels = _labels(entity.kind, len(span), style)
        if len(labels) == 1:
            out.append(_placeholder(span, labels[0], numbers))
        else:
            out.extend(_placeholder([w], label, numbers) for w, label in zip(span, labels))
        at = entity.end
    out.extend(words[at:])
    return out


def redact(t: Transcript, kinds: Iterable[str], style: str = DEEPGRAM) -> Transcript:
    """The transcript with the entities of `kinds` replaced; its text is rebuilt from the words
    whether or not anything was found, so text and words always say the same."""
    kinds = tuple(kinds)
    words = redact_words(t.words, kinds, style)
    channels = tuple(redact(c, kinds, style) for c in t.channels)
    return replace(t, text=" ".join(w.punctuated_word for w in words), words=words, channels=channels)


_PLACEHOLDER = re.compile(r"\[[A-Z]+(?:_[A-Z]+)*_\d+\]")


def placeholders(words: Iterable[Word]) -> list[str]:
    """The placeholders in these words, in order (Pulse's `redacted_entities`)."""
    return [w.word for w in words if _PLACEHOLDER.fullmatch(w.word)]
