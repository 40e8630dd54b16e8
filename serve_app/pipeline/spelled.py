"""`numerals=false` (Smallest Pulse's spelled-out format): numbers written as words, the inverse of
`numerals=true`. Whisper writes most numbers as digits, so keeping words means writing them out:
"25" -> "twenty-five", "1465" -> "fourteen sixty-five", "$5" -> "five dollars", "25%" ->
"twenty-five percent", "3:30" -> "three thirty", "21st" -> "twenty-first".

The words come from num2words (pure Python, the converters of some 50 languages; English gets years,
money, percentages and times, other languages their cardinals, decimals and ordinals). A number
that becomes several words shares its written token's time by length, as untimed words are shared
out (pipeline/stitch.py); each keeps the token's confidence and speaker.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from functools import cache

from .redact import is_placeholder
from .transcript import Transcript, Word

_LEAD = re.compile(r"^[\"'(\[¿¡«“‘]+")
_TRAIL = re.compile(r"[.,;:?!\"')\]»”’…]+$")
_HAS_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")  # 1,000 / 2.5 / 25
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}
_SCALES = ("thousand", "million", "billion", "trillion")
_SENTENCE_END = (".", "?", "!")


@cache
def languages() -> frozenset[str]:
    """The languages num2words writes numbers in."""
    from num2words import CONVERTER_CLASSES  # here: a request without numerals=false never loads it

    return frozenset(code for code in CONVERTER_CLASSES if "_" not in code)


def spell_transcript(t: Transcript) -> Transcript:
    language = t.language.split("-")[0]
    if language not in languages() or not any(_HAS_DIGIT.search(w.punctuated_word) for w in t.words):
        return t
    words = spell_words(t.words, language)
    return replace(t, text=" ".join(w.punctuated_word for w in words), words=words)


def spell_words(words: list[Word], language: str) -> list[Word]:
    from num2words import num2words

    def say(number: float | int, to: str = "cardinal") -> str:
        return _plain(num2words(number, lang=language, to=to))

    out: list[Word] = []
    k = 0
    while k < len(words):
        word = words[k]
        if not _HAS_DIGIT.search(word.punctuated_word) or is_placeholder(word):
            out.append(word)
            k += 1
            continue
        span = 1
        lead = _LEAD.match(word.punctuated_word)
        trail = _TRAIL.search(word.punctuated_word)
        bare = word.punctuated_word[lead.end() if lead else 0 : trail.start() if trail else None]
        following = words[k + 1].word if k + 1 < len(words) else ""
        spoken = _english(bare, following, say) if language == "en" else None
        if spoken is not None and spoken[1]:  # "$2 million": the scale word is said before "dollars"
            span, trail = 2, _TRAIL.search(words[k + 1].punctuated_word)
        text = spoken[0] if spoken is not None else _NUMBER.sub(lambda m: _cardinal(m.group(0), say), bare)
        if not out or out[-1].punctuated_word.endswith(_SENTENCE_END):
            text = text[:1].upper() + text[1:]  # a sentence that began with digits begins with a capital
        last = words[k + span - 1]
        out.extend(
            _shared(text.split(), (lead.group(0) if lead else ""), (trail.group(0) if trail else ""), word.start, last.end, word)
        )
        k += span
    return out


def _english(bare: str, following: str, say: Callable[..., str]) -> tuple[str, bool] | None:
    """English forms num2words has no single call for: (the words, whether the next word, a scale, was taken)."""
    if m := re.fullmatch(r"([$£€])(\d[\d,]*(?:\.\d+)?)", bare):
        unit = _CURRENCY[m.group(1)]
        if following in _SCALES:
            return f"{_cardinal(m.group(2), say)} {following} {unit}", True
        whole, _, cents = m.group(2).replace(",", "").partition(".")
        words = f"{say(int(whole))} {unit if whole != '1' else unit[:-1]}"
        return (f"{words} and {say(int(cents))} cents" if cents and int(cents) else words), False
    if re.fullmatch(r"(1-)?\d{3}-\d{3}(-\d{4}|\d)", bare):  # a phone number is said digit by digit
        return " ".join(say(int(d)) for d in bare if d.isdigit()), False
    if m := re.fullmatch(r"(\d[\d,]*(?:\.\d+)?)%", bare):
        return f"{_cardinal(m.group(1), say)} percent", False
    if m := re.fullmatch(r"(\d{1,2}):(\d{2})", bare):
        hour, minute = int(m.group(1)), int(m.group(2))
        said = "o'clock" if minute == 0 else f"oh {say(minute)}" if minute < 10 else say(minute)
        return f"{say(hour)} {said}", False
    if m := re.fullmatch(r"(\d+)(st|nd|rd|th)", bare):
        return say(int(m.group(1)), "ordinal"), False
    if m := re.fullmatch(r"(1[1-9]\d\d|20\d\d)", bare):
        return say(int(m.group(1)), "year"), False
    if m := re.fullmatch(r"(1[1-9]\d0|20\d0|\d0)'?s", bare):  # "1990s", "80s": a decade
        decade = say(int(m.group(1)), "year" if len(m.group(1)) == 4 else "cardinal")
        return (decade[:-1] + "ies" if decade.endswith("y") else decade + "s"), False
    return None


def _cardinal(written: str, say: Callable[..., str]) -> str:
    number = written.replace(",", "")
    return say(float(number) if "." in number else int(number))


def _plain(words: str) -> str:
    """num2words' "one thousand, two hundred and thirty-four" as said: "one thousand two hundred thirty-four"."""
    return words.replace(",", "").replace(" and ", " ")


def _shared(texts: list[str], lead: str, trail: str, start: float, end: float, like: Word) -> list[Word]:
    """Words sharing one written token's time, by length; the token's punctuation around them."""
    total = sum(len(t) for t in texts)
    out, at = [], start
    for n, text in enumerate(texts):
        until = end if n == len(texts) - 1 else round(at + (end - start) * len(text) / total, 3)
        punctuated = (lead if n == 0 else "") + text + (trail if n == len(texts) - 1 else "")
        out.append(Word(text.lower(), punctuated, at, until, like.confidence, like.speaker))
        at = until
    return out
