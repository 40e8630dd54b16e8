"""Audio for live streams: a file as the stream's options and frames (WAV read with the stdlib `wave`
module, or raw bytes in a stated encoding), and a microphone through the optional `sounddevice`."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from .errors import SmallestError

# Bytes per sample of the raw encodings the server takes; a coded stream (flac, opus in ogg or webm,
# amr-nb) is sent as it is, and only its decoder knows how many seconds a byte holds.
SAMPLE_BYTES = {"linear16": 2, "linear32": 4, "mulaw": 1, "alaw": 1}


@dataclass(frozen=True)
class AudioFile:
    data: bytes
    options: Dict[str, Any]  # encoding, sample_rate, channels: the handshake's query parameters
    bytes_per_second: Optional[float]  # None for a coded stream, which cannot be paced by its bytes
    frame_bytes: int  # one sample of every channel: frames are cut on its multiples

    def frames(self, frame_ms: float) -> List[bytes]:
        """The audio in frames of `frame_ms` (a coded stream in 4 KiB pieces)."""
        size = 4096
        if self.bytes_per_second is not None:
            size = max(1, int(self.bytes_per_second * frame_ms / 1000) // self.frame_bytes) * self.frame_bytes
        return [self.data[at : at + size] for at in range(0, len(self.data), size)]


def read_audio(
    data: bytes, encoding: Optional[str], sample_rate: Optional[int], channels: Optional[int], paced: bool = False
) -> AudioFile:
    """A WAV file (16-bit PCM, read by `wave`) unless `encoding` names what the bytes are. `paced`:
    the frames will be sent at the pace of speech, which a coded stream's bytes do not tell."""
    if encoding is None and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _wav(data)
    if encoding is None:
        raise SmallestError("Not a WAV file: pass encoding= (and sample_rate= for raw audio) to say what the bytes are")
    options: Dict[str, Any] = {"encoding": encoding, "sample_rate": sample_rate, "channels": channels}
    width = SAMPLE_BYTES.get(encoding)
    if width is None and paced:
        raise SmallestError(f"A {encoding} stream cannot be paced by its bytes: pass realtime=False")
    if width is None:
        return AudioFile(data, options, None, 1)
    rate = sample_rate or (16000 if encoding == "linear16" else None)  # the server's rule: only linear16 has a default
    if rate is None:
        raise SmallestError(f"encoding={encoding} needs sample_rate=")
    return AudioFile(data, options, float(rate * width * (channels or 1)), width * (channels or 1))


def _wav(data: bytes) -> AudioFile:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            width, rate, channels = wav.getsampwidth(), wav.getframerate(), wav.getnchannels()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:  # float WAVs and other formats `wave` cannot read
        raise SmallestError(f"Unreadable WAV file ({exc}): pass encoding= with the raw samples instead") from None
    if width != 2:
        raise SmallestError(f"Only 16-bit PCM WAV files can be streamed ({8 * width}-bit given)")
    options = {"encoding": "linear16", "sample_rate": rate, "channels": channels}
    return AudioFile(pcm, options, float(rate * 2 * channels), 2 * channels)


def microphone(sample_rate: int = 16000, channels: int = 1, frame_ms: float = 100) -> Iterator[bytes]:
    """The default input device as `linear16` frames of `frame_ms`, for a stream opened with
    `encoding="linear16", sample_rate=..., channels=...`. Needs the optional `sounddevice`
    (`pip install "smallest-client[microphone]"`); ends when the caller stops iterating."""
    try:
        import sounddevice  # optional: only the microphone needs it (and PortAudio)
    except ImportError:
        raise SmallestError('The microphone needs the sounddevice package: pip install "smallest-client[microphone]"') from None
    samples = max(1, int(sample_rate * frame_ms / 1000))
    with sounddevice.RawInputStream(samplerate=sample_rate, channels=channels, dtype="int16", blocksize=samples) as device:
        while True:
            frame, _overflowed = device.read(samples)
            yield bytes(frame)
