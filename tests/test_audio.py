"""Decoding (every container to 16 kHz mono) and chunking (cuts at quiet points, nothing lost)."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from serve_app.errors import FileTooLarge, InvalidRequest, UnsupportedFormat
from serve_app.pipeline.chunk import split
from serve_app.pipeline.decode import decode, sniff
from serve_app.types import SAMPLE_RATE

from .helpers import JFK_FLAC, JFK_MP3, LONG, STEREO


@pytest.mark.parametrize("path, seconds", [(JFK_FLAC, 11.0), (JFK_MP3, 11.0), (STEREO, 5.0)])
def test_decodes_to_16k_mono_float32(path, seconds) -> None:
    audio = decode(path.read_bytes(), 7200)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / SAMPLE_RATE - seconds) < 0.1
    assert 0.01 < np.abs(audio).max() < 2  # resampling may ring slightly past full scale


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", InvalidRequest),
        (b"\x00\x01garbage" * 100, UnsupportedFormat),
        (b"hello, this is a text file\n" * 20, UnsupportedFormat),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", UnsupportedFormat),  # truncated header
    ],
)
def test_bad_audio_is_a_client_error(data: bytes, error: type) -> None:
    with pytest.raises(error):
        decode(data, 7200)


def test_duration_limit_stops_decoding() -> None:
    with pytest.raises(FileTooLarge):
        decode(JFK_MP3.read_bytes(), max_duration_s=5)


def test_short_audio_is_one_chunk() -> None:
    audio = np.zeros(SAMPLE_RATE * 10, dtype=np.float32)
    chunks = split(audio)
    assert len(chunks) == 1 and chunks[0].offset_s == 0 and chunks[0].audio.size == audio.size


def test_cut_falls_in_the_quiet_gap_and_loses_nothing() -> None:
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, SAMPLE_RATE * 70).astype(np.float32)
    audio[int(27.0 * SAMPLE_RATE) : int(27.4 * SAMPLE_RATE)] = 0  # a pause inside the search window
    chunks = split(audio)
    assert 27.0 <= chunks[1].offset_s <= 27.4
    assert all(c.duration_s <= 30 for c in chunks)
    assert np.array_equal(np.concatenate([c.audio for c in chunks]), audio)
    assert [c.offset_s for c in chunks] == sorted(c.offset_s for c in chunks)


def test_long_speech_chunks_cover_the_file() -> None:
    audio = decode(LONG.read_bytes(), 7200)
    chunks = split(audio)
    assert len(chunks) >= 8 and all(c.duration_s <= 30 for c in chunks)
    assert sum(c.audio.size for c in chunks) == audio.size


def test_chunks_follow_a_shorter_engine_window() -> None:
    audio = decode(LONG.read_bytes(), 7200)
    chunks = split(audio, max_s=15)
    assert all(c.duration_s <= 15 for c in chunks) and len(chunks) >= 16
    assert all(c.duration_s >= 15 - 7.5 for c in chunks[:-1])  # cuts fall in the last half of a window at most
    assert sum(c.audio.size for c in chunks) == audio.size


@pytest.mark.parametrize(
    "body",
    [
        b"ffconcat version 1.0\nfile tests/data/whisper_jfk.flac\n",  # FFmpeg's concat playlist: would open a server file
        b"ffconcat version 1.0\nfile " + str(JFK_FLAC.resolve()).encode() + b"\n",
        b"#EXTM3U\n#EXTINF:11,\n" + str(JFK_FLAC.resolve()).encode() + b"\n",  # HLS playlist
        b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nm=audio 9 RTP/AVP 0\n",  # SDP
        b"subfile,,start,0,end,0,,:" + str(JFK_FLAC.resolve()).encode(),
    ],
)
def test_playlists_and_references_are_never_opened(body: bytes) -> None:
    with pytest.raises(UnsupportedFormat):
        decode(body, 7200)


@pytest.mark.parametrize("path, name", [(JFK_FLAC, "flac"), (JFK_MP3, "mp3"), (STEREO, "wav")])
def test_containers_are_chosen_from_their_leading_bytes(path, name) -> None:
    assert sniff(path.read_bytes()) == name


def _wav(channels: int, seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(np.zeros(int(seconds * SAMPLE_RATE) * channels, dtype=np.int16).tobytes())
    return buffer.getvalue()


def test_a_16k_wav_decodes_to_its_own_samples() -> None:
    # WAV skips FFmpeg's stream probe (decode.py): the header alone must give rate and channels right.
    samples = (np.sin(np.arange(SAMPLE_RATE) / 7) * 20000).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    np.testing.assert_array_equal(decode(buffer.getvalue(), 7200), samples.astype(np.float32) / 32768)


def test_multichannel_duration_counts_every_channel() -> None:
    assert decode(_wav(4, 10), max_duration_s=40, keep_channels=True).shape == (4, 10 * SAMPLE_RATE)
    with pytest.raises(FileTooLarge):
        decode(_wav(4, 11), max_duration_s=40, keep_channels=True)  # 44 s of audio to transcribe
    assert decode(_wav(4, 11), max_duration_s=40).shape == (11 * SAMPLE_RATE,)  # mixed down: 11 s
