"""Binary frames -> 16 kHz mono float32, as they arrive.

Raw samples (`RAW`: linear16 little-endian int16, linear32 little-endian float32, mulaw and alaw
G.711 bytes expanded by lookup table) are converted in place: channels interleaved and mixed down
(or, `separate`, kept apart: arrays of (channels, samples), for multichannel streams), resampled by
FFmpeg's resampler, which keeps its filter state between frames (no clicks at frame
edges). A container stream (webm or ogg, Opus inside: what browsers' MediaRecorder sends; a FLAC
stream; AMR-NB frames) is demuxed by FFmpeg in a thread of its own, because FFmpeg reads it through
a blocking pipe. FFmpeg is always told the demuxer and only the codecs the encoding names decode.

Both hand out, in order, audio arrays, markers (control messages placed between audio, such as
Finalize) and finally `END` (or the error that ended the audio) from `get()`.

What a stream holds here is bounded in bytes and samples, not in messages: decoded audio waiting
for the segmenter is at most `max_samples`; a container stream's bytes FFmpeg has not read are at
most `max_bytes`, and FFmpeg may read at most `max_bytes` past the last audio it decoded (a
container packet, unlike a WebSocket frame, can claim any size). A full buffer makes `feed` wait,
so the receiver stops reading the socket.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import av
import numpy as np

from ..errors import InvalidRequest, ServiceError, UnsupportedFormat
from ..pipeline.decode import NO_PROTOCOLS
from ..types import SAMPLE_RATE
from .pipe import Pipe

END = object()  # no more audio
BUFFERED_S = 10.0  # decoded audio waiting for the segmenter (the segmenter runs ~60x real time)
BUFFERED_BYTES = 2**20  # container bytes FFmpeg has not read yet
PIECE_S = 0.5  # a PCM frame is converted this much audio at a time: no frame becomes one huge array

OGG, MATROSKA, FLAC, AMR, AMR_NB = "ogg", "matroska", "flac", "amr", "amrnb"
# FFmpeg is told the container, never left to guess it from the bytes: its guesses include
# playlists and concat lists (HLS, ffconcat, ...) that make it open files or URLs they name.
MAGIC = {b"OggS": OGG, b"\x1a\x45\xdf\xa3": MATROSKA, b"fLaC": FLAC, b"#!AMR\n": AMR, b"#!AMR-WB\n": AMR}
CODECS = ("opus", "vorbis")  # what MediaRecorder puts in them: no other FFmpeg decoder sees client bytes


def _mulaw() -> np.ndarray:
    """ITU-T G.711 mu-law expansion: byte -> int16 value (0xFF -> 0, 0x00 -> -32124)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84  # ((m << 3) + 132) << e, less 132
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw() -> np.ndarray:
    """ITU-T G.711 A-law expansion: byte -> int16 value (0xD5 -> 8, 0x55 -> -8)."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    segment, magnitude = (a >> 4) & 7, (a & 0x0F) << 4
    magnitude = np.where(segment == 0, magnitude + 8, (magnitude + 0x108) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


MULAW, ALAW = _mulaw(), _alaw()


class SampleFormat(NamedTuple):
    """How raw samples become floats in [-1, 1]: their size in bytes and the conversion."""

    size: int
    convert: Callable[[memoryview], np.ndarray]


# encoding -> its samples: headerless audio at the client's `sample_rate`
RAW: dict[str, SampleFormat] = {
    "linear16": SampleFormat(2, lambda b: np.frombuffer(b, "<i2").astype(np.float32) / 32768.0),
    # Deepgram: "32-bit, little endian, floating-point PCM"; NaN, infinities and overs are clipped
    "linear32": SampleFormat(4, lambda b: np.clip(np.nan_to_num(np.frombuffer(b, "<f4"), posinf=1.0, neginf=-1.0), -1.0, 1.0)),
    "mulaw": SampleFormat(1, lambda b: MULAW[np.frombuffer(b, np.uint8)].astype(np.float32) / 32768.0),
    "alaw": SampleFormat(1, lambda b: ALAW[np.frombuffer(b, np.uint8)].astype(np.float32) / 32768.0),
}
# encoding -> (the containers it may arrive in, the codecs they may carry, the demuxer for it
# headerless or None); FFmpeg opens only the container its first bytes name, or that demuxer
STREAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None]] = {
    "opus": ((OGG, MATROSKA), CODECS, None),
    "ogg-opus": ((OGG,), CODECS, None),
    "ogg_opus": ((OGG,), CODECS, None),
    "webm": ((MATROSKA,), CODECS, None),
    "webm-opus": ((MATROSKA,), CODECS, None),
    "flac": ((FLAC,), ("flac",), None),  # a FLAC stream, from its "fLaC" header
    "amr-nb": ((AMR,), ("amrnb",), AMR_NB),  # AMR storage format (RFC 4867), with or without "#!AMR\n"
}
ENCODINGS = (*RAW, *STREAMS)
# encodings Deepgram lists that are refused by name, and why
REFUSED = {
    "amr-wb": "this server has no AMR-WB encoder to test its decoding against",
    "speex": "Deepgram does not document how Speex frames are delimited, and this server has no Speex encoder to test against",
    "g729": "this server has no G.729 encoder to test its decoding against",
}
# encodings whose codec fixes the sample rate (Deepgram requires these values)
CODEC_RATES = {"amr-nb": 8000, "amr-wb": 16000}


class _Buffer:
    """Items for the segmenter, bounded by the samples they hold (an item can be of any size):
    `put` waits until an array fits. Markers, END and errors take no room."""

    def __init__(self, max_samples: int) -> None:
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self._room = asyncio.Event()
        self.max_samples, self.samples = max_samples, 0

    async def put(self, item: Any) -> None:
        if isinstance(item, np.ndarray):
            while self.samples and self.samples + item.size > self.max_samples:
                self._room.clear()
                await self._room.wait()
            self.samples += item.size
        self._items.put_nowait(item)

    async def get(self) -> Any:
        item = await self._items.get()
        if isinstance(item, np.ndarray):
            self.samples -= item.size
            self._room.set()
        return item


class PcmInput:
    """Headerless samples (`RAW`: linear16 by default), channels interleaved: mixed down, or
    `separate` (each channel its own row; `max_samples` then counts every channel's)."""

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        max_samples: int = int(BUFFERED_S * SAMPLE_RATE),
        encoding: str = "linear16",
        separate: bool = False,
    ) -> None:
        self.sample_rate, self.channels, self.separate = sample_rate, channels, separate
        self._format = RAW[encoding]
        self._frame = self._format.size * channels  # bytes of one sample of every channel
        self._rest = b""  # bytes short of a whole sample frame
        self.seconds = 0.0  # audio received
        self.buffer = _Buffer(max_samples)
        self._piece = max(1, int(PIECE_S * sample_rate)) * self._frame  # bytes converted at a time
        # one per channel kept apart: each keeps its own filter state
        self._resamplers = (
            [av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) for _ in range(channels if separate else 1)]
            if sample_rate != SAMPLE_RATE
            else []
        )

    async def feed(self, data: bytes) -> None:
        data = self._rest + data
        whole = len(data) - len(data) % self._frame
        self._rest = data[whole:]
        view = memoryview(data)
        for at in range(0, whole, self._piece):
            piece = self._format.convert(view[at : min(at + self._piece, whole)]).reshape(-1, self.channels)
            self.seconds += piece.shape[0] / self.sample_rate
            if self.separate:
                await self.buffer.put(np.stack([self._resample(piece[:, c].astype(np.float32), c) for c in range(self.channels)]))
            else:
                await self.buffer.put(self._resample(piece.mean(axis=1, dtype=np.float32)))

    async def mark(self, marker: object) -> None:
        await self.buffer.put(marker)

    async def close(self) -> None:
        if self._resamplers:
            rest = [_to_array(r.resample(None)) for r in self._resamplers]
            await self.buffer.put(np.stack(rest) if self.separate else rest[0])
        await self.buffer.put(END)

    async def get(self) -> Any:
        return await self.buffer.get()

    def _resample(self, samples: np.ndarray, channel: int = 0) -> np.ndarray:
        if not self._resamplers:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.sample_rate
        return _to_array(self._resamplers[channel].resample(frame))


def _to_array(frames: list[av.AudioFrame]) -> np.ndarray:
    pieces = [f.to_ndarray().reshape(-1) for f in frames]
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)


class ContainerInput:
    def __init__(
        self,
        containers: tuple[str, ...] = (OGG, MATROSKA),
        max_samples: int = int(BUFFERED_S * SAMPLE_RATE),
        max_bytes: int = BUFFERED_BYTES,
        codecs: tuple[str, ...] = CODECS,
        headerless: str | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.buffer = _Buffer(max_samples)
        self.containers, self.codecs, self.headerless = containers, codecs, headerless
        self.seconds = 0.0  # audio decoded from what was received
        self._pipe = Pipe(self._emit_all, max_bytes)
        self._thread = threading.Thread(target=self._run, name="stream-demux", daemon=True)
        self._thread.start()

    @property
    def buffered_bytes(self) -> int:
        return self._pipe.max_bytes - self._pipe.room

    async def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self._pipe.room
            if room <= 0:  # FFmpeg is behind: the receiver waits (and stops reading the socket)
                await asyncio.sleep(0.01)
                continue
            self._pipe.write(view[:room])
            view = view[room:]

    async def mark(self, marker: object) -> None:
        self._pipe.mark(marker)

    async def close(self) -> None:
        self._pipe.close()

    async def get(self) -> Any:
        return await self.buffer.get()

    def stop(self) -> None:
        """The session is over: the thread ends at its next read."""
        self._pipe.stop()

    def _emit_all(self, items: list[Any]) -> None:
        for item in items:
            self._emit(item)

    def _emit(self, item: Any) -> None:
        """Hand an item to the event loop, waiting while the buffer is full (the decoder then stops
        reading the pipe, which fills and holds the receiver back) unless the session ends."""
        if self._pipe.stopped:
            return
        put = asyncio.run_coroutine_threadsafe(self.buffer.put(item), self._loop)
        while not self._pipe.stopped:
            try:
                put.result(0.05)
                return
            except concurrent.futures.TimeoutError:
                continue
        put.cancel()

    def _run(self) -> None:
        try:
            container_format = _container(self._pipe.peek(max(map(len, MAGIC))), self.containers, self.headerless)
            # A small probe: FFmpeg's default would wait for 5 MB before the first frame.
            options = {"probesize": "32", **NO_PROTOCOLS}
            with av.open(self._pipe, mode="r", format=container_format, options=options, metadata_errors="ignore") as container:
                self._decode(container)
            self._pipe.read(0)  # hands out the markers placed after the last bytes
            self._emit(self._pipe.refusal or END)
        except ServiceError as exc:
            self._emit(exc)
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as exc:
            if not self._pipe.stopped:
                self._emit(self._pipe.refusal or UnsupportedFormat(f"Could not decode the audio stream: {type(exc).__name__}"))

    def _decode(self, container: Any) -> None:
        audio = container.streams.audio
        if not audio or audio[0].codec_context is None or audio[0].codec_context.name not in self.codecs:
            if self.codecs == CODECS:
                raise UnsupportedFormat("Container streams must carry Opus (or Vorbis) audio")
            raise UnsupportedFormat("The stream's codec is not the one its encoding names", parameter="encoding")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for packet in container.demux(audio[0]):
            for frame in packet.decode():
                frame.pts = None
                self.seconds += frame.samples / frame.sample_rate
                self._pipe.audio_at = self._pipe.position
                self._emit(_to_array(resampler.resample(frame)))
        self._emit(_to_array(resampler.resample(None)))


def _container(head: bytes, allowed: tuple[str, ...], headerless: str | None = None) -> str:
    """The FFmpeg demuxer for a stream, by its first bytes, from those its encoding allows;
    `headerless`: the demuxer for a stream whose first bytes name no container."""
    found = next((name for magic, name in MAGIC.items() if head.startswith(magic)), None)
    if found is None and headerless is not None:
        return headerless
    if found is None:
        if allowed == (FLAC,):
            raise UnsupportedFormat("A flac stream must start with its fLaC header", parameter="encoding")
        raise UnsupportedFormat("Container streams must be Ogg or WebM (Matroska); send raw PCM with encoding=linear16")
    if found not in allowed:
        raise UnsupportedFormat("The stream's container is not the one its encoding names", parameter="encoding")
    return found


def open_input(
    encoding: str | None,
    sample_rate: int,
    channels: int,
    buffered_s: float = BUFFERED_S,
    buffered_bytes: int = BUFFERED_BYTES,
    separate: bool = False,
) -> PcmInput | ContainerInput:
    """`encoding` None: an Ogg or WebM container (Deepgram's rule for omitted encoding); `separate`:
    raw channels kept apart, `buffered_s` of each."""
    if encoding is not None and encoding not in ENCODINGS:
        raise InvalidRequest(f"encoding must be one of {', '.join(ENCODINGS)} (or omitted for webm/ogg)", parameter="encoding")
    max_samples = int(buffered_s * SAMPLE_RATE)
    if encoding in RAW:
        return PcmInput(sample_rate, channels, max_samples * (channels if separate else 1), encoding, separate)
    if separate:
        raise InvalidRequest("multichannel needs raw samples (linear16, linear32, mulaw or alaw)", parameter="multichannel")
    containers, codecs, headerless = ((OGG, MATROSKA), CODECS, None) if encoding is None else STREAMS[encoding]
    return ContainerInput(containers, max_samples, buffered_bytes, codecs, headerless)
