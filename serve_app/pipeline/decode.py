"""Bytes -> 16 kHz mono float32.

PyAV (FFmpeg bundled in its wheel) decodes every container users send (wav, mp3, flac, ogg/opus,
m4a/aac, webm) with one code path and no system packages; its resampler also mixes stereo down.
Decoding stops as soon as the duration limit is passed, so a small file that expands to hours of
audio (a decode bomb) costs no more than the limit.

FFmpeg never guesses the container: left to probe, it takes a text upload such as
`ffconcat version 1.0\nfile some/path` for a playlist and opens the files it names on the server.
The container is chosen here from the leading bytes, among audio demuxers only (`sniff`), and the
demuxer may open nothing beyond the bytes given (`protocol_whitelist` names no protocol).
"""

from __future__ import annotations

import io

import av
import numpy as np

from ..errors import FileTooLarge, InvalidRequest, UnsupportedFormat
from ..types import SAMPLE_RATE

MAX_CHANNELS = 8
# Nested opens (playlists, references to other files) need a protocol; this names none.
NO_PROTOCOLS = {"protocol_whitelist": "none"}
_MP4_ATOMS = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
# These containers' headers state the codec's rate, channels and duration in full, so FFmpeg's
# stream-info probe (reading and decoding packets to learn them) is skipped: on a 5 s WAV it was
# 4.5 of the 6.7 ms of CPU the whole decode took. Other containers keep the probe: a headerless
# ADTS or MP3 stream names its channels only in its frames.
_HEADER_STATES_ALL = {"wav", "aiff", "flac"}
_NO_STREAM_PROBE = {"analyzeduration": "0", "probesize": "32"}


def sniff(data: bytes) -> str:
    """The FFmpeg demuxer for these bytes, from an allowlist of audio containers; 415 for anything else."""
    head = data[:12]
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] in _MP4_ATOMS:
        return "mov"  # mp4, m4a, 3gp (external data references stay off: FFmpeg's default)
    magic = {b"fLaC": "flac", b"OggS": "ogg", b"\x1aE\xdf\xa3": "matroska", b"caff": "caf", b"#!AM": "amr"}
    if head[:4] in magic:
        return magic[head[:4]]
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame sync
        return "aac" if head[1] & 0x06 == 0 else "mp3"  # layer bits 00: an ADTS AAC stream
    raise UnsupportedFormat("Not a known audio container; send wav, mp3, flac, ogg/opus, m4a/aac or webm")


def decode(data: bytes, max_duration_s: float, keep_channels: bool = False) -> np.ndarray:
    """16 kHz float32: mono (channels mixed down), or (channels, samples) with `keep_channels`.

    `max_duration_s` caps the audio of all channels together (channels x duration), so one request
    holds at most max_duration_s x 16,000 x 4 bytes of samples (461 MB at the 2 h default), and about
    twice that while the decoded pieces are joined."""
    if not data:
        raise InvalidRequest("Audio is empty")
    max_samples = int(max_duration_s * SAMPLE_RATE)
    container_format = sniff(data)
    options = {**NO_PROTOCOLS, **_NO_STREAM_PROBE} if container_format in _HEADER_STATES_ALL else NO_PROTOCOLS
    try:
        with av.open(io.BytesIO(data), mode="r", format=container_format, options=options, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedFormat("No audio stream found")
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # a codec FFmpeg does not know (or a mangled header)
                raise UnsupportedFormat("Unknown audio codec")
            if keep_channels and stream.channels > MAX_CHANNELS:
                raise InvalidRequest(f"multichannel audio may have at most {MAX_CHANNELS} channels", parameter="multichannel")
            channels = max(1, stream.channels) if keep_channels else 1
            if stream.duration is not None and stream.time_base is not None:
                if float(stream.duration * stream.time_base) * channels > max_duration_s:
                    raise _too_long(max_duration_s)
            return _decode_stream(container, stream, max_samples // channels, max_duration_s, keep_channels)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise UnsupportedFormat("Could not decode audio; send wav, mp3, flac, ogg/opus, m4a/aac or webm") from exc


def _decode_stream(
    container: av.container.InputContainer, stream: av.AudioStream, max_samples: int, max_s: float, keep_channels: bool
) -> np.ndarray:
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
    return FileTooLarge(
        f"Audio longer than the {max_duration_s:g} s limit (all channels together)", max_duration_s=max_duration_s
    )
