"""What the sync and async live streams share: the handshake's URL and settings, its failures as the
file calls' exceptions, and the server's messages (Deepgram's live protocol) as typed objects.

`live_sync.py` and `live_async.py` hold the streams themselves; they differ only in how they wait."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Union
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus

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


def parse(text: Union[str, bytes]) -> Received:
    """One server message: a typed message, an error to raise, or None for a kind this client does
    not know (a newer server's), which is skipped."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
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


def closed_error(exc: ConnectionClosed) -> Optional[SmallestError]:
    """How the connection ended, when the server sent no `Error` before: None for a normal close."""
    code = exc.rcvd.code if exc.rcvd is not None else None
    if code == NORMAL_CLOSE:
        return None
    reason = exc.rcvd.reason if exc.rcvd is not None else "no close frame"
    return APIConnectionError(f"The stream was closed ({code or 'abnormally'}: {reason}); it is not reopened")


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


def settle(unread: List[Any]) -> List[LiveResult]:
    """What `close()` answers from the messages nobody iterated over: their finals, or the error that
    ended the stream (raised; the finals before it stay in the stream's `finals`)."""
    error = next((item for item in unread if isinstance(item, SmallestError)), None)
    if error is not None:
        raise error
    return [item for item in unread if isinstance(item, LiveResult) and item.is_final]
