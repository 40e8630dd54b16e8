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

What is detected, by patterns on the words (no model; nothing is loaded or paid unless asked): the
kinds below (`KINDS`), the ones made of digits by pipeline/pii_digits.py (cards by Luhn's check,
SSNs and phone numbers by their groups, CVVs, expiration dates and ZIP codes by the words before
them, any other number), emails, IP addresses and names by pipeline/pii.py. This module asks for
all of them at once (`find`) and writes the placeholders: what a request asks for and how it is
rendered stay here, how each kind is recognised lives with the detectors.

Groups: Deepgram's `pci` = card, expiration, CVV; `ssn` = SSN; `numbers` (or `true`) = every
number kind above; `pii` = everything but `numerical_pii` (Deepgram's PII table lists cards, their
expiration and CVV too). Pulse's `redact_pci` = card, expiration, CVV, ZIP; `redact_pii` = names,
phone numbers, emails, SSNs, IP addresses. What cannot be honoured (`phi`, `aggressive_numbers`,
other entity names) is a 400, never ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from .pii import CARD, CVV, EMAIL, EXPIRY, IP, KINDS, NAME, NUMBER, PHONE, SSN, TRAILING, ZIP, Entity, addresses, names
from .pii_digits import digit_entities
from .transcript import Transcript, Word

DEEPGRAM, PULSE = "deepgram", "pulse"

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


def find(words: list[Word]) -> list[Entity]:
    """Every entity of every kind, in word order, none overlapping (all kinds are looked for whatever
    the request asks, so that a card's digits are never taken for a shorter kind)."""
    found = addresses(words)
    found.extend(digit_entities(words, {k for e in found for k in range(e.start, e.end)}))
    cased = any(w.punctuated_word[:1].isupper() for w in words)
    found.extend(names(words, cased))
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
    trailing = TRAILING.search(words[-1].punctuated_word)
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
