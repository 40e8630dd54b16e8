"""Handshake options every live dialect reads (api/live.py, api/pulse_live.py): audio format,
pauses in milliseconds, the stream's language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest
from ..stream.audio_in import CODEC_RATES, ENCODINGS, RAW, REFUSED
from .params import language as params_language
from .params import refused, whole

MIN_ENDPOINT_S = 0.1  # shorter pauses are inside words at the VAD's 32 ms frames
MAX_CHANNELS = 8
SAMPLE_RATES = (8000, 192000)


def milliseconds(params: Mapping[str, Any], name: str, default_s: float | None, lo_ms: int) -> float | None:
    """A pause in ms, or `false` for none; at least `lo_ms` (smaller values are raised to it)."""
    value = params.get(name)
    if value is None:
        return default_s
    if str(value).strip().lower() == "false":
        return None
    if str(value).strip().lower() == "true":
        return default_s
    ms = whole(params, name, None, 0, 60_000)
    assert ms is not None
    return max(ms, lo_ms) / 1000


def encoding(params: Mapping[str, Any], default: str | None) -> str | None:
    encoding = params.get("encoding", default)
    if isinstance(encoding, str) and encoding in REFUSED:  # one of Deepgram's names: said back as ours
        raise InvalidRequest(f"{encoding} is not supported: {REFUSED[encoding]}", parameter="encoding")
    if encoding is not None and (not isinstance(encoding, str) or encoding not in ENCODINGS):
        raise InvalidRequest(f"encoding must be one of {', '.join(ENCODINGS)} (or omitted for webm/ogg)", parameter="encoding")
    return encoding


def audio_format(params: Mapping[str, Any], default: str | None) -> tuple[str | None, int]:
    """`encoding` and `sample_rate`. As Deepgram requires, raw encodings other than linear16 need
    `sample_rate` (linear16 keeps its 16000 default) and AMR takes only its codec's rate."""
    name = encoding(params, default)
    rate = whole(params, "sample_rate", None, *SAMPLE_RATES)
    if name in CODEC_RATES:
        if rate not in (None, CODEC_RATES[name]):
            raise InvalidRequest(f"sample_rate must be {CODEC_RATES[name]} with encoding={name}", parameter="sample_rate")
        return name, CODEC_RATES[name]
    if rate is None and name in RAW and name != "linear16":
        raise InvalidRequest(f"sample_rate is required with encoding={name}", parameter="sample_rate")
    return name, rate or 16000


def refuse(params: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """Options asked for that streaming cannot honour are refused, never silently ignored."""
    refused(*names, where=" on streams")(params)


def language(params: Mapping[str, Any]) -> str:
    """A stream's language, as files read it; streams cannot detect one."""
    fields = params_language({k: params[k] for k in ("language", "detect_language") if params.get(k)})
    if fields["detect_language"]:
        raise InvalidRequest("Streams need a language: language detection is for files", parameter="language")
    return fields["language"] or "en"
