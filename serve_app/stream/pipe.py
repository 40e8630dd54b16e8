"""The blocking pipe a container stream's bytes go through to FFmpeg, which reads them in a thread of
its own (stream/audio_in.py), with the control markers placed between them."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import UnsupportedFormat


class Pipe:
    """Bytes from the event loop to FFmpeg's reads in the decoder thread. A marker is handed out
    when FFmpeg asks for the bytes after it: it has then taken in all the audio before it (reads
    never cross a marker, so what FFmpeg buffers ahead cannot pass one)."""

    def __init__(self, on_marks: Callable[[list[object]], None], max_bytes: int) -> None:
        self._cond = threading.Condition()
        self._data = bytearray()
        self._written = self._read = 0
        self._marks: list[tuple[int, object]] = []  # (byte position, marker), in order
        self._eof = self.stopped = False
        self._on_marks = on_marks
        self.max_bytes = max_bytes
        self.audio_at = 0  # read position when the decoder last put out audio
        self.refusal: UnsupportedFormat | None = None  # set when FFmpeg read too far without audio; reads then end

    def write(self, data: bytes | memoryview) -> None:
        with self._cond:
            self._data += data
            self._written += len(data)
            self._cond.notify_all()

    def mark(self, marker: object) -> None:
        with self._cond:
            self._marks.append((self._written, marker))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = self._eof = True
            self._data.clear()
            self._marks.clear()
            self._cond.notify_all()

    @property
    def room(self) -> int:
        return self.max_bytes - len(self._data)

    @property
    def position(self) -> int:
        return self._read

    def peek(self, size: int) -> bytes:
        """The first `size` bytes not read yet (fewer at the end), without reading them."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._data) >= size or self._eof)
            return bytes(self._data[:size])

    def read(self, size: int = -1) -> bytes:
        if self._read - self.audio_at > self.max_bytes:  # an end of file, not an exception: FFmpeg retries those
            self.refusal = UnsupportedFormat("The container stream carries no audio the server can decode")
            return b""
        while True:
            with self._cond:
                due = [m for at, m in self._marks if at <= self._read]
                if due:
                    self._marks = self._marks[len(due) :]
                elif self._data or self._eof:
                    limit = len(self._data) if size < 0 else min(size, len(self._data))
                    if self._marks:
                        limit = min(limit, self._marks[0][0] - self._read)
                    out = bytes(self._data[:limit])
                    del self._data[:limit]
                    self._read += limit
                    return out
                else:
                    self._cond.wait()
                    continue
            self._on_marks(due)  # outside the lock: handing out may wait for the segmenter

    def seekable(self) -> bool:
        return False
