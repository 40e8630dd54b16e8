"""OpenAI realtime transcription sessions' settings (api/realtime.py speaks the events): the
session's configuration and how each part of a `session.update` or `transcription_session.update`
is read into it, refusing what this server cannot honour."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import InvalidRequest
from ..pipeline.prompt import MAX_PROMPT_CHARS
from ..stream.protocol import Context
from .live_params import MIN_ENDPOINT_S, SAMPLE_RATES, language
from .text_params import keyterms

VAD_THRESHOLD, PREFIX_PADDING_MS = 0.5, 300  # what this server's VAD uses (stream/segment.py)
FORMATS = {"pcm16": ("linear16", 24000), "g711_ulaw": ("mulaw", 8000), "g711_alaw": ("alaw", 8000)}  # beta names
GA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}


@dataclass(frozen=True)
class Config:
    """A transcription session's configuration, as both OpenAI shapes describe it."""

    format: str = "pcm16"  # FORMATS
    rate: int = 24000
    model: str | None = None  # as asked for; None: the server's
    language: str = "en"
    prompt: str = ""
    keywords: tuple[str, ...] = ()
    vad: bool = True  # server_vad; False: turn_detection null
    silence_ms: int = 500


def format_of(c: Config, value: Any, path: str) -> Config:
    if isinstance(value, str) and value in FORMATS:  # the beta's names
        return replace(c, format=value, rate=FORMATS[value][1])
    if isinstance(value, dict) and value.get("type") in GA_FORMATS and set(value) <= {"type", "rate"}:
        name = GA_FORMATS[value["type"]]
        rate = value.get("rate", FORMATS[name][1])
        if name == "pcm16" and type(rate) is int and SAMPLE_RATES[0] <= rate <= SAMPLE_RATES[1]:
            return replace(c, format=name, rate=rate)
        if name != "pcm16" and rate == 8000:
            return replace(c, format=name, rate=8000)
    raise InvalidRequest(
        "format must be pcm16, g711_ulaw or g711_alaw (GA: audio/pcm with its rate, audio/pcmu, audio/pcma)", parameter=path
    )


def transcription_of(c: Config, value: Any, path: str, ctx: Context) -> Config:
    if not isinstance(value, dict):
        raise InvalidRequest("transcription must be an object: a transcription session always transcribes", parameter=path)
    if set(value) - {"model", "language", "languages", "prompt", "keywords", "delay"}:
        raise InvalidRequest("transcription may have model, language, prompt, keywords", parameter=path)
    if value.get("delay") is not None:
        raise InvalidRequest("delay is not supported: finals come after each pause", parameter=f"{path}.delay")
    model = value.get("model", c.model)
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("model must be a string", parameter=f"{path}.model")
    spoken = value.get("language", c.language)
    languages = value.get("languages")
    if languages is not None:
        if not isinstance(languages, list) or len(languages) != 1:
            raise InvalidRequest(
                "languages must list one language: a stream is transcribed in one", parameter=f"{path}.languages"
            )
        spoken = languages[0]
    try:
        spoken = language({"language": spoken}) if spoken else "en"
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, parameter=f"{path}.language") from None
    if ctx.languages and spoken not in ctx.languages:
        raise InvalidRequest(f"Model {ctx.model} does not transcribe this language", parameter=f"{path}.language")
    prompt = value.get("prompt", c.prompt)
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"prompt must be a string of at most {MAX_PROMPT_CHARS} characters", parameter=f"{path}.prompt")
    words = value.get("keywords", list(c.keywords))
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise InvalidRequest("keywords must be a list of strings", parameter=f"{path}.keywords")
    try:
        terms = keyterms({"keyterm": words})["keyterms"]
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, parameter=f"{path}.keywords") from None
    return replace(c, model=model, language=spoken, prompt=prompt.strip(), keywords=terms)


def turn_detection_of(c: Config, value: Any, path: str) -> Config:
    if value is None:
        return replace(c, vad=False)
    if not isinstance(value, dict):
        raise InvalidRequest("turn_detection must be an object or null", parameter=path)
    known = {
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "create_response",
        "interrupt_response",
        "idle_timeout_ms",
    }
    if set(value) - known:
        raise InvalidRequest("turn_detection may have type, threshold, prefix_padding_ms, silence_duration_ms", parameter=path)
    if value.get("type", "server_vad") != "server_vad":
        raise InvalidRequest("turn_detection.type must be server_vad (or turn_detection null)", parameter=f"{path}.type")
    if value.get("threshold", VAD_THRESHOLD) != VAD_THRESHOLD:
        raise InvalidRequest(f"threshold is fixed at {VAD_THRESHOLD} on this server", parameter=f"{path}.threshold")
    if value.get("prefix_padding_ms", PREFIX_PADDING_MS) != PREFIX_PADDING_MS:
        raise InvalidRequest(
            f"prefix_padding_ms is fixed at {PREFIX_PADDING_MS} on this server", parameter=f"{path}.prefix_padding_ms"
        )
    if value.get("idle_timeout_ms") is not None:
        raise InvalidRequest(
            "idle_timeout_ms is not supported (it prompts a model response)", parameter=f"{path}.idle_timeout_ms"
        )
    silence = value.get("silence_duration_ms", c.silence_ms if c.vad else 500)
    if type(silence) is not int or not 0 <= silence <= 60_000:
        raise InvalidRequest(
            "silence_duration_ms must be a whole number from 0 to 60000", parameter=f"{path}.silence_duration_ms"
        )
    return replace(c, vad=True, silence_ms=max(silence, int(MIN_ENDPOINT_S * 1000)))
