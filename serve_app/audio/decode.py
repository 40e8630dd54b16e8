"""Bytes -> 16 kHz mono float32.

PyAV (FFmpeg bundled in its wheel) decodes every container users send (wav, mp3, flac, ogg/opus,
m4a/aac, webm) with one code path and no system packages; its resampler also mixes stereo down.
Decoding stops as soon as the duration limit is passed, so a small file that expands to hours of
audio (a decode bomb) costs no more than the limit.
"""

from __future__ import annotations

import io

import av
import numpy as np

from ..errors import FileTooLarge, InvalidRequest, UnsupportedFormat
from . import SAMPLE_RATE


MAX_CHANNELS = 8


def decode(data: bytes, max_duration_s: float, keep_channels: bool = False) -> np.ndarray:
    """16 kHz float32: mono (channels mixed down), or (channels, samples) with `keep_channels`."""
    if not data:
        raise InvalidRequest("Audio is empty")
    max_samples = int(max_duration_s * SAMPLE_RATE)
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedFormat("No audio stream found")
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # a codec FFmpeg does not know (or a mangled header)
                raise UnsupportedFormat("Unknown audio codec")
            if stream.duration is not None and stream.time_base is not None:
                if float(stream.duration * stream.time_base) > max_duration_s:
                    raise _too_long(max_duration_s)
            if keep_channels and stream.channels > MAX_CHANNELS:
                raise InvalidRequest(f"multichannel audio may have at most {MAX_CHANNELS} channels", parameter="multichannel")
            return _decode_stream(container, stream, max_samples, max_duration_s, keep_channels)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise UnsupportedFormat("Could not decode audio; send wav, mp3, flac, ogg/opus, m4a/aac or webm") from exc


def _decode_stream(container: av.container.InputContainer, stream: av.AudioStream, max_samples: int, max_s: float, keep_channels: bool) -> np.ndarray:
    # Planar float keeps channels apart (one row each); "mono" makes the resampler mix them down.
    layout = stream.layout.name if keep_channels else "mono"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    total = 0
    for frame in container.decode(stream):
        frame.pts = None  # let the resampler ignore broken or missing timestamps
        for out in resampler.resample(frame):
            pieces.append(out.to_ndarray())
            total += pieces[-1].shape[-1]
        if total > max_samples:
            raise _too_long(max_s)
    for out in resampler.resample(None):
        pieces.append(out.to_ndarray())
    audio = np.concatenate(pieces, axis=-1) if pieces else np.zeros((1, 0), dtype=np.float32)
    if audio.shape[-1] == 0:
        raise UnsupportedFormat("No decodable audio samples")
    if audio.shape[-1] > max_samples:
        raise _too_long(max_s)
    audio = audio.astype(np.float32, copy=False)
    return audio if keep_channels else audio.reshape(-1)


def _too_long(max_duration_s: float) -> FileTooLarge:
    return FileTooLarge(f"Audio longer than the {max_duration_s:g} s limit", max_duration_s=max_duration_s)
