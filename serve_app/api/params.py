"""Reading option values the way every API dialect spells them on the wire: a query string, JSON
body or form fields, all as one mapping. `Option`s turn a dialect's names into fields of the
dialect-free `TranscriptionRequest`; each dialect lists the ones it speaks (`OPTIONS` in
api/listen.py, api/pulse.py, api/openai.py) and `parse` applies them. A bad value is a 400 that
names the parameter and never echoes the value.

This module holds the readers of one value (`flag`, `number`, `whole`, `texts`, `listed`, `values`)
and the options about the audio and the shape of the answer (language, timestamps, speakers,
utterances, callback, translation...). The options that rewrite or annotate the transcript's text
(formatting, redaction, keyterms, filler words, replace/profanity/dictation/measurements, search,
tag/extra) are api/text_params.py's: they are read with these readers and checked against the
pipeline stages they switch on."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidRequest
from ..pipeline.request import TranscriptionRequest

Params = Mapping[str, Any]
Option = Callable[[Params], dict[str, Any]]  # a dialect's names -> TranscriptionRequest fields

# ISO 639 code, optionally with a region or script as Deepgram clients send it ("en-US" -> "en").
_LANGUAGE = re.compile(r"^([a-z]{2,3})(-[a-z0-9]{2,8})*$")
# Deepgram's `multi` and Smallest's regional aggregators: all mean "detect the language"
_DETECT = {"multi", "multi-eu", "multi-asian", "multi-indic"}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
MAX_SPEAKERS = 20  # `num_speakers` accepted up to this


def parse(options: tuple[Option, ...], params: Params) -> TranscriptionRequest:
    fields: dict[str, Any] = {}
    for option in options:
        fields.update(option(params))
    return TranscriptionRequest(**fields)


def flag(params: Params, name: str) -> bool | None:
    value = params.get(name)
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise InvalidRequest(f"{name} must be true or false", parameter=name)


def number(params: Params, name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = float("nan")
    if not lo <= result <= hi:  # also refuses nan
        raise InvalidRequest(f"{name} must be a number from {lo:g} to {hi:g}", parameter=name)
    return result


def whole(params: Params, name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    try:
        result = int(str(value))
    except ValueError:
        result = lo - 1
    if not lo <= result <= hi:
        raise InvalidRequest(f"{name} must be a whole number from {lo} to {hi}", parameter=name)
    return result


def language(params: Params) -> dict[str, Any]:
    """`language` (ISO 639-1, "en-US" read as "en"); `detect_language=true` or `language=multi`: detect."""
    value = params.get("language")
    detect = bool(flag(params, "detect_language"))
    if isinstance(value, str) and value.strip().lower() in _DETECT:
        value, detect = None, True
    if value is not None:
        match = _LANGUAGE.match(value.strip().lower()) if isinstance(value, str) else None
        if match is None:
            raise InvalidRequest("language must be an ISO 639-1 code such as 'en' or 'en-US'", parameter="language")
        value = match.group(1)
    return {"language": value, "detect_language": detect}


def timestamps(params: Params) -> dict[str, Any]:
    """Smallest calls it `timestamps`, its SDK `word_timestamps`."""
    value = flag(params, "timestamps")
    word_timestamps = flag(params, "word_timestamps")
    return {"timestamps": value if value is not None else word_timestamps}


def granularities(params: Params) -> dict[str, Any]:
    """OpenAI's `timestamp_granularities[]`: "word" and/or "segment"."""
    value = params.get("timestamp_granularities") or params.get("timestamp_granularities[]") or ()
    value = (value,) if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)) or not all(g in ("word", "segment") for g in value):
        raise InvalidRequest("timestamp_granularities must be 'word' and/or 'segment'", parameter="timestamp_granularities")
    return {"timestamp_granularities": tuple(value)}


def punctuation(params: Params) -> dict[str, Any]:
    return {"punctuate": flag(params, "punctuate") is not False}


def utterances(params: Params) -> dict[str, Any]:
    return {"utterances": bool(flag(params, "utterances")), "utt_split": number(params, "utt_split", 0.8, 0.1, 10.0)}


def paragraphs(params: Params) -> dict[str, Any]:
    return {"paragraphs": bool(flag(params, "paragraphs"))}


def multichannel(params: Params) -> dict[str, Any]:
    return {"multichannel": bool(flag(params, "multichannel"))}


def speakers(params: Params) -> dict[str, Any]:
    """`diarize=true`; `num_speakers` (1-20) fixes how many and implies it."""
    count = _num_speakers(params)
    return {"diarize": bool(flag(params, "diarize")) or count is not None, "num_speakers": count}


def _num_speakers(params: Params) -> int | None:
    if params.get("num_speakers") is None:
        return None
    count = number(params, "num_speakers", 0, 1, MAX_SPEAKERS)
    if not count.is_integer():
        raise InvalidRequest(f"num_speakers must be a whole number from 1 to {MAX_SPEAKERS}", parameter="num_speakers")
    return int(count)


def callback(params: Params) -> dict[str, Any]:
    """Deepgram's `callback`, Smallest's `callback_url` and Pulse's `webhook_url` (POST only)."""
    if params.get("webhook_extra"):  # Pulse's extra webhook data: free text, so any value is refused
        raise InvalidRequest("webhook_extra is not supported by this server", parameter="webhook_extra")
    if str(params.get("webhook_method", "POST")).upper() != "POST":
        raise InvalidRequest("webhook_method must be POST", parameter="webhook_method")
    url = params.get("callback", params.get("callback_url", params.get("webhook_url")))
    if url is not None and not isinstance(url, str):
        raise InvalidRequest("callback must be an http(s) URL", parameter="callback")
    return {"callback": url}


def response_format(params: Params) -> dict[str, Any]:
    value = params.get("response_format")
    if value is not None and not isinstance(value, str):
        raise InvalidRequest("response_format must be a string", parameter="response_format")
    return {"response_format": value}


def refused(*names: str, where: str = "") -> Option:
    """Options this server cannot honour: refused when asked for, never silently ignored. `where`
    narrows the message ("on streams")."""

    def option(params: Params) -> dict[str, Any]:
        for name in names:
            if flag(params, name):
                raise InvalidRequest(f"{name} is not supported{where} by this server", parameter=name)
        return {}

    return option


def translation(params: Params) -> dict[str, Any]:
    """`translate=en` (or `true`): English text for speech in another language, Whisper's translate task.
    English is the only target Whisper translates to."""
    value = params.get("translate")
    if value is None or value is False or str(value).strip().lower() in _FALSE:
        return {"translate": False}
    if value is True or str(value).strip().lower() in {"en", *_TRUE}:
        return {"translate": True}
    raise InvalidRequest("translate must be 'en': speech is translated to English only", parameter="translate")


def translating(params: Params) -> dict[str, Any]:
    """OpenAI's /v1/audio/translations: always to English, whatever else is sent."""
    return {"translate": True}


def texts(params: Params, name: str) -> list[str]:
    """A repeatable option's values (one value or several: pipeline/source.py `repeated`)."""
    value = params.get(name)
    items = [] if value is None else value if isinstance(value, list) else [value]
    items = [str(item).lower() if isinstance(item, bool) else item for item in items]  # JSON's true: "true"
    if not all(isinstance(item, str) for item in items):
        raise InvalidRequest(f"{name} must be a string or a list of strings", parameter=name)
    return items


def listed(params: Params, name: str) -> list[str]:
    """A repeatable option's values in lower case, comma-separated ones split: `redact=pci&redact=ssn`,
    `redact=pci,ssn` or a JSON list."""
    return [part.strip() for value in texts(params, name) for part in value.lower().split(",") if part.strip()]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never in a label: tags are logged


def values(params: Params, name: str, most: int, longest: int) -> list[str]:
    """Every value of a repeatable option (`replace=a:b&replace=c:d`, see `texts`): at most `most` of
    them, each non-empty, at most `longest` characters, no control characters."""
    items = texts(params, name)
    if len(items) > most:
        raise InvalidRequest(f"{name} may be sent at most {most} times", parameter=name)
    if not all(0 < len(v.strip()) <= longest and not _CONTROL.search(v) for v in items):
        raise InvalidRequest(f"each {name} must be 1 to {longest} printable characters", parameter=name)
    return [v.strip() for v in items]
