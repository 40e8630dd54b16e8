"""Deepgram's find and replace, `replace=find:replacement` (repeatable): each run of words whose
normalised form (lower case, no surrounding punctuation, as `Word.word`) spells `find` becomes the
replacement, written exactly as sent (its case kept). Deepgram asks for a lower-case find term;
this server lower-cases it, so `Monika:Monica` works too.

What this server renders:
- one left-to-right pass over the words, the longest find term winning where several start at the
  same word, so `replace=a:b&replace=b:c` never chains and `new york` beats `new`;
- the punctuation around the replaced run is kept (`monika,` -> `Monica,`);
- times: n words replaced by as many take one word's times each; otherwise the replacement's words
  share the run's span (first start to last end) in proportion to their length, so one word
  replacing two spans both, and two replacing one split it; confidence is the run's lowest, speaker
  its first word's;
- an empty replacement (`replace=um:`) removes the run.
"""

from __future__ import annotations

from dataclasses import replace

from .transcript import Transcript, Word, around, rewritten


def normalised(text: str) -> tuple[str, ...]:
    """A phrase as the words `Word.word` holds: lower case, each without surrounding punctuation."""
    return tuple(core.lower() for core in (around(part)[1] for part in text.split()) if core)


def apply(t: Transcript, pairs: tuple[tuple[str, str], ...]) -> Transcript:
    rules: dict[tuple[str, ...], str] = {}
    for find, replacement in pairs:
        key = normalised(find)
        if key:
            rules[key] = replacement  # a find sent twice: the last replacement wins, as Deepgram's `extra` does
    if not rules:
        return t
    lengths = sorted({len(k) for k in rules}, reverse=True)
    keys = [w.word for w in t.words]
    words: list[Word] = []
    i = 0
    while i < len(t.words):
        for n in lengths:
            found = rules.get(tuple(keys[i : i + n])) if i + n <= len(keys) else None
            if found is not None:
                words += _replaced(t.words[i : i + n], found)
                i += n
                break
        else:
            words.append(t.words[i])
            i += 1
    return rewritten(t, words)


def _replaced(run: list[Word], replacement: str) -> list[Word]:
    parts = replacement.split()
    if not parts:
        return []
    lead, trail = around(run[0].punctuated_word)[0], around(run[-1].punctuated_word)[2]
    texts = [lead + parts[0] if i == 0 else p for i, p in enumerate(parts)]
    texts[-1] += trail
    confidence = min(w.confidence for w in run)
    if len(parts) == len(run):
        spans = [(w.start, w.end) for w in run]
    else:
        spans = share(run[0].start, run[-1].end, [len(p) for p in parts])
    return [
        replace(run[0], word=" ".join(normalised(p)) or p.lower(), punctuated_word=text, start=s, end=e, confidence=confidence)
        for p, text, (s, e) in zip(parts, texts, spans)
    ]


def share(start: float, end: float, lengths: list[int]) -> list[tuple[float, float]]:
    """[start, end] cut into consecutive spans in proportion to `lengths` (times to the millisecond)."""
    total = max(sum(lengths), 1)
    edges, at = [start], 0
    for length in lengths:
        at += length
        edges.append(round(start + (end - start) * at / total, 3))
    edges[-1] = end
    return list(zip(edges[:-1], edges[1:]))
