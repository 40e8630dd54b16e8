"""Every answer format, by name: a writer turns the transcript into bytes and a content type (so
the callback path and the HTTP route send the same thing). Each route answers in its dialect's
own format (`listen`, `waves`, OpenAI's `json`) unless `response_format` picks another; caption
formats are built from the same segments. A new format is a writer and one entry in FORMATS."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..pipeline.request import TranscriptionRequest
from ..pipeline.transcript import Transcript
from . import captions, listen, openai, pulse
from .meta import RequestMeta


@dataclass(frozen=True)
class Rendered:
    body: bytes
    content_type: str  # the whole header value


Writer = Callable[[Transcript, RequestMeta, TranscriptionRequest], Rendered]


def as_json(body: Any) -> Rendered:
    # Starlette's JSONResponse encoding, so answers are byte-for-byte what they were as responses.
    return Rendered(
        json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode(), "application/json"
    )


def as_text(text: str, content_type: str = "text/plain; charset=utf-8") -> Rendered:
    return Rendered(text.encode(), content_type)


FORMATS: dict[str, Writer] = {
    "listen": lambda t, meta, r: as_json(listen.listen_body(t, meta, r)),
    "waves": lambda t, meta, r: as_json(pulse.waves_body(t, meta, r)),
    "json": lambda t, meta, r: as_json(openai.json_body(t)),
    "text": lambda t, meta, r: as_text(t.text + "\n"),
    "srt": lambda t, meta, r: as_text(captions.srt(t), "application/x-subrip"),
    "vtt": lambda t, meta, r: as_text(captions.vtt(t), "text/vtt; charset=utf-8"),
    "verbose_json": lambda t, meta, r: as_json(openai.verbose_json(t, "word" in r.timestamp_granularities, r.translate)),
}
TIMED = {"srt", "vtt", "verbose_json"}  # formats whose times must be the model's
ROUTE_FORMATS = {"listen", "waves"}  # a route's own answer, never chosen by `response_format`
