"""Deepgram's `search` (repeatable): where in the transcript each query was said, as hits with a
confidence, start, end and snippet. Not a transform: the text is unchanged, the hits are extra
answer data the Deepgram writers add (`results.channels[].search[]`, api/listen.py and api/live.py).

Deepgram matches the query's sound against the audio. This server matches text: the query and
every run of 1 to n+1 words (n: the query's words) compared with RapidFuzz's normalised Indel
similarity, both lower case, without punctuation and without spaces, so "new york" finds
"newyork" and "epistemology" finds "episte mology". A hit is the best-matching run where the
similarity is at least MIN_SIMILARITY; runs overlapping a better hit are dropped.

- confidence: the similarity (1.0 for the same letters) times the mean confidence of the run's
  words, so a word the model was unsure of is a less sure hit;
- start, end: the run's first word's start and last word's end;
- snippet: the run's words as `Word.word` spells them, space-separated;
- hits are sorted by confidence, at most MAX_HITS per query (the query count is bounded where it is
  read, api/text_params.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz, process

from .replace import normalised
from .transcript import Word

MIN_SIMILARITY = 0.6
MAX_HITS = 20


@dataclass(frozen=True)
class Hit:
    confidence: float
    start: float
    end: float
    snippet: str


@dataclass(frozen=True)
class Found:
    query: str  # as sent
    hits: list[Hit]


def search(words: list[Word], queries: tuple[str, ...]) -> list[Found]:
    keys = [w.word for w in words]
    runs: dict[int, list[str]] = {}  # run length -> the spaceless text of every run of that many words
    found = []
    for query in queries:
        target = "".join(normalised(query))
        length = len(normalised(query))
        candidates: list[tuple[float, int, int]] = []  # (similarity, first word, word count)
        for n in range(max(1, length - 1), length + 2):
            if n > len(keys):
                break
            texts = runs.setdefault(n, ["".join(keys[i : i + n]) for i in range(len(keys) - n + 1)])
            for _, score, i in process.extract(target, texts, scorer=fuzz.ratio, score_cutoff=MIN_SIMILARITY * 100, limit=None):
                candidates.append((score / 100, i, n))
        found.append(Found(query, _hits(words, candidates)))
    return found


def _hits(words: list[Word], candidates: list[tuple[float, int, int]]) -> list[Hit]:
    """The best candidates that do not overlap a better one (the shorter run first on a tie), by confidence."""
    taken: set[int] = set()
    hits = []
    for similarity, i, n in sorted(candidates, key=lambda c: (-c[0], c[2], c[1])):
        span = range(i, i + n)
        if taken.intersection(span):
            continue
        taken.update(span)
        run = words[i : i + n]
        confidence = similarity * sum(w.confidence for w in run) / n
        hits.append(Hit(round(confidence, 4), run[0].start, run[-1].end, " ".join(w.word for w in run)))
    hits.sort(key=lambda h: (-h.confidence, h.start))
    return hits[:MAX_HITS]
