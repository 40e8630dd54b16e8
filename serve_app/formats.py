"""Wire formats at the edge. One `/v1/listen` body serves every client at once:
Smallest Self-Host (`request_id, text, confidence, duration, language, words`), the `smallestai`
SDK (`status, transcription`) and Deepgram (`metadata` with all seven fields the SDK requires, and
`results.channels[].alternatives[]`). Words carry a `speaker` only when diarization was asked for
(an integer, as Deepgram's SDK wants); utterances and paragraphs then carry theirs too.

The other formats (OpenAI's json, text, srt, vtt, verbose_json) are siblings in `FORMATS`: every
route picks its formatter by `response_format`, and caption formats are built from the same
segments."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from .audio.source import Options
from .transcript import Transcript, Word, segments, sentences, split_at_pauses

_MODEL_NAMESPACE = uuid.UUID("6f1b3c2a-8d4e-4f5a-9b7c-2e1d0a9f8c7b")


@dataclass(frozen=True)
class RequestMeta:
    request_id: str
    sha256: str
    model: str
    created: datetime


def model_uuid(model: str) -> str:
    """A stable id per model name, as Deepgram's `models` list expects."""
    return str(uuid.uuid5(_MODEL_NAMESPACE, model))


def listen_body(t: Transcript, meta: RequestMeta, options: Options | None = None) -> dict[str, Any]:
    options = options or Options()
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
    if options.utterances:
        per_channel = t.channels or (t,)
        runs = sorted((u for i, c in enumerate(per_channel) for u in utterances(c.words, options.utt_split, i)), key=lambda u: u["start"])
        body["results"]["utterances"] = runs
        body["utterances"] = [{k: u[k] for k in ("text", "start", "end", "confidence")} for u in runs]  # Smallest's
    return body


def _channel(t: Transcript, options: Options, words: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One entry of Deepgram's `results.channels` (`words`: `t.words` already as dicts)."""
    words = words if words is not None else [word_dict(w) for w in t.words]
    alternative: dict[str, Any] = {"transcript": t.text, "confidence": t.confidence, "words": words}
    if options.paragraphs:
        alternative["paragraphs"] = paragraphs(t.words)
    channel: dict[str, Any] = {"alternatives": [alternative], "detected_language": t.language}
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
        out.append({
            "id": str(uuid.uuid4()), "channel": channel, "start": run[0].start, "end": run[-1].end, "confidence": confidence,
            "transcript": text, "text": text, "words": [word_dict(w) for w in run], **_speaker(run),
        })
    return out


PARAGRAPH_PAUSE_S = 1.0  # a silence this long between sentences starts a new paragraph
PARAGRAPH_SENTENCES = 5


def paragraphs(words: list[Word]) -> dict[str, Any]:
    """Deepgram's `paragraphs`: sentences, grouped at long pauses or every few sentences."""
    groups: list[list[list[Word]]] = []
    for sentence in sentences(words):
        last = groups[-1] if groups else None
        if (last is None or sentence[0].start - last[-1][-1].end >= PARAGRAPH_PAUSE_S or len(last) >= PARAGRAPH_SENTENCES
                or sentence[0].speaker != last[-1][-1].speaker):
            groups.append([sentence])
        else:
            last.append(sentence)
    items: list[dict[str, Any]] = [
        {
            "sentences": [{"text": " ".join(w.punctuated_word for w in s), "start": s[0].start, "end": s[-1].end} for s in group],
            "num_words": sum(len(s) for s in group), "start": group[0][0].start, "end": group[-1][-1].end,
            **_speaker(group[0]),
        }
        for group in groups
    ]
    text = "\n".join("\n" + " ".join(s["text"] for s in item["sentences"]) for item in items)
    return {"transcript": text, "paragraphs": items}


Formatter = Callable[[Transcript, RequestMeta, Options], Response]


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def srt(t: Transcript) -> str:
    """SubRip; when diarized, a `[speaker N]` line opens each change of speaker (as deepgram-captions does)."""
    blocks, current = [], None
    for i, s in enumerate(segments(t.words), 1):
        speaker = s.words[0].speaker
        label = f"[speaker {speaker}]\n" if speaker is not None and speaker != current else ""
        current = speaker
        blocks.append(f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{label}{s.text}\n")
    return "\n".join(blocks)


def vtt(t: Transcript) -> str:
    """WebVTT; when diarized, each cue is a voice span (`<v Speaker N>`, as deepgram-captions does)."""
    blocks = []
    for s in segments(t.words):
        label = "" if s.words[0].speaker is None else f"<v Speaker {s.words[0].speaker}>"
        blocks.append(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{label}{s.text}\n")
    return "\n".join(["WEBVTT\n", *blocks])


def verbose_json(t: Transcript, with_words: bool) -> dict[str, Any]:
    """OpenAI's `verbose_json`: segments always, words when `timestamp_granularities[]=word`."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": t.language,
        "duration": t.duration,
        "text": t.text,
        "segments": [
            {
                "id": i, "seek": 0, "start": s.start, "end": s.end, "text": " " + s.text, "tokens": [],
                "temperature": 0.0, "avg_logprob": _mean_logprob(s.words), "compression_ratio": 1.0, "no_speech_prob": 0.0,
            }
            for i, s in enumerate(segments(t.words))
        ],
    }
    if with_words:
        body["words"] = [{"word": w.punctuated_word, "start": w.start, "end": w.end} for w in t.words]
    return body


def _mean_logprob(words: list[Word]) -> float:
    return round(sum(math.log(max(w.confidence, 1e-9)) for w in words) / max(len(words), 1), 4)


def waves_body(t: Transcript, meta: RequestMeta, options: Options) -> dict[str, Any]:
    """Smallest's Pulse answer (`POST /waves/v1/stt/`), as its `smallestai` SDK parses it: speakers
    are strings (`speaker_0`), and `utterances` come with diarization."""
    label = lambda speaker: {} if speaker is None else {"speaker": f"speaker_{speaker}"}  # noqa: E731
    words = [{"word": w.punctuated_word, "start": w.start, "end": w.end, "confidence": w.confidence, **label(w.speaker)} for w in t.words]
    body: dict[str, Any] = {
        "status": "success", "transcription": t.text, "words": words, "language": t.language,
        "metadata": {"duration": t.duration, "model": meta.model}, "request_id": meta.request_id,
    }
    if options.diarize or options.utterances:
        body["utterances"] = [
            {"text": " ".join(w.punctuated_word for w in run), "start": run[0].start, "end": run[-1].end, **label(run[0].speaker)}
            for run in split_at_pauses(t.words, options.utt_split)
        ]
    return body


FORMATS: dict[str, Formatter] = {
    "listen": lambda t, meta, o: JSONResponse(listen_body(t, meta, o)),
    "waves": lambda t, meta, o: JSONResponse(waves_body(t, meta, o)),
    "json": lambda t, meta, o: JSONResponse({"text": t.text}),
    "text": lambda t, meta, o: PlainTextResponse(t.text + "\n"),
    "srt": lambda t, meta, o: PlainTextResponse(srt(t), media_type="application/x-subrip"),
    "vtt": lambda t, meta, o: PlainTextResponse(vtt(t), media_type="text/vtt"),
    "verbose_json": lambda t, meta, o: JSONResponse(verbose_json(t, "word" in o.timestamp_granularities)),
}
TIMED = {"srt", "vtt", "verbose_json"}  # formats whose times must be the model's
ROUTE_FORMATS = {"listen", "waves"}  # a route's own answer, never chosen by `response_format`
