"""Deepgram's `dictation=true`: spoken punctuation commands become the marks they name ("a headache
comma nausea period" -> "a headache, nausea."). Deepgram needs `punctuate=true` for it; so does
this server (a 400 otherwise, api/text_params.py), and it is English only like Deepgram's.

What this server renders:
- the commands, matched on the normalised words (so Whisper's own punctuation on a command word,
  "comma,", does not hide it): `comma` `,`; `period`, `full stop` `.`; `question mark` `?`;
  `exclamation point`, `exclamation mark` `!`; `colon` `:`; `semicolon`, `semi colon` `;`;
  `new line` a line break; `new paragraph` an empty line;
- a mark joins the word before it, replacing the sentence punctuation Whisper had put there
  (`headache,` + "period" -> `headache.`); that word keeps its times, and the command's words leave
  the answer (their time stays unclaimed, as a pause would);
- after `.`, `?`, `!` and a line break the next word starts with a capital;
- a line break is in the transcript text only (words carry no whitespace): "\n" or "\n\n" where
  the space was;
- a command with no word before it in the transcript (the first words of a live utterance) is left
  as spoken: a mark cannot start a text.
Like Deepgram's, this takes a spoken "period" for the mark wherever it is said ("a period of time").
"""

from __future__ import annotations

from dataclasses import replace

from .transcript import Transcript, Word, around

COMMANDS: dict[tuple[str, ...], str] = {
    ("comma",): ",",
    ("period",): ".",
    ("full", "stop"): ".",
    ("question", "mark"): "?",
    ("exclamation", "point"): "!",
    ("exclamation", "mark"): "!",
    ("colon",): ":",
    ("semicolon",): ";",
    ("semi", "colon"): ";",
    ("new", "line"): "\n",
    ("new", "paragraph"): "\n\n",
}
_SENTENCE_END = ".?!\n"
_REPLACED = ".,;:!?"  # Whisper's own marks on the word before a command give way to the command's


def apply(t: Transcript) -> Transcript:
    keys = [w.word for w in t.words]
    words: list[Word] = []
    breaks: dict[int, str] = {}  # index in `words` -> the line break before it
    pending_break, capital = "", False
    i, changed = 0, False
    while i < len(t.words):
        command = next(
            (n for n in (2, 1) if i + n <= len(keys) and tuple(keys[i : i + n]) in COMMANDS),
            0,
        )
        if command and words:
            mark = COMMANDS[tuple(keys[i : i + command])]
            if mark.startswith("\n"):
                pending_break = mark
            else:
                lead, core, trail = around(words[-1].punctuated_word)
                kept = "".join(c for c in trail if c not in _REPLACED)
                words[-1] = replace(words[-1], punctuated_word=lead + core + kept + mark)
            capital = mark in _SENTENCE_END or mark.startswith("\n")
            i += command
            changed = True
            continue
        word = t.words[i]
        if capital:
            word = replace(word, punctuated_word=_capitalised(word.punctuated_word))
        if pending_break:
            breaks[len(words)] = pending_break
        words.append(word)
        pending_break, capital = "", False
        i += 1
    if not changed:
        return t
    text = "".join((breaks.get(k, " ") if k else "") + w.punctuated_word for k, w in enumerate(words))
    return replace(t, words=words, text=text)


def _capitalised(punctuated: str) -> str:
    lead, core, trail = around(punctuated)
    return lead + core[:1].upper() + core[1:] + trail
