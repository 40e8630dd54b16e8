"""`LiveStream`, the synchronous live stream. A receiver thread reads the server's messages into a
queue, so that `send` never waits on results and results can be read while another thread sends;
the same thread sends a KeepAlive whenever the stream has sent nothing for `keepalive` seconds, and
reopens a stream opened with `reconnect=True` (live.py's `Replay` says from where to resend)."""

from __future__ import annotations

import queue
import threading
import time
from contextlib import ExitStack
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from .errors import APIConnectionError, SmallestError
from .live import (
    CLOSE_STREAM,
    END,
    FINALIZE,
    KEEPALIVE,
    REOPEN,
    Ledger,
    Replay,
    StreamState,
    after_close,
    closed_error,
    handshake_error,
    parse,
    pieces,
    reopen_failed,
    reopens,
    settle,
)
from .types import LiveMessage, LiveResult


class LiveStream(StreamState):
    """An open `WS /v1/listen` stream (from `Client.stream`). Iterating over it yields every message
    in order (`LiveResult` interims and finals, `SpeechStarted`, `UtteranceEnd`, `LiveMetadata`) until
    the server closes the stream, and raises the server's error where it came."""

    def __init__(
        self,
        connect: Callable[[], ClientConnection],
        keepalive: Optional[float],
        close_timeout: float,
        replay: Optional[Replay] = None,
    ) -> None:
        """`connect`: the handshake (`handshake` with the client's retries), again for each reopening;
        `replay`: reopen after a restart (`reconnect=True`)."""
        self._connect, self._replay = connect, replay
        self._exit = ExitStack()
        self._ws = self._exit.enter_context(connect())
        self._keepalive, self._close_timeout = keepalive, close_timeout
        self._ledger = Ledger()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._send_lock = threading.Lock()
        self._sent_at = time.monotonic()
        self._finished = False  # CloseStream sent
        self._aborted = False
        self._feeder: Optional[threading.Thread] = None  # `feed`'s thread
        self._receiver = threading.Thread(target=self._receive, name="smallest-live", daemon=True)
        self._receiver.start()

    def send(self, audio: bytes) -> None:
        """Audio in the encoding the stream was opened with; large buffers go as several messages."""
        if self._finished:
            raise SmallestError("The stream is closing: no more audio can be sent")
        for piece in pieces(bytes(audio)):
            self._send(piece)

    def send_all(self, frames: Iterable[bytes], seconds_each: Optional[float] = None) -> None:
        """Each frame in turn, `seconds_each` apart if given (the pace of speech, as a microphone sends)."""
        started = time.monotonic()
        for k, frame in enumerate(frames):
            if seconds_each is not None:
                time.sleep(max(0.0, started + k * seconds_each - time.monotonic()))
            self.send(frame)

    def feed(self, frames: Iterable[bytes], seconds_each: Optional[float] = None) -> None:
        """`send_all` in a background thread, then `finish()`: read the results meanwhile. An error
        ends the sending; it is raised to whoever reads the stream."""

        def run() -> None:
            try:
                self.send_all(frames, seconds_each)
            except SmallestError:
                pass  # the stream ended; its reader gets the reason
            finally:
                self.finish()

        self._feeder = threading.Thread(target=run, name="smallest-live-feed", daemon=True)
        self._feeder.start()

    def finalize(self) -> None:
        """Make what was sent so far final now (`from_finalize=True`); the stream stays open."""
        self._send(FINALIZE)

    def finish(self) -> None:
        """Send CloseStream without waiting: the server answers all the audio, then closes; iterate to
        the end to read the results. `close()` does this and waits."""
        if not self._finished:
            self._finished = True
            self._send(CLOSE_STREAM, quiet=True)

    def close(self) -> List[LiveResult]:
        """Close the stream once everything `feed` was given is sent and the server has answered it
        all: returns the finals nobody iterated over yet, or raises the error the stream ended with."""
        if self._feeder is not None:
            self._feeder.join()
        self.finish()
        self._receiver.join(self._close_timeout)
        self._exit.close()
        unread = []
        while (item := self._next(block=False)) is not END:
            unread.append(item)
        return settle(unread)

    def abort(self) -> None:
        """Leave at once, without waiting for results (the server bills the audio it received)."""
        self._finished = self._aborted = True
        self._exit.close()

    def __iter__(self) -> Iterator[LiveMessage]:
        while (item := self._next(block=True)) is not END:
            if isinstance(item, SmallestError):
                raise item
            yield item

    def __enter__(self) -> "LiveStream":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _next(self, block: bool) -> Any:
        """The next item nobody has read; END stays in the queue for every later reader."""
        try:
            item = self._queue.get(block=block)
        except queue.Empty:
            return END
        if item is END:
            self._queue.put(END)
        return item

    def _send(self, message: Any, quiet: bool = False) -> None:
        try:
            with self._send_lock:
                if self._replay is not None and isinstance(message, bytes):
                    self._replay.sent(message)  # under the lock: a reopening resends it or it goes on the new connection
                self._ws.send(message)
                self._sent_at = time.monotonic()
        except ConnectionClosed as exc:
            if quiet or (self._replay is not None and reopens(exc) and self._receiver.is_alive()):
                return  # kept: the receiver reopens the stream and resends it
            self._receiver.join(1.0)  # the receiver may be reading the Error that says why the server closed
            raise self._ledger.error or closed_error(exc) or APIConnectionError("The stream is closed") from None

    def _receive(self) -> None:
        try:
            while self._read():
                pass
        finally:
            self._queue.put(END)

    def _read(self) -> bool:
        """One connection's messages until it closes; True if the stream was reopened on a new one."""
        try:
            while True:
                try:
                    text = self._ws.recv(timeout=self._until_keepalive())
                except TimeoutError:
                    self._send(KEEPALIVE, quiet=True)
                    continue
                item = parse(text, self._replay.shift if self._replay is not None else 0.0)
                self._hand_on(self._replay.received(item) if self._replay is not None else item)
        except ConnectionClosed as exc:
            outcome = after_close(exc, self._replay, self._aborted, self._ledger)
            if self._replay is None or outcome is not REOPEN:
                return self._ended(outcome)
            try:
                ws = self._connect()
            except SmallestError as error:
                return self._ended(reopen_failed(exc, error))
            self._reopened(ws, self._replay)
            return True

    def _reopened(self, ws: ClientConnection, replay: Replay) -> None:
        """The stream goes on on `ws`: what the old connection did not take, first (under the lock,
        so that audio sent meanwhile follows it), then CloseStream again if it was sent."""
        with self._send_lock:
            self._exit.enter_context(ws)
            self._ws = ws
            if self._aborted:
                ws.close()
                return
            try:
                for audio in replay.restart():
                    for piece in pieces(audio):
                        ws.send(piece)
                if self._finished:
                    ws.send(CLOSE_STREAM)
                self._sent_at = time.monotonic()
            except ConnectionClosed:
                pass  # the next read sees it and reopens again


def handshake(url: str, settings: Dict[str, Any]) -> ClientConnection:
    """One handshake: the server's refusal raises the exception a file call would (no retry here)."""
    try:
        return connect(url, **settings)
    except (OSError, WebSocketException) as exc:  # OSError: refused, reset, timed out
        raise handshake_error(exc) from None
