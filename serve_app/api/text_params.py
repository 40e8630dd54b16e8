"""The options that rewrite or annotate a transcript's text, as every dialect spells them:
smart formatting and numerals, redaction, keyterms, filler words, Deepgram's text options (replace,
profanity_filter, dictation, measurements), search and the labels it echoes (tag, extra). Each is
checked against the pipeline stage it switches on (pipeline/formatting.py, spelled.py, redact.py,
prompt.py, replace.py, ...), so this module knows those stages' limits and languages; the generic
readers and the options about the audio and the answer's shape are api/params.py's. Files and live
streams read these alike (api/listen.py, api/live.py, api/pulse_live.py)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidRequest
from ..pipeline import redact, spelled
from ..pipeline.numerals import NUMBER_LANGUAGES
from ..pipeline.pii import KINDS
from ..pipeline.prompt import MAX_KEYTERM_CHARS, MAX_KEYTERMS, MAX_KEYTERMS_CHARS
from .params import Params, flag, language, listed, texts, translation, values


def formatting(params: Params) -> dict[str, Any]:
    """Deepgram's `smart_format` and Pulse's `itn_normalize` (one thing: spoken forms written,
    pipeline/formatting.py), and `numerals`: true writes numbers as digits, false as words
    (pipeline/spelled.py), `auto` or absent leaves them as Whisper wrote them. A language named in
    the request that the option cannot write numbers in is a 400; a detected one is left as is."""
    smart = bool(flag(params, "smart_format")) or bool(flag(params, "itn_normalize"))
    value = params.get("numerals")
    numerals = None if isinstance(value, str) and value.strip().lower() == "auto" else flag(params, "numerals")
    if smart and numerals is False:
        raise InvalidRequest("numerals=false (numbers as words) cannot be combined with smart_format", parameter="numerals")
    named = language(params)["language"] if params.get("language") is not None else None
    if named is not None and numerals is not None:
        supported = NUMBER_LANGUAGES if numerals else spelled.languages()
        if named not in supported:
            raise InvalidRequest("numerals is not supported for this language", parameter="numerals")
    return {"smart_format": smart, "numerals": numerals}


def redaction(params: Params) -> dict[str, Any]:
    """Deepgram's `redact` (repeatable: pci, ssn, numbers/true, pii, or an entity name such as
    credit_card) or Pulse's `redact_pii` / `redact_pci` flags; each dialect's names get its placeholders."""
    values = listed(params, "redact")
    pii, pci = flag(params, "redact_pii"), flag(params, "redact_pci")
    if values and (pii or pci):
        raise InvalidRequest("Send either redact or redact_pii/redact_pci, not both", parameter="redact")
    if pii or pci:
        return {"redact": redact.pulse_kinds(bool(pii), bool(pci)), "redact_style": redact.PULSE}
    try:
        kinds = redact.deepgram_kinds(values)
    except KeyError:
        allowed = ", ".join(g for g in redact.DEEPGRAM_GROUPS if g not in KINDS)
        raise InvalidRequest(
            f"redact must be {allowed} or one of the entities {', '.join(KINDS)} (phi is not supported)",
            parameter="redact",
        ) from None
    return {"redact": kinds, "redact_style": redact.DEEPGRAM}


def keyterms(params: Params) -> dict[str, Any]:
    """Deepgram's `keyterm` (repeatable, each value one term, spaces allowed) and `keywords`
    (`term:intensifier`, repeatable; Pulse sends them comma-joined, `word:weight`). Weights only
    have to be positive numbers: the decoder prompt that carries the terms cannot weight them."""
    terms = [term.strip() for term in texts(params, "keyterm")]
    for value in texts(params, "keywords"):
        for entry in value.split(","):
            term, _, weight = entry.partition(":")
            if weight and not _positive(weight):
                raise InvalidRequest(
                    "keywords weights must be positive numbers: terms cannot be suppressed", parameter="keywords"
                )
            terms.append(term.strip())
    terms = [t for t in dict.fromkeys(terms) if t]  # in order, once each
    limits = (MAX_KEYTERMS, MAX_KEYTERM_CHARS, MAX_KEYTERMS_CHARS)
    if len(terms) > MAX_KEYTERMS or any(len(t) > MAX_KEYTERM_CHARS for t in terms) or len(", ".join(terms)) > MAX_KEYTERMS_CHARS:
        name = "keyterm" if "keyterm" in params else "keywords"
        raise InvalidRequest("at most {} terms of {} characters, {} in all".format(*limits), parameter=name)
    return {"keyterms": tuple(terms)}


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def filler_words(params: Params) -> dict[str, Any]:
    return {"filler_words": bool(flag(params, "filler_words"))}


# Deepgram's text options (pipeline/replace.py, profanity.py, dictation.py, measurements.py,
# search.py) and the labels it echoes. Bounds: Deepgram's where it states one (50 search terms, 200
# replacements suggested, 128 characters a tag, 2048 a key:value pair), the rest generous.
MAX_REPLACE, MAX_SEARCH, MAX_TAGS, MAX_EXTRA = 200, 50, 20, 20
MAX_TERM_CHARS, MAX_TAG_CHARS, MAX_EXTRA_CHARS = 200, 128, 2048


def _pairs(params: Params, name: str, most: int, longest: int, shape: str) -> tuple[tuple[str, str], ...]:
    """`name=left:right` values, split at the first colon; the left side must not be empty."""
    pairs = []
    for value in values(params, name, most, longest):
        left, colon, right = value.partition(":")
        if not colon or not left.strip():
            raise InvalidRequest(f"{name} must be {shape}", parameter=name)
        pairs.append((left.strip(), right.strip()))
    return tuple(pairs)


def _english_only(params: Params, name: str) -> None:
    """The word lists of profanity_filter, dictation and measurements are English: another language
    (named, not detected) is refused rather than left untouched. A translation's text is English."""
    spoken = language(params)["language"]
    if spoken not in (None, "en") and not translation(params)["translate"]:
        raise InvalidRequest(f"{name} is for English only: this server has no word list for this language", parameter=name)


def text_options(params: Params) -> dict[str, Any]:
    """`replace`, `profanity_filter`, `dictation` (needs punctuation, as Deepgram's does) and
    `measurements`: transforms of the text, on files and live streams alike."""
    fields: dict[str, Any] = {
        "replace": _pairs(params, "replace", MAX_REPLACE, MAX_TERM_CHARS, "find:replacement, the find term not empty"),
        "profanity_filter": bool(flag(params, "profanity_filter")),
        "dictation": bool(flag(params, "dictation")),
        "measurements": bool(flag(params, "measurements")),
    }
    for name in ("profanity_filter", "dictation", "measurements"):
        if fields[name]:
            _english_only(params, name)
    if fields["dictation"] and flag(params, "punctuate") is False:
        raise InvalidRequest("dictation needs punctuate=true", parameter="dictation")
    return fields


def search(params: Params) -> dict[str, Any]:
    """Deepgram's `search` terms (hits in the answer, pipeline/search.py); each must have a word."""
    terms = values(params, "search", MAX_SEARCH, MAX_TERM_CHARS)
    if not all(re.search(r"\w", t) for t in terms):
        raise InvalidRequest("each search term must contain a word", parameter="search")
    return {"search": tuple(terms)}


def labels(params: Params) -> dict[str, Any]:
    """Deepgram's `tag` (labels for usage reporting) and `extra` (`key:value` pairs echoed back;
    a key sent twice keeps its last value, as Deepgram's does)."""
    extra = dict(_pairs(params, "extra", MAX_EXTRA, MAX_EXTRA_CHARS, "key:value, the key not empty"))
    return {"tags": tuple(values(params, "tag", MAX_TAGS, MAX_TAG_CHARS)), "extra": tuple(extra.items())}
