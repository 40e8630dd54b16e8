"""Deepgram's `profanity_filter=true`: profane words masked with asterisks, as Deepgram's answer
shows them ("****"): every letter of the word becomes `*`, the punctuation around it stays
(`shit,` -> `****,`), its times and confidence stay. Both `word` and `punctuated_word` are masked,
and so is each profane part of a hyphenated word (`mother-fucker` -> `mother-******`).

The list is this module's own and short: unambiguous English swear words and slurs with their
inflections. A maintained PyPI list was weighed and not used: better-profanity 0.7.0's 944 entries
mask "god", "gay", "kill", "hell", "sex" and "weed", words an honest transcript must keep. Words
with an innocent sense ("ass", "dick", "cock", "pussy", "bastard") are not masked either. English
only: the option is refused for another language (api/text_params.py).
"""

from __future__ import annotations

import re
from dataclasses import replace

from .transcript import Transcript, Word, rewritten

_STEMS = {
    "fuck": ("", "s", "ed", "er", "ers", "in", "ing", "face", "head", "wit", "off"),
    "motherfuck": ("er", "ers", "ing", "in"),
    "shit": ("", "s", "ty", "tier", "ting", "head", "hole", "bag", "show", "storm"),
    "bullshit": ("", "ting", "ter"),
    "horseshit": ("",),
    "cunt": ("", "s"),
    "asshole": ("", "s"),
    "bitch": ("", "es", "ing", "y"),
    "dickhead": ("", "s"),
    "twat": ("", "s"),
    "wank": ("", "er", "ers", "ing"),
    "goddamn": ("", "it", "ed"),
    "nigger": ("", "s"),
    "nigga": ("", "s"),
    "faggot": ("", "s"),
}
WORDS: frozenset[str] = frozenset(stem + ending for stem, endings in _STEMS.items() for ending in endings)
_LETTER = re.compile(r"\w")


def profane(word: str) -> bool:
    """Whether a normalised word (`Word.word`) is on the list; "fuckin'" counts as "fuckin"."""
    return word.strip("'") in WORDS


def masked(text: str) -> str:
    """Every profane part (split at hyphens) of a word, letters turned to `*`, the rest kept."""
    parts = text.split("-")
    out = []
    for part in parts:
        core = re.sub(r"^[^\w']+|[^\w']+$", "", part).lower()
        out.append(_LETTER.sub("*", part) if core and profane(core) else part)
    return "-".join(out)


def apply(t: Transcript) -> Transcript:
    words: list[Word] = []
    for w in t.words:
        if not any(profane(part) for part in w.word.split("-")):  # the common case, without a regex
            words.append(w)
            continue
        hidden = masked(w.punctuated_word)
        words.append(w if hidden == w.punctuated_word else replace(w, word=masked(w.word), punctuated_word=hidden))
    return rewritten(t, words)
