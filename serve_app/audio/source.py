"""Where a request's audio comes from: JSON `{"url": ...}`, a raw body (`audio/*`,
`application/octet-stream`), or multipart (field `audio`, or `file`). Options come from the query
string, the JSON body or the form fields. Bodies are read with a cap, so an oversized upload is
refused (413) without being held whole in memory."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from ..errors import FileTooLarge, InvalidRequest, MissingParameter, RequestTimeout, UnsupportedFormat

# ISO 639 code, optionally with a region or script as Deepgram clients send it ("en-US" -> "en").
_LANGUAGE = re.compile(r"^([a-z]{2,3})(-[a-z0-9]{2,8})*$")
_RAW_TYPES = ("application/octet-stream",)
MAX_JSON_BYTES = 64 * 1024  # a JSON body carries a URL and options, never audio
MAX_SPEAKERS = 20  # `num_speakers` accepted up to this
# Deepgram's `multi` and Smallest's regional aggregators: all mean "detect the language"
_DETECT = {"multi", "multi-eu", "multi-asian", "multi-indic"}
# Smallest Pulse options this server cannot honour: refused when asked for, never silently ignored
_UNSUPPORTED = ("redact_pii", "redact_pci", "emotion_detection", "gender_detection")  # Pulse's flags


@dataclass(frozen=True)
class Options:
    language: str | None = None
    detect_language: bool = False  # `detect_language=true` or `language=multi`
    timestamps: bool | None = None  # model-aligned word times; None: the server's default
    response_format: str | None = None  # None: the route's own format
    timestamp_granularities: tuple[str, ...] = ()  # OpenAI's: "word" and/or "segment"
    punctuate: bool = True  # false: lower case without punctuation (`smart_format` is accepted: Whisper formats already)
    utterances: bool = False  # Deepgram / Smallest: speech split at pauses of `utt_split` seconds
    utt_split: float = 0.8
    paragraphs: bool = False  # Deepgram: sentences grouped into paragraphs
    multichannel: bool = False  # transcribe each channel on its own
    diarize: bool = False  # label words (and utterances, paragraphs) with speakers
    num_speakers: int | None = None  # diarize into exactly this many speakers; None: find how many
    callback: str | None = None  # Deepgram `callback` / Smallest `callback_url`: answer at once, POST the result there

    @property
    def needs_times(self) -> bool:
        """Whether the answer is built on word times, which must then be the model's."""
        return self.utterances or self.paragraphs or self.diarize or "word" in self.timestamp_granularities

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Options:
        language = params.get("language")
        detect = bool(flag(params, "detect_language"))
        if isinstance(language, str) and language.strip().lower() in _DETECT:
            language, detect = None, True
        if language is not None:
            match = _LANGUAGE.match(language.strip().lower()) if isinstance(language, str) else None
            if match is None:
                raise InvalidRequest("language must be an ISO 639-1 code such as 'en' or 'en-US'", parameter="language")
            language = match.group(1)
        # Smallest calls it `timestamps`, its SDK `word_timestamps`.
        timestamps = flag(params, "timestamps")
        word_timestamps = flag(params, "word_timestamps")
        flag(params, "smart_format")  # validated, nothing to do
        granularities = params.get("timestamp_granularities") or params.get("timestamp_granularities[]") or ()
        granularities = (granularities,) if isinstance(granularities, str) else granularities
        if not isinstance(granularities, (list, tuple)) or not all(g in ("word", "segment") for g in granularities):
            raise InvalidRequest("timestamp_granularities must be 'word' and/or 'segment'", parameter="timestamp_granularities")
        for name in _UNSUPPORTED:
            if flag(params, name):
                raise InvalidRequest(f"{name} is not supported by this server", parameter=name)
        if params.get("webhook_extra"):  # Pulse's extra webhook data: free text, so any value is refused
            raise InvalidRequest("webhook_extra is not supported by this server", parameter="webhook_extra")
        if str(params.get("webhook_method", "POST")).upper() != "POST":
            raise InvalidRequest("webhook_method must be POST", parameter="webhook_method")
        callback = params.get("callback", params.get("callback_url", params.get("webhook_url")))
        if callback is not None and not isinstance(callback, str):
            raise InvalidRequest("callback must be an http(s) URL", parameter="callback")
        num_speakers: int | None = None
        if params.get("num_speakers") is not None:
            count = _number(params, "num_speakers", 0, 1, MAX_SPEAKERS)
            if not count.is_integer():
                raise InvalidRequest(f"num_speakers must be a whole number from 1 to {MAX_SPEAKERS}", parameter="num_speakers")
            num_speakers = int(count)
        response_format = params.get("response_format")
        if response_format is not None and not isinstance(response_format, str):
            raise InvalidRequest("response_format must be a string", parameter="response_format")
        return cls(
            language=language,
            detect_language=detect,
            timestamps=timestamps if timestamps is not None else word_timestamps,
            response_format=response_format,
            timestamp_granularities=tuple(granularities),
            punctuate=flag(params, "punctuate") is not False,
            utterances=bool(flag(params, "utterances")),
            utt_split=_number(params, "utt_split", 0.8, 0.1, 10.0),
            paragraphs=bool(flag(params, "paragraphs")),
            callback=callback,
            multichannel=bool(flag(params, "multichannel")),
            diarize=bool(flag(params, "diarize")) or num_speakers is not None,
            num_speakers=num_speakers,
        )


_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def _number(params: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not lo <= number <= hi:  # also refuses nan
        raise InvalidRequest(f"{name} must be a number from {lo:g} to {hi:g}", parameter=name)
    return number


def flag(params: Mapping[str, Any], name: str) -> bool | None:
    value = params.get(name)
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise InvalidRequest(f"{name} must be true or false", parameter=name)


@dataclass(frozen=True)
class AudioSource:
    options: Options
    data: bytes | None = None  # uploaded audio
    url: str | None = None  # audio to fetch


@dataclass(frozen=True)
class BodyLimits:
    """How big a request body may be and how it must keep arriving."""

    max_bytes: int
    idle_s: float = 15.0  # longest wait for the next block
    min_bytes_per_s: float = 8000.0  # average rate owed once idle_s has passed


async def read_capped(request: Request, limits: BodyLimits, max_bytes: int | None = None) -> bytes:
    """The body, refused past `max_bytes` (413) or when it stalls or trickles (408): a sender that
    drips a byte at a time would otherwise hold a concurrency slot and a replica's memory for hours."""
    cap = limits.max_bytes if max_bytes is None else min(max_bytes, limits.max_bytes)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise _too_large(cap)
    body, blocks, started = bytearray(), request.stream().__aiter__(), time.monotonic()
    while True:
        try:
            block = await asyncio.wait_for(blocks.__anext__(), timeout=limits.idle_s)
        except StopAsyncIteration:
            return bytes(body)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"No request body received for {limits.idle_s:g} s") from None
        body += block
        if len(body) > cap:
            raise _too_large(cap)
        elapsed = time.monotonic() - started
        if elapsed > limits.idle_s and len(body) < limits.min_bytes_per_s * elapsed:
            raise RequestTimeout(f"Request body arriving slower than {limits.min_bytes_per_s:g} bytes/s")


def _too_large(max_bytes: int) -> FileTooLarge:
    return FileTooLarge(f"Request body larger than {max_bytes:,} bytes", max_bytes=max_bytes)


async def parse_source(request: Request, limits: BodyLimits) -> AudioSource:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    query = dict(request.query_params)
    if content_type == "application/json":  # a URL and options: small, whatever max_bytes allows for audio
        return _from_json(await read_capped(request, limits, MAX_JSON_BYTES), query)
    if content_type.startswith("audio/") or content_type in _RAW_TYPES or content_type.startswith("video/"):
        return AudioSource(Options.parse(query), data=await read_capped(request, limits))
    if content_type == "multipart/form-data":
        return await _from_multipart(request, limits, query)
    if not content_type:
        raise InvalidRequest("Missing Content-Type: send application/json with a url, audio/*, or multipart/form-data")
    raise UnsupportedFormat("Unsupported Content-Type: send application/json, audio/*, or multipart/form-data")


def _from_json(raw: bytes, query: dict[str, str]) -> AudioSource:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise InvalidRequest("Malformed JSON body") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("JSON body must be an object")
    url = body.get("url")
    if url is None or url == "":
        raise MissingParameter("Missing required parameter: url", parameter="url")
    if not isinstance(url, str):
        raise InvalidRequest("url must be a string", parameter="url")
    params = {**query, **{k: v for k, v in body.items() if k != "url"}}
    return AudioSource(Options.parse(params), url=url.strip())


async def _from_multipart(request: Request, limits: BodyLimits, query: dict[str, str]) -> AudioSource:
    body = await read_capped(request, limits)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=2, max_fields=50)
    except Exception as exc:  # starlette raises several types for malformed multipart
        raise InvalidRequest("Malformed multipart body") from exc
    try:
        upload = form.get("audio") or form.get("file")
        if not isinstance(upload, UploadFile):
            raise MissingParameter("Missing file field 'audio' (or 'file')", parameter="audio")
        data = await upload.read()
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        for name in ("timestamp_granularities[]", "timestamp_granularities"):  # repeated fields: keep them all
            if name in form:
                fields[name] = [v for v in form.getlist(name) if isinstance(v, str)]
        return AudioSource(Options.parse({**query, **fields}), data=data)
    finally:
        await form.close()
