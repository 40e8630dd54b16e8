"""What the sync and async live streams share: the handshake's URL and settings, its failures as the
file calls' exceptions, and the server's messages (Deepgram's live protocol) as typed objects.

`live_sync.py` and `live_async.py` hold the streams themselves; they differ only in how they wait,
and inherit what they hold alike from `StreamState`. `Replay` is what a stream opened with
`reconnect=True` keeps to reopen itself after a restart."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple, Union
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus

from .audio import SAMPLE_BYTES
from .errors import APIConnectionError, APIError, APITimeoutError, SmallestError, error_from_response
from .types import LiveMessage, LiveMetadata, LiveResult, SpeechStarted, UtteranceEnd

# The server closes a stream that sent nothing for 10 s (`idle_timeout_s`): a KeepAlive after 5 s
# without audio or a message keeps a paused stream open with room to spare.
KEEPALIVE_S = 5.0
OPEN_TIMEOUT_S = 30.0  # the handshake: the server checks the key and the options, nothing slow
# Audio goes out in messages of at most this size, far below the server's 1 MiB limit per message
# (`max_frame_kb`), which ends a stream (close 1009) rather than splitting what it received.
MAX_MESSAGE_BYTES = 64 * 1024
KEEPALIVE = json.dumps({"type": "KeepAlive"})
FINALIZE = json.dumps({"type": "Finalize"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})
NORMAL_CLOSE = 1000
SERVICE_RESTART = 1012  # the server's replica is being replaced: it answered what it took, then closed
MAX_RESEND_S = 30.0  # audio a reconnecting stream keeps for resending, by default

# A stream's `Error` message names its code, not an HTTP status: the status the same error has as an
# HTTP answer, so that `.status` means the same thing on a stream as on a file call.
_STATUS_OF_CODE = {
    "INVALID_REQUEST": 400,
    "INVALID_LICENSE": 401,
    "LICENSE_EXPIRED": 403,
    "QUOTA_EXCEEDED": 403,
    "STREAM_IDLE_TIMEOUT": 408,
    "FILE_TOO_LARGE": 413,
    "UNSUPPORTED_FORMAT": 415,
    "RATE_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
    "SERVER_RESTARTING": 503,
}
Received = Union[LiveMessage, APIError, None]


def live_url(api_url: str, query: Dict[str, Any]) -> str:
    """`WS /v1/listen` on the client's server (http -> ws, https -> wss), options as the query string."""
    parts = urlsplit(api_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/v1/listen", urlencode(query, doseq=True), ""))


def connect_settings(headers: Dict[str, str], timeout: float) -> Dict[str, Any]:
    """Keyword arguments of `websockets`' `connect`, sync and asyncio alike."""
    return {
        "additional_headers": headers,
        "user_agent_header": None,  # `headers` has the client's own User-Agent
        "open_timeout": min(timeout, OPEN_TIMEOUT_S),
        "compression": None,  # audio does not deflate; it would only cost both sides CPU
        "proxy": None,  # as the file calls (httpx with trust_env=False): no proxy from the environment
        "max_size": None,  # the server's messages are small; a long final must not end the stream
    }


def handshake_error(exc: Exception) -> SmallestError:
    """A failed handshake as the file calls raise it: the server's refusal (an HTTP answer with its
    JSON error) as its `APIError`, a network failure or timeout as `APIConnectionError`."""
    if isinstance(exc, InvalidStatus):
        response = exc.response
        try:
            body: Any = json.loads(bytes(response.body or b"").decode("utf-8", "replace"))
        except ValueError:
            body = {"error": bytes(response.body or b"")[:500].decode("utf-8", "replace")}
        return error_from_response(response.status_code, body, response.headers.get("Retry-After"))
    if isinstance(exc, TimeoutError):
        return APITimeoutError(f"WebSocket handshake timed out: {exc}")
    return APIConnectionError(f"{type(exc).__name__}: {exc}")


def stream_error(body: Dict[str, Any]) -> APIError:
    """The server's `Error` message (or, from a server that cannot refuse a handshake over HTTP, its
    JSON error as the stream's only message) as the exception a file call would raise for that code."""
    code = str(body.get("code") or body.get("variant") or "INTERNAL_ERROR")
    message = body.get("error") or body.get("description") or body.get("message")
    return error_from_response(_STATUS_OF_CODE.get(code, 500), {**body, "code": code, "error": message})


def parse(text: Union[str, bytes], shift: float = 0.0) -> Received:
    """One server message: a typed message, an error to raise, or None for a kind this client does
    not know (a newer server's), which is skipped. `shift`: seconds added to its times (a reopened
    stream's, onto the first connection's timeline)."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if shift:
        body = shifted(body, shift)
    kind = body.get("type")
    if kind == "Results":
        return LiveResult.from_json(body)
    if kind == "SpeechStarted":
        return SpeechStarted(float(body.get("timestamp", 0.0)), body)
    if kind == "UtteranceEnd":
        return UtteranceEnd(float(body.get("last_word_end", 0.0)), body)
    if kind == "Metadata":
        return LiveMetadata(body.get("request_id"), float(body.get("duration", 0.0)), body.get("sha256"), body)
    if kind == "Error" or (kind is None and "code" in body):
        return stream_error(body)
    return None


def shifted(body: Dict[str, Any], by: float) -> Dict[str, Any]:
    """A message with its times `by` seconds later (`raw` too, so that it says what the typed fields say).
    A `Metadata`'s `duration` becomes where the audio ends on the stream's timeline."""

    def later(fields: Dict[str, Any], *names: str) -> Dict[str, Any]:
        return {**fields, **{n: round(float(fields[n]) + by, 3) for n in names if isinstance(fields.get(n), (int, float))}}

    body = later(body, "start", "timestamp", "last_word_end", *(["duration"] if body.get("type") == "Metadata" else []))
    channel = body.get("channel")
    if isinstance(channel, dict) and isinstance(channel.get("alternatives"), list):
        alternatives = [
            {**a, "words": [later(w, "start", "end") for w in a.get("words", [])]} if isinstance(a, dict) else a
            for a in channel["alternatives"]
        ]
        body["channel"] = {**channel, "alternatives": alternatives}
    return body


def closed_error(exc: ConnectionClosed) -> Optional[SmallestError]:
    """How the connection ended, when the server sent no `Error` before: None for a normal close."""
    if exc.rcvd is not None and exc.rcvd.code == NORMAL_CLOSE:
        return None
    return APIConnectionError(f"The stream was closed ({_how(exc)}); it is not reopened")


def _how(exc: ConnectionClosed) -> str:
    return f"{exc.rcvd.code}: {exc.rcvd.reason}" if exc.rcvd is not None else "abnormally: no close frame"


def pieces(data: bytes) -> List[bytes]:
    """`data` in messages the server accepts (see MAX_MESSAGE_BYTES)."""
    return [data[at : at + MAX_MESSAGE_BYTES] for at in range(0, len(data), MAX_MESSAGE_BYTES)]


END = object()  # after the last item a stream's receiver hands on: the server closed the stream


class Ledger:
    """What a stream has received, kept for its reader: every final (also those before an error),
    the closing `Metadata`, and the error that ended the stream."""

    def __init__(self) -> None:
        self.finals: List[LiveResult] = []
        self.metadata: Optional[LiveMetadata] = None
        self.error: Optional[SmallestError] = None

    def note(self, item: Any) -> None:
        if isinstance(item, LiveResult) and item.is_final:
            self.finals.append(item)
        elif isinstance(item, LiveMetadata):
            self.metadata = item
        elif isinstance(item, SmallestError) and self.error is None:
            self.error = item


class StreamState:
    """What `LiveStream` and `AsyncLiveStream` keep alike, whatever they wait with: the received
    finals and metadata, the reopening counts, when the next KeepAlive is due, and handing what the
    receiver read on to the reader's queue (a `queue.Queue` or an `asyncio.Queue`; neither is
    bounded, so `put_nowait` never refuses). Each stream sets these attributes in its `__init__`."""

    _ledger: Ledger
    _replay: Optional["Replay"]
    _queue: Any
    _keepalive: Optional[float]
    _sent_at: float  # when the stream last sent anything
    _finished: bool  # CloseStream sent

    @property
    def finals(self) -> List[LiveResult]:
        """Every final received so far, in order, whoever read them (also those before an error)."""
        return list(self._ledger.finals)

    @property
    def metadata(self) -> Optional[LiveMetadata]:
        """The closing `Metadata` (request_id, duration), once the server has sent it."""
        return self._ledger.metadata

    @property
    def transcript(self) -> str:
        """The finals' text so far, joined."""
        return " ".join(r.text for r in self._ledger.finals if r.text)

    @property
    def reconnects(self) -> int:
        """How many times the stream was reopened (`reconnect=True`)."""
        return self._replay.reconnects if self._replay is not None else 0

    @property
    def dropped_s(self) -> float:
        """Seconds of audio a reopening could not resend: older than `max_resend_s`, never answered."""
        return self._replay.dropped_s if self._replay is not None else 0.0

    def _ended(self, error: Optional[SmallestError]) -> bool:
        """The stream is over: the `Metadata` held back, then the error it ended with (if any)."""
        if self._replay is not None:
            self._hand_on(self._replay.held())
        if self._ledger.error is None:
            self._hand_on(error)
        return False

    def _until_keepalive(self) -> Optional[float]:
        if self._keepalive is None or self._finished:  # after CloseStream the server reads nothing more
            return None
        return max(0.0, self._sent_at + self._keepalive - time.monotonic())

    def _hand_on(self, item: Any) -> None:
        if item is not None:
            self._ledger.note(item)
            self._queue.put_nowait(item)


def settle(unread: List[Any]) -> List[LiveResult]:
    """What `close()` answers from the messages nobody iterated over: their finals, or the error that
    ended the stream (raised; the finals before it stay in the stream's `finals`)."""
    error = next((item for item in unread if isinstance(item, SmallestError)), None)
    if error is not None:
        raise error
    return [item for item in unread if isinstance(item, LiveResult) and item.is_final]


def reopens(exc: ConnectionClosed) -> bool:
    """Whether a reconnecting stream reopens after this close: a replaced replica (1012) or a
    connection lost without a close frame (1006: a killed replica, a network cut)."""
    return exc.rcvd is None or exc.rcvd.code == SERVICE_RESTART


REOPEN = object()  # `after_close`: the stream goes on on a new connection


def after_close(exc: ConnectionClosed, replay: Optional["Replay"], aborted: bool, ledger: "Ledger") -> Any:
    """What follows a connection's close: REOPEN, or the error the stream ends with (None: none)."""
    if replay is None or aborted or ledger.error is not None or not reopens(exc):
        return closed_error(exc)
    if replay.gives_up():
        return reopen_failed(exc, APIConnectionError("it closed again before anything was answered"))
    return REOPEN


def reopen_failed(exc: ConnectionClosed, error: SmallestError) -> SmallestError:
    """What the reader gets when a stream could not be reopened: the close, and why the new one failed."""
    return APIConnectionError(f"The stream was closed ({_how(exc)}) and could not be reopened: {error}")


def replay_for(options: Dict[str, Any], max_resend_s: float, give_up_after: int) -> "Replay":
    """The `Replay` of a stream opened with these options, or ValueError if its audio cannot be resent
    from a byte offset: only raw samples say how many seconds a byte is (a coded stream's bytes
    resent mid-way are not a stream its decoder can start on)."""
    encoding = options.get("encoding")
    width = SAMPLE_BYTES.get(str(encoding)) if encoding is not None else None
    if width is None:
        raise ValueError(
            f"reconnect=True needs raw audio (encoding={', '.join(SAMPLE_BYTES)}) to resend from a byte offset; "
            f"{f'encoding={encoding}' if encoding is not None else 'a container stream (no encoding)'} cannot be"
        )
    rate = options.get("sample_rate") or (16000 if encoding == "linear16" else None)  # the server's default
    if rate is None:
        raise ValueError(f"reconnect=True with encoding={encoding} needs sample_rate=")
    if max_resend_s <= 0:
        raise ValueError("max_resend_s must be > 0")
    frame_bytes = width * int(options.get("channels") or 1)
    return Replay(float(int(rate) * frame_bytes), frame_bytes, max_resend_s, give_up_after)


class Replay:
    """The audio a reconnecting stream sent that no final has answered yet (at most `max_resend_s`
    of it; older audio is dropped, and counted in `dropped_s` if a reopening needed it), and where
    the current connection starts on the stream's timeline. Byte offsets count from the stream's
    first byte; a connection's times count from its own first byte, `shift` seconds later.

    The sender and the reader (a thread, or a task) both use it: a lock keeps it consistent."""

    def __init__(self, bytes_per_second: float, frame_bytes: int, max_resend_s: float, give_up_after: int) -> None:
        self.bytes_per_second, self.frame_bytes = bytes_per_second, frame_bytes
        self.max_bytes = self._bytes(max_resend_s)
        self.give_up_after = give_up_after
        self.reconnects = 0
        self.dropped = 0  # bytes a reopening should have resent but no longer had
        self._kept: Deque[Tuple[int, bytes]] = deque()  # (offset, audio) as sent, from the oldest kept
        self._sent = 0  # offset after the last byte sent
        self._base = 0  # offset of the current connection's first byte
        self._answered: Dict[int, int] = {}  # channel -> offset its last final ends at
        self._channels = 1
        self._metadata: Optional[LiveMetadata] = None  # held until the close says what it ends
        self._fruitless = 0  # reopenings in a row that resent from where the last one did
        self._lock = threading.Lock()

    @property
    def shift(self) -> float:
        return self._base / self.bytes_per_second

    @property
    def dropped_s(self) -> float:
        return self.dropped / self.bytes_per_second

    def sent(self, audio: bytes) -> None:
        with self._lock:
            self._kept.append((self._sent, audio))
            self._sent += len(audio)
            keep_from = max(self._sent - self.max_bytes, self._answered_to())  # neither too old nor answered
            while self._kept and self._kept[0][0] < keep_from:
                at, oldest = self._kept.popleft()
                if at + len(oldest) > keep_from:
                    self._kept.appendleft((keep_from, oldest[keep_from - at :]))
                    break

    def received(self, item: Any) -> Any:
        """Notes a final's end (on the stream's timeline: `parse` shifted it). A `Metadata` is held
        back (None): only the close after it says whether it ends the stream or a connection."""
        if isinstance(item, LiveResult) and item.is_final:
            channel, channels = (list(item.raw.get("channel_index") or []) + [0, 1])[:2]
            with self._lock:
                self._channels = max(self._channels, int(channels))
                end = self._bytes(item.start + item.duration)
                self._answered[int(channel)] = max(self._answered.get(int(channel), self._base), end)
        if isinstance(item, LiveMetadata):
            self._metadata = item
            return None
        return item

    def held(self) -> Optional[LiveMetadata]:
        """The held `Metadata`, for the reader once the stream ends (it is the stream's last message)."""
        metadata, self._metadata = self._metadata, None
        return metadata

    def gives_up(self) -> bool:
        return self._fruitless > self.give_up_after

    def restart(self) -> List[bytes]:
        """A new connection: the audio to send on it first, and its times shifted to start there.
        After 1012 the server's `Metadata` says how much it took (it sent the finals of all of it:
        what it took past the last final was silence, which has none); otherwise what no final
        answered is resent (with several channels, from the channel answered least far)."""
        metadata = self.held()
        with self._lock:
            start = self._bytes(metadata.duration) if metadata is not None else self._answered_to()
            start = min(start, self._sent)
            kept_from = self._kept[0][0] if self._kept else self._sent
            if start < kept_from:
                self.dropped += kept_from - start
                start = kept_from
            self._fruitless = self._fruitless + 1 if start <= self._base else 0
            self._base, self._answered = start, {}
            self.reconnects += 1
            return [audio[max(0, start - at) :] for at, audio in self._kept if at + len(audio) > start]

    def _answered_to(self) -> int:
        return min(self._answered.get(c, self._base) for c in range(self._channels))

    def _bytes(self, seconds: float) -> int:
        """An offset from seconds, on a whole sample of every channel (the server's times are in ms)."""
        return round(seconds * self.bytes_per_second / self.frame_bytes) * self.frame_bytes
