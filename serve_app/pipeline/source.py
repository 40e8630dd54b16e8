"""Where a request's audio comes from: JSON `{"url": ...}`, a raw body (`audio/*`,
`application/octet-stream`), or multipart (field `audio`, or `file`). Options come from the query
string, the JSON body or the form fields, as sent: each API module reads its own names. Bodies are
read with a cap, so an oversized upload is refused (413) without being held whole in memory."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from ..errors import FileTooLarge, InvalidRequest, MissingParameter, RequestTimeout, UnsupportedFormat

_RAW_TYPES = ("application/octet-stream",)
MAX_JSON_BYTES = 64 * 1024  # a JSON body carries a URL and options, never audio


@dataclass(frozen=True)
class AudioSource:
    """A request's audio (uploaded bytes or a URL to fetch) and its options as sent, by name: the
    API module reads them in its own dialect (api/params.py)."""

    params: dict[str, Any]
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
            async with asyncio.timeout(limits.idle_s):
                block = await blocks.__anext__()
        except StopAsyncIteration:
            return bytes(body)
        except TimeoutError:
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
    query = repeated(request.query_params.multi_items())
    if content_type == "application/json":  # a URL and options: small, whatever max_bytes allows for audio
        return _from_json(await read_capped(request, limits, MAX_JSON_BYTES), query)
    if content_type.startswith("audio/") or content_type in _RAW_TYPES or content_type.startswith("video/"):
        return AudioSource(query, data=await read_capped(request, limits))
    if content_type == "multipart/form-data":
        return await _from_multipart(request, limits, query)
    if not content_type:
        raise InvalidRequest("Missing Content-Type: send application/json with a url, audio/*, or multipart/form-data")
    raise UnsupportedFormat("Unsupported Content-Type: send application/json, audio/*, or multipart/form-data")


def _from_json(raw: bytes, query: dict[str, Any]) -> AudioSource:
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
    return AudioSource(params, url=url.strip())


async def _from_multipart(request: Request, limits: BodyLimits, query: dict[str, Any]) -> AudioSource:
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
        fields = repeated([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
        return AudioSource({**query, **fields}, data=data)
    finally:
        await form.close()


def repeated(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query or form fields as a mapping: a name sent once maps to its value, a name sent several
    times (`keyterm=a&keyterm=b`, `timestamp_granularities[]`) to the list of them, in order. A
    reader that takes one value then refuses a list rather than silently keeping one of them."""
    fields: dict[str, Any] = {}
    for name, value in items:
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
    return fields
