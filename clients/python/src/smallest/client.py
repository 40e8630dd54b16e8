"""`Client` and `AsyncClient`: authentication, retries with backoff, rate limiting, typed results.

Both build the same requests (`_Requests`) and differ only in how they send and wait. A live stream's
handshake goes through the same retries, limiter and errors as a file call; once open it is never retried,
but one opened with `reconnect=True` reopens itself (through those retries) after a restart.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import time
from pathlib import Path
from typing import IO, Any, Awaitable, Callable, Dict, Optional, Tuple, TypeVar, Union

import httpx
from websockets.asyncio.client import ClientConnection

from .audio import AudioFile, read_audio
from .errors import APIConnectionError, APIError, APITimeoutError, SmallestError, error_from_response
from .live import KEEPALIVE_S, MAX_RESEND_S, Replay, connect_settings, live_url, replay_for
from .live_async import AsyncLiveStream, Opening
from .live_async import handshake as async_handshake
from .live_sync import LiveStream, handshake
from .retry import RETRY_STATUSES, RateLimiter, RetryPolicy
from .types import Accepted, TranscriptionResult

DEFAULT_API_URL = "http://localhost:7100"
Audio = Union[str, "os.PathLike[str]", bytes, IO[bytes]]
Result = Union[TranscriptionResult, Accepted]
T = TypeVar("T")


def _value(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _query(options: Dict[str, Any]) -> Dict[str, Any]:
    """Options as the server's query parameters: booleans as true/false, None left out, a list or
    tuple as the parameter repeated (`keyterm=["a", "b"]`)."""
    return {k: [_value(x) for x in v] if isinstance(v, (list, tuple)) else _value(v) for k, v in options.items() if v is not None}


def _audio_bytes(audio: Audio, content_type: Optional[str]) -> Tuple[bytes, str]:
    """The whole file in memory, so that a retry can send it again."""
    if isinstance(audio, (bytes, bytearray)):
        return bytes(audio), content_type or "application/octet-stream"
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        return path.read_bytes(), content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    name = getattr(audio, "name", "")
    guessed = mimetypes.guess_type(name)[0] if isinstance(name, str) else None
    return audio.read(), content_type or guessed or "application/octet-stream"


def _result(body: Any) -> Result:
    if isinstance(body, dict) and body.get("status") == "processing" and "text" not in body:
        return Accepted(body["request_id"], body["status"])
    return TranscriptionResult.from_json(body)


class _Requests:
    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        license_key: Optional[str] = None,
        *,
        timeout: float = 300.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        rate_limit: Union[RateLimiter, Tuple[int, float], None] = None,
    ) -> None:
        """`license_key` defaults to the LICENSE_KEY environment variable (keep keys out of code).
        `rate_limit=(calls, period_seconds)` or a shared `RateLimiter` spaces requests out."""
        key = license_key if license_key is not None else os.environ.get("LICENSE_KEY")
        if not key:
            raise SmallestError("No license key: pass license_key=... or set the LICENSE_KEY environment variable")
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries=max_retries, backoff=backoff)
        self.limiter = RateLimiter(*rate_limit) if isinstance(rate_limit, tuple) else rate_limit
        self._headers = {"Authorization": f"Token {key}", "User-Agent": "smallest-client-python/0.1.0"}

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(api_url={self.api_url!r})"

    def _url_request(self, url: str, options: Dict[str, Any]) -> Dict[str, Any]:
        return {"method": "POST", "url": f"{self.api_url}/v1/listen", "params": _query(options), "json": {"url": url}}

    def _file_request(self, audio: Audio, content_type: Optional[str], options: Dict[str, Any]) -> Dict[str, Any]:
        data, kind = _audio_bytes(audio, content_type)
        return {
            "method": "POST",
            "url": f"{self.api_url}/v1/listen",
            "params": _query(options),
            "content": data,
            "headers": {"Content-Type": kind},
        }

    def _outcome(self, response: httpx.Response) -> Any:
        """The JSON body of a success, or the typed error of a failure."""
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:500]}
        if response.is_success:
            return body
        raise error_from_response(response.status_code, body, response.headers.get("Retry-After"))

    def _live(self, options: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        """A live stream's URL and connection settings."""
        return live_url(self.api_url, _query(options)), connect_settings(self._headers, self.timeout)

    def _replay(self, options: Dict[str, Any], reconnect: bool, max_resend_s: float) -> Optional[Replay]:
        """What a stream with `reconnect=True` keeps to reopen itself; ValueError at once for audio it
        could not resend. It gives up after as many fruitless reopenings as a request has retries."""
        return replay_for(options, max_resend_s, self.retry.max_retries) if reconnect else None

    def _should_retry(self, error: SmallestError, attempt: int) -> Optional[float]:
        """Seconds to wait before trying again, or None to give up."""
        if attempt >= self.retry.max_retries:
            return None
        if isinstance(error, APIError):
            return self.retry.delay(attempt, error.retry_after) if error.status in RETRY_STATUSES else None
        return self.retry.delay(attempt, None) if isinstance(error, APIConnectionError) else None


def _live_source(
    audio: Audio, realtime: bool, encoding: Optional[str], sample_rate: Optional[int], channels: Optional[int]
) -> AudioFile:
    return read_audio(_audio_bytes(audio, None)[0], encoding, sample_rate, channels, paced=realtime)


def _transport_error(exc: httpx.TransportError) -> APIConnectionError:
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(f"{type(exc).__name__}: {exc}")


class Client(_Requests):
    """Synchronous client. `with Client(...) as client:` closes its connections at the end."""

    def __init__(self, api_url: str = DEFAULT_API_URL, license_key: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(api_url, license_key, **kwargs)
        self._http = httpx.Client(timeout=self.timeout, headers=self._headers, trust_env=False)

    def transcribe_url(self, url: str, **options: Any) -> Result:
        """Transcribe audio the server fetches from `url`. Options are the server's: language,
        timestamps, diarize, num_speakers, utterances, paragraphs, punctuate, detect_language,
        multichannel, callback_url, ..."""
        return _result(self._send(self._url_request(url, options)))

    def transcribe_file(self, audio: Audio, *, content_type: Optional[str] = None, **options: Any) -> Result:
        """Transcribe a path, bytes or a binary file object (sent whole, as the request body)."""
        return _result(self._send(self._file_request(audio, content_type, options)))

    def health(self) -> Dict[str, Any]:
        return self._send({"method": "GET", "url": f"{self.api_url}/health"})

    def usage(self) -> Dict[str, Any]:
        """This key's usage, limits and remaining quota."""
        return self._send({"method": "GET", "url": f"{self.api_url}/v1/usage"})

    def stream(
        self,
        *,
        keepalive: Optional[float] = KEEPALIVE_S,
        reconnect: bool = False,
        max_resend_s: float = MAX_RESEND_S,
        **options: Any,
    ) -> LiveStream:
        """Open a live stream (`WS /v1/listen`). Options are the server's: encoding, sample_rate,
        channels, language, interim_results, endpointing, utterance_end_ms, vad_events, punctuate,
        smart_format, keyterm, ... A KeepAlive goes out after `keepalive` seconds without audio (None: never).
        `reconnect=True` (raw encodings only): a stream closed by a restart (1012) or lost (1006)
        is reopened with the same options and the audio no final answered is resent (at most
        `max_resend_s` of it); results go on, their times on the first connection's timeline."""
        url, settings = self._live(options)
        replay = self._replay(options, reconnect, max_resend_s)
        return LiveStream(lambda: self._retrying(lambda: handshake(url, settings)), keepalive, self.timeout, replay)

    def stream_file(
        self,
        audio: Audio,
        *,
        realtime: bool = True,
        frame_ms: float = 100,
        encoding: Optional[str] = None,
        sample_rate: Optional[int] = None,
        channels: Optional[int] = None,
        reconnect: bool = False,
        max_resend_s: float = MAX_RESEND_S,
        **options: Any,
    ) -> LiveStream:
        """Stream a file (a 16-bit WAV, or raw or coded bytes in the stated `encoding`) in `frame_ms`
        frames, at the pace of speech if `realtime`, else as fast as the server takes them; then
        CloseStream. Iterate over the returned stream for the results. `reconnect`: as `stream`'s."""
        source = _live_source(audio, realtime, encoding, sample_rate, channels)
        stream = self.stream(reconnect=reconnect, max_resend_s=max_resend_s, **source.options, **options)
        stream.feed(source.frames(frame_ms), frame_ms / 1000 if realtime else None)
        return stream

    def _send(self, request: Dict[str, Any]) -> Any:
        return self._retrying(lambda: self._request_once(request))

    def _request_once(self, request: Dict[str, Any]) -> Any:
        try:
            response = self._http.request(**request)
        except httpx.TransportError as exc:
            raise _transport_error(exc) from None
        return self._outcome(response)

    def _retrying(self, attempt_once: Callable[[], T]) -> T:
        attempt = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            try:
                return attempt_once()
            except (APIError, APIConnectionError) as exc:
                error: SmallestError = exc
            wait = self._should_retry(error, attempt)
            if wait is None:
                raise error
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncClient(_Requests):
    """The same API with `await`; `async with AsyncClient(...) as client:`."""

    def __init__(self, api_url: str = DEFAULT_API_URL, license_key: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(api_url, license_key, **kwargs)
        self._http = httpx.AsyncClient(timeout=self.timeout, headers=self._headers, trust_env=False)

    async def transcribe_url(self, url: str, **options: Any) -> Result:
        return _result(await self._send(self._url_request(url, options)))

    async def transcribe_file(self, audio: Audio, *, content_type: Optional[str] = None, **options: Any) -> Result:
        return _result(await self._send(self._file_request(audio, content_type, options)))

    async def health(self) -> Dict[str, Any]:
        return await self._send({"method": "GET", "url": f"{self.api_url}/health"})

    async def usage(self) -> Dict[str, Any]:
        return await self._send({"method": "GET", "url": f"{self.api_url}/v1/usage"})

    def stream(
        self,
        *,
        keepalive: Optional[float] = KEEPALIVE_S,
        reconnect: bool = False,
        max_resend_s: float = MAX_RESEND_S,
        **options: Any,
    ) -> Opening:
        """`Client.stream`'s stream with `await`: `stream = await client.stream(...)`, or
        `async with client.stream(...) as stream:`."""
        url, settings = self._live(options)
        replay = self._replay(options, reconnect, max_resend_s)

        async def connect() -> ClientConnection:  # the first handshake and each reopening's
            return await self._retrying(lambda: async_handshake(url, settings))

        return Opening(lambda: AsyncLiveStream.open(connect, keepalive, self.timeout, replay))

    def stream_file(
        self,
        audio: Audio,
        *,
        realtime: bool = True,
        frame_ms: float = 100,
        encoding: Optional[str] = None,
        sample_rate: Optional[int] = None,
        channels: Optional[int] = None,
        reconnect: bool = False,
        max_resend_s: float = MAX_RESEND_S,
        **options: Any,
    ) -> Opening:
        """`Client.stream_file` with `await` or `async with`."""
        source = _live_source(audio, realtime, encoding, sample_rate, channels)
        self._replay({**source.options, **options}, reconnect, max_resend_s)  # refused at once, not when awaited

        async def open_and_feed() -> AsyncLiveStream:
            stream = await self.stream(reconnect=reconnect, max_resend_s=max_resend_s, **source.options, **options)
            stream.feed(source.frames(frame_ms), frame_ms / 1000 if realtime else None)
            return stream

        return Opening(open_and_feed)

    async def _send(self, request: Dict[str, Any]) -> Any:
        return await self._retrying(lambda: self._request_once(request))

    async def _request_once(self, request: Dict[str, Any]) -> Any:
        try:
            response = await self._http.request(**request)
        except httpx.TransportError as exc:
            raise _transport_error(exc) from None
        return self._outcome(response)

    async def _retrying(self, attempt_once: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            if self.limiter is not None:
                await self.limiter.acquire_async()
            try:
                return await attempt_once()
            except (APIError, APIConnectionError) as exc:
                error: SmallestError = exc
            wait = self._should_retry(error, attempt)
            if wait is None:
                raise error
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
