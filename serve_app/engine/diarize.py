"""Who spoke when: voice activity, speaker embeddings over sliding windows, clustering.

Speech is found by Silero VAD; each 1.5 s window of it is embedded by Resemblyzer's GE2E speaker
encoder (a 3-layer LSTM over 40 mel bands). The windows are split into speakers top-down: a
cluster is split in two (average-linkage on embeddings centred on the recording) only while the
two halves sound like different people, judged on windows that share no audio and measured
against a background mean of many speakers (`speaker_background.npy`, see
tools/models/speaker_background.py). Each 10 ms frame of speech then takes the speaker that the
windows covering it vote for. Words get their speaker afterwards by overlap (pipeline/stitch.py), so
diarization never depends on the transcription's word times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage

from ..types import Turn

SAMPLE_RATE = 16_000
HOP = 160  # 10 ms frames, as the encoder was trained
WINDOW_FRAMES = 150  # 1.5 s: long enough for a stable embedding, short enough for quick turns
STEP_FRAMES = 25
# Bounds that keep a two-hour file to seconds and megabytes: no more than MAX_WINDOWS windows are
# embedded (clustering is quadratic in them), and the encoder and the spectrogram run in blocks.
MAX_WINDOWS = 2000
EMBED_BATCH = 64  # the LSTM holds gates for every frame of the batch: 40 MB at 64
MEL_BLOCK_FRAMES = 6_000  # 1 minute
MIN_WINDOW_FRAMES = 50  # speech shorter than 0.5 s is labelled from its neighbours
MAX_SPEAKERS = 8
APART_FRAMES = WINDOW_FRAMES  # windows this far apart share no audio
TARGET_DBFS = -30.0
# Two halves of a cluster are different speakers when the similarity between them is below this
# share of the similarity within them, by how many halves the within-similarity could be measured
# on. Both: one speaker measured 0.82-1.04 (LJSpeech clips), two 0.78 (phone call), 0.59-0.62 (AMI
# meetings), 0.09-0.14 (distinct voices). One (the other half is a single short turn): less
# evidence, a stricter bar; one speaker measured 0.65-0.78, a third voice 0.13-0.28. Neither: no split.
SAME_SPEAKER = {2: 0.80, 1: 0.50, 0: 0.0}
BACKGROUND = Path(__file__).with_name("speaker_background.npy")


class SpeakerEncoder(torch.nn.Module):
    """Resemblyzer's encoder: mel frames -> L2-normalised 256-d embedding (final hidden state)."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(40, 256, num_layers=3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
        self.eval()
        from transformers.audio_utils import mel_filter_bank

        self.mel = torch.from_numpy(
            mel_filter_bank(
                num_frequency_bins=201,
                num_mel_filters=40,
                min_frequency=0.0,
                max_frequency=8000.0,
                sampling_rate=SAMPLE_RATE,
                norm="slaney",
                mel_scale="slaney",
            )
        ).float()  # (201, 40)

    def frames(self, audio: np.ndarray) -> torch.Tensor:
        """Power mel spectrogram (frames, 40) as librosa computes it for Resemblyzer (not log),
        one frame per HOP samples centred on it (zero padding at the ends)."""
        # a dot product, not a float64 copy of the audio: that would be a gigabyte for two hours
        rms = float(np.sqrt(np.dot(audio, audio) / max(len(audio), 1))) or 1e-9
        gain = max(10 ** ((TARGET_DBFS - 20 * np.log10(rms)) / 20), 1.0)  # volume raised only, like Resemblyzer
        samples = torch.from_numpy(audio)
        total = len(audio) // HOP + 1
        # in blocks: the complex spectrogram of two hours at once would take over a gigabyte
        blocks = []
        for first in range(0, total, MEL_BLOCK_FRAMES):
            count = min(MEL_BLOCK_FRAMES, total - first)
            a, b = first * HOP - 200, (first + count - 1) * HOP + 200  # frames centred on their hop
            wav = torch.nn.functional.pad(samples[max(a, 0) : b].float() * gain, (max(-a, 0), max(b - len(audio), 0)))
            spec = torch.stft(wav, 400, HOP, window=torch.hann_window(400), center=False, return_complex=True)
            blocks.append((spec.abs() ** 2).T @ self.mel)
        return torch.cat(blocks)

    @torch.inference_mode()
    def embed(self, mel: torch.Tensor, windows: list[tuple[int, int]]) -> np.ndarray:
        out = []
        for first in range(0, len(windows), EMBED_BATCH):
            some = windows[first : first + EMBED_BATCH]
            lengths = torch.tensor([b - a for a, b in some])
            batch = torch.nn.utils.rnn.pad_sequence([mel[a:b] for a, b in some], batch_first=True)
            packed = torch.nn.utils.rnn.pack_padded_sequence(batch, lengths, batch_first=True, enforce_sorted=False)
            _, (hidden, _) = self.lstm(packed)
            out.append(torch.nn.functional.normalize(torch.relu(self.linear(hidden[-1])), dim=1))
        return torch.cat(out).numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def _ahc(x: np.ndarray, k: int) -> np.ndarray:
    """Average-linkage clustering on cosine distance into at most k clusters, labels 0..k-1."""
    if len(x) < 2 or k < 2:
        return np.zeros(len(x), dtype=int)
    return fcluster(linkage(x, "average", metric="cosine"), k, "maxclust") - 1


def windows(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sliding windows (in frames) over each speech region; a short region is one window. Past
    MAX_WINDOWS, an evenly spread subset of them: in effect a longer step over long speech."""
    out = []
    for a, b in regions:
        if b - a < MIN_WINDOW_FRAMES:
            continue
        if b - a <= WINDOW_FRAMES:
            out.append((a, b))
            continue
        starts = list(range(a, b - WINDOW_FRAMES + 1, STEP_FRAMES))
        if starts[-1] != b - WINDOW_FRAMES:
            starts.append(b - WINDOW_FRAMES)
        out += [(s, s + WINDOW_FRAMES) for s in starts]
    if len(out) > MAX_WINDOWS:
        out = [out[i] for i in np.linspace(0, len(out) - 1, MAX_WINDOWS).round().astype(int)]
    return out


def speaker_similarity(sim: np.ndarray, apart: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Mean similarity (`sim`, between windows) across two groups over the mean within them, on
    window pairs that share no audio (`apart`), and how many groups had such pairs (a short turn
    has none: its side is then left out). NaN when neither group has any: too little speech to tell."""

    def mean(mask: np.ndarray) -> float:
        values = sim[mask & apart]
        return float(values.mean()) if values.size else float("nan")

    inside = [m for m in (mean(np.outer(a, a)), mean(np.outer(b, b))) if not np.isnan(m)]
    within = float(np.prod(inside)) ** (1 / len(inside)) if inside else float("nan")
    return (mean(np.outer(a, b)) / within if within > 0 else float("nan")), len(inside)


def cluster(embeddings: np.ndarray, starts: np.ndarray, background: np.ndarray, num_speakers: int | None = None) -> np.ndarray:
    """Window embeddings -> speaker labels. Centring on the recording's own mean separates its
    voices from each other; whether a split is real is judged against the background mean, since
    centring alone makes even one voice look like several."""
    centred = _unit(embeddings - embeddings.mean(0))
    if num_speakers is not None:
        return _ahc(centred, num_speakers)
    x = _unit(embeddings - background)
    sim = x @ x.T
    apart = np.abs(starts[:, None] - starts[None]) >= APART_FRAMES
    pending: list[np.ndarray] = [np.arange(len(embeddings))]
    done: list[np.ndarray] = []
    while pending and len(done) + len(pending) < MAX_SPEAKERS:
        group = pending.pop()
        halves = _ahc(_unit(embeddings[group] - embeddings[group].mean(0)), 2)
        a, b = np.isin(np.arange(len(embeddings)), group[halves == 0]), np.isin(np.arange(len(embeddings)), group[halves == 1])
        similarity, measured = speaker_similarity(sim, apart, a, b) if b.any() else (float("nan"), 0)
        if similarity < SAME_SPEAKER[measured]:
            pending += [group[halves == 0], group[halves == 1]]
        else:
            done.append(group)
    k = len(done) + len(pending)
    return _ahc(centred, k)


def frame_speakers(spans: list[tuple[int, int]], labels: np.ndarray, regions: list[tuple[int, int]], frames: int) -> np.ndarray:
    """Per 10 ms frame: the speaker the covering windows vote for (centres weigh most), -1 off speech;
    speech no window covers takes its nearest voted frame's speaker."""
    votes = np.zeros((frames, int(labels.max()) + 1))
    for (a, b), label in zip(spans, labels):
        votes[a:b, label] += 1.0 - 0.9 * np.abs(np.linspace(-1.0, 1.0, b - a))
    voted = np.flatnonzero(votes.sum(1))
    speech = np.zeros(frames, dtype=bool)
    for a, b in regions:
        speech[a:b] = True
    f = np.flatnonzero(speech)
    # the nearest voted frame: whichever neighbour in the sorted voted frames is closer
    right = np.clip(np.searchsorted(voted, f), 0, len(voted) - 1)
    left = np.clip(right - 1, 0, len(voted) - 1)
    nearest = np.where(np.abs(voted[left] - f) <= np.abs(voted[right] - f), voted[left], voted[right])
    out = np.full(frames, -1)
    out[f] = votes[nearest].argmax(1)
    return out


def _seconds(frame: int) -> float:
    return round(float(frame) * HOP / SAMPLE_RATE, 2)


def turns(speakers: np.ndarray) -> list[Turn]:
    """Runs of one speaker, numbered in order of first appearance (speaker 0 speaks first)."""
    edges = np.flatnonzero(np.diff(speakers, prepend=-2, append=-2))
    order: dict[int, int] = {}
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        label = int(speakers[a])
        if label >= 0:
            out.append(Turn(_seconds(a), _seconds(b), order.setdefault(label, len(order))))
    return out


class Diarizer:
    def __init__(self, encoder_weights: Path, background: np.ndarray | None = None) -> None:
        from silero_vad import load_silero_vad

        self.encoder = SpeakerEncoder(encoder_weights)
        self.vad = load_silero_vad()
        self.background = np.load(BACKGROUND) if background is None else background

    def speech(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """Speech regions in frames (Silero VAD, pauses of 100 ms and more split them)."""
        from silero_vad import get_speech_timestamps

        found = get_speech_timestamps(torch.from_numpy(audio), self.vad, min_silence_duration_ms=100, speech_pad_ms=30)
        return [(t["start"] // HOP, t["end"] // HOP) for t in found]

    def __call__(self, audio: np.ndarray, num_speakers: int | None = None) -> list[Turn]:
        regions = self.speech(audio)
        spans = windows(regions)
        if not spans:  # too little speech to embed: one speaker
            return [Turn(_seconds(a), _seconds(b), 0) for a, b in regions]
        mel = self.encoder.frames(audio)
        embeddings = self.encoder.embed(mel, spans)
        labels = cluster(embeddings, np.array([a for a, _ in spans]), self.background, num_speakers)
        return turns(frame_speakers(spans, labels, regions, len(mel)))
