"""Smallest Self-Host and Deepgram, `POST /v1/listen`: the option names both products' clients send
(and Smallest Pulse's, which its self-hosted clients share), and the one answer body that serves
every client at once: Smallest Self-Host (`request_id, text, confidence, duration, language,
words`), the `smallestai` SDK (`status, transcription`) and Deepgram (`metadata` with all seven
fields the SDK requires, and `results.channels[].alternatives[]`). Words carry a `speaker` only when
diarization was asked for (an integer, as Deepgram's SDK wants); utterances and paragraphs then
carry theirs too."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import timezone
from typing import Any

from ..pipeline.request import TranscriptionRequest
from ..pipeline.search import search
from ..pipeline.transcript import Transcript, Word, sentences, split_at_pauses
from . import params, text_params
from .meta import RequestMeta

# Every option a /v1/listen client may send. Pulse's flags that this server cannot honour are
# refused here too: Smallest's self-hosted clients send Pulse's names to this route.
OPTIONS: tuple[params.Option, ...] = (
    params.language,
    params.timestamps,
    params.punctuation,
    text_params.formatting,
    params.granularities,
    params.refused("emotion_detection", "gender_detection"),
    text_params.redaction,
    params.callback,
    params.speakers,
    params.response_format,
    params.utterances,
    params.paragraphs,
    params.multichannel,
    params.translation,
    text_params.keyterms,
    text_params.filler_words,
    text_params.text_options,
    text_params.search,
    text_params.labels,
)
DEFAULT_FORMAT = "listen"
_MODEL_NAMESPACE = uuid.UUID("6f1b3c2a-8d4e-4f5a-9b7c-2e1d0a9f8c7b")


def model_uuid(model: str) -> str:
    """A stable id per model name, as Deepgram's `models` list expects."""
    return str(uuid.uuid5(_MODEL_NAMESPACE, model))


def listen_body(t: Transcript, meta: RequestMeta, options: TranscriptionRequest | None = None) -> dict[str, Any]:
    options = options or TranscriptionRequest()
    words = [word_dict(w) for w in t.words]
    created = meta.created.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    mid = model_uuid(meta.model)
    channels = [_channel(c, options) for c in t.channels] if t.channels else [_channel(t, options, words)]
    body: dict[str, Any] = {
        "request_id": meta.request_id,
        "status": "success",
        "text": t.text,
        "transcription": t.text,
        "confidence": t.confidence,
        "duration": t.duration,
        "language": t.language,
        "words": words,
        "metadata": {
            "request_id": meta.request_id,
            "sha256": meta.sha256,
            "created": created,
            "duration": t.duration,
            "channels": len(channels),
            "models": [mid],
            "model_info": {mid: {"name": meta.model, "version": "1", "arch": "whisper"}},
        },
        "results": {"channels": channels},
    }
    if t.language_confidence is not None:
        body["language_confidence"] = t.language_confidence
    body["metadata"].update(echoed(options))
    if options.utterances:
        per_channel = t.channels or (t,)
        runs = sorted(
            (u for i, c in enumerate(per_channel) for u in utterances(c.words, options.utt_split, i)), key=lambda u: u["start"]
        )
        body["results"]["utterances"] = runs
        body["utterances"] = [{k: u[k] for k in ("text", "start", "end", "confidence")} for u in runs]  # Smallest's
    return body


def _channel(t: Transcript, options: TranscriptionRequest, words: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One entry of Deepgram's `results.channels` (`words`: `t.words` already as dicts)."""
    words = words if words is not None else [word_dict(w) for w in t.words]
    alternative: dict[str, Any] = {"transcript": t.text, "confidence": t.confidence, "words": words}
    if options.paragraphs:
        alternative["paragraphs"] = paragraphs(t.words)
    channel: dict[str, Any] = {"alternatives": [alternative], "detected_language": t.language}
    if options.search:
        channel["search"] = search_results(t.words, options.search)
    if t.language_confidence is not None:
        channel["language_confidence"] = t.language_confidence
    return channel


def word_dict(w: Word) -> dict[str, Any]:
    return {k: v for k, v in asdict(w).items() if v is not None or k != "speaker"}


def _speaker(words: list[Word]) -> dict[str, int]:
    """`{"speaker": n}` for a run of one speaker's words, `{}` when not diarized."""
    return {} if words[0].speaker is None else {"speaker": words[0].speaker}


def utterances(words: list[Word], split_s: float, channel: int = 0) -> list[dict[str, Any]]:
    out = []
    for run in split_at_pauses(words, split_s):
        text = " ".join(w.punctuated_word for w in run)
        confidence = round(sum(w.confidence for w in run) / len(run), 4)
        out.append(
            {
                "id": str(uuid.uuid4()),
                "channel": channel,
                "start": run[0].start,
                "end": run[-1].end,
                "confidence": confidence,
                "transcript": text,
                "text": text,
                "words": [word_dict(w) for w in run],
                **_speaker(run),
            }
        )
    return out


PARAGRAPH_PAUSE_S = 1.0  # a silence this long between sentences starts a new paragraph
PARAGRAPH_SENTENCES = 5


def paragraphs(words: list[Word]) -> dict[str, Any]:
    """Deepgram's `paragraphs`: sentences, grouped at long pauses or every few sentences."""
    groups: list[list[list[Word]]] = []
    for sentence in sentences(words):
        last = groups[-1] if groups else None
        if (
            last is None
            or sentence[0].start - last[-1][-1].end >= PARAGRAPH_PAUSE_S
            or len(last) >= PARAGRAPH_SENTENCES
            or sentence[0].speaker != last[-1][-1].speaker
        ):
            groups.append([sentence])
        else:
            last.append(sentence)
    items: list[dict[str, Any]] = [
        {
            "sentences": [{"text": " ".join(w.punctuated_word for w in s), "start": s[0].start, "end": s[-1].end} for s in group],
            "num_words": sum(len(s) for s in group),
            "start": group[0][0].start,
            "end": group[-1][-1].end,
            **_speaker(group[0]),
        }
        for group in groups
    ]
    text = "\n".join("\n" + " ".join(s["text"] for s in item["sentences"]) for item in items)
    return {"transcript": text, "paragraphs": items}


def search_results(words: list[Word], queries: tuple[str, ...]) -> list[dict[str, Any]]:
    """Deepgram's `search`: one entry per query, `{"query", "hits": [{confidence, start, end, snippet}]}`."""
    return [{"query": f.query, "hits": [asdict(h) for h in f.hits]} for f in search(words, queries)]


def echoed(options: TranscriptionRequest) -> dict[str, Any]:
    """What Deepgram's `metadata` echoes of the request: `extra` (an object) and `tags` (a list), when sent."""
    out: dict[str, Any] = {}
    if options.extra:
        out["extra"] = dict(options.extra)
    if options.tags:
        out["tags"] = list(options.tags)
    return out
