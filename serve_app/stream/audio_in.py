"""Binary frames -> 16 kHz mono float32, as they arrive.

Raw PCM (`encoding=linear16`) is converted in place: little-endian int16, channels interleaved and
mixed down, resampled by FFmpeg's resampler, which keeps its filter state between frames (no clicks
at frame edges). A container stream (webm or ogg, Opus inside: what browsers' MediaRecorder sends)
is demuxed by FFmpeg in a thread of its own, because FFmpeg reads it through a blocking pipe.

Both hand out, in order, audio arrays, markers (control messages placed between audio, such as
Finalize) and finally `END` (or the error that ended the audio) from `get()`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import av
import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import InvalidRequest, ServiceError, UnsupportedFormat

END = object()  # no more audio
MAX_BUFFERED = 64  # decoded pieces waiting for the segmenter: the decoder thread waits beyond this
MAX_PIPE_BYTES = 4 * 2**20  # container bytes FFmpeg has not read yet: the receiver waits beyond this


class PcmInput:
    def __init__(self, sample_rate: int, channels: int) -> None:
        self.sample_rate, self.channels = sample_rate, channels
        self._rest = b""  # bytes short of a whole sample frame
        self.seconds = 0.0  # audio received
        self._queue: asyncio.Queue[Any] = asyncio.Queue(MAX_BUFFERED)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if sample_rate != SAMPLE_RATE else None

    async def feed(self, data: bytes) -> None:
        data = self._rest + data
        size = 2 * self.channels
        whole = len(data) - len(data) % size
        self._rest = data[whole:]
        if whole:
            samples = np.frombuffer(data[:whole], "<i2").reshape(-1, self.channels).mean(axis=1, dtype=np.float32) / 32768.0
            self.seconds += samples.size / self.sample_rate
            await self._queue.put(self._resample(samples))

    async def mark(self, marker: object) -> None:
        await self._queue.put(marker)

    async def close(self) -> None:
        if self._resampler is not None:
            await self._queue.put(_to_array(self._resampler.resample(None)))
        await self._queue.put(END)

    async def get(self) -> Any:
        return await self._queue.get()

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.sample_rate
        return _to_array(self._resampler.resample(frame))


def _to_array(frames: list[av.AudioFrame]) -> np.ndarray:
    pieces = [f.to_ndarray().reshape(-1) for f in frames]
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)


class _Pipe:
    """Bytes from the event loop to FFmpeg's reads in the decoder thread. A marker is handed out
    when FFmpeg asks for the bytes after it: it has then taken in all the audio before it (reads
    never cross a marker, so what FFmpeg buffers ahead cannot pass one)."""

    def __init__(self, on_marks: Callable[[list[object]], None]) -> None:
        self._cond = threading.Condition()
        self._data = bytearray()
        self._written = self._read = 0
        self._marks: list[tuple[int, object]] = []  # (byte position, marker), in order
        self._eof = self.stopped = False
        self._on_marks = on_marks

    def write(self, data: bytes) -> None:
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
    def buffered(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
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


class ContainerInput:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.seconds = 0.0  # audio decoded from what was received
        self._pipe = _Pipe(lambda marks: [self._emit(m) for m in marks])
        self._thread = threading.Thread(target=self._run, name="stream-demux", daemon=True)
        self._thread.start()

    async def feed(self, data: bytes) -> None:
        while self._pipe.buffered > MAX_PIPE_BYTES:  # FFmpeg is behind: hold the client back
            await asyncio.sleep(0.01)
        self._pipe.write(data)

    async def mark(self, marker: object) -> None:
        self._pipe.mark(marker)

    async def close(self) -> None:
        self._pipe.close()

    async def get(self) -> Any:
        return await self._queue.get()

    def stop(self) -> None:
        """The session is over: the thread ends at its next read."""
        self._pipe.stop()

    def _emit(self, item: Any) -> None:
        while self._queue.qsize() > MAX_BUFFERED and not self._pipe.stopped:
            threading.Event().wait(0.01)  # the segmenter is behind: hold the decoder back
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _run(self) -> None:
        try:
            # A small probe: FFmpeg's default would wait for 5 MB before the first frame.
            with av.open(self._pipe, mode="r", options={"probesize": "32"}, metadata_errors="ignore") as container:
                if not container.streams.audio or container.streams.audio[0].codec_context is None:
                    raise UnsupportedFormat("No audio stream found in the container stream")
                stream = container.streams.audio[0]
                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                for packet in container.demux(stream):
                    for frame in packet.decode():
                        frame.pts = None
                        self.seconds += frame.samples / frame.sample_rate
                        self._emit(_to_array(resampler.resample(frame)))
                self._emit(_to_array(resampler.resample(None)))
            self._pipe.read(0)  # hands out the markers placed after the last bytes
            self._emit(END)
        except ServiceError as exc:
            self._emit(exc)
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as exc:
            if not self._pipe.stopped:
                self._emit(UnsupportedFormat(f"Could not decode the audio stream: {type(exc).__name__}"))


ENCODINGS = {"linear16": "pcm", "opus": "container", "ogg-opus": "container", "ogg_opus": "container", "webm": "container", "webm-opus": "container"}


def open_input(encoding: str | None, sample_rate: int, channels: int) -> PcmInput | ContainerInput:
    """`encoding` None: a container FFmpeg recognises by itself (Deepgram's rule for omitted encoding)."""
    kind = "container" if encoding is None else ENCODINGS.get(encoding)
    if kind is None:
        raise InvalidRequest(f"encoding must be one of {', '.join(ENCODINGS)} (or omitted for webm/ogg)", parameter="encoding")
    return PcmInput(sample_rate, channels) if kind == "pcm" else ContainerInput()
