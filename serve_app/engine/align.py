"""Word timing from the model: cross-attention alignment (Whisper's own method, `timing.py`).

vLLM returns tokens but no attention, so after decoding, the same checkpoint runs once more in
PyTorch with the decoded tokens forced (one encoder pass, one decoder pass, no sampling). The
cross-attention of the alignment heads named in the checkpoint's `generation_config.json` says,
for every token, which 20 ms audio frames it was read from; dynamic time warping turns that into a
monotonic path, and each token starts where the path first reaches it. Times are therefore the
model's, not a share of the chunk by word length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..types import SAMPLE_RATE
from .precision import AUTO, cpu_dtype

if TYPE_CHECKING:  # for annotations only: torch and transformers load in Aligner, in the engine replica
    from transformers import WhisperForConditionalGeneration

FRAMES_PER_S = 50  # encoder output frames: 16 kHz / 160 samples per mel frame / 2 (conv stride)
MEDIAN_WIDTH = 7  # Whisper's median filter over frames


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic path through `cost` (tokens x frames) of least total cost: (token index, frame index)
    per step. Whisper's recurrence, vectorised per row: with a row's prefix sums S,
    D[i, j] = S[j] + min over k <= j of (min(D[i-1, k-1], D[i-1, k]) - S[k-1])."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        from_above = np.minimum(acc[i - 1, :-1], acc[i - 1, 1:])  # diagonal or vertical step into column j
        prefix = np.concatenate(([0.0], np.cumsum(cost[i - 1])))
        acc[i, 1:] = prefix[1:] + np.minimum.accumulate(from_above - prefix[:-1])
    # Walk back with Whisper's tie-breaking: diagonal, then vertical, else horizontal.
    i, j = n, m
    path: list[tuple[int, int]] = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        if i == 0:
            j -= 1
            continue
        if j == 0:
            i -= 1
            continue
        diag, up, left = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        if diag < up and diag < left:
            i, j = i - 1, j - 1
        elif up < diag and up < left:
            i -= 1
        else:
            j -= 1
    steps = np.array(path[::-1])
    return steps[:, 0], steps[:, 1]


def _median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over the last axis, reflect-padded (as Whisper does)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1), axis=-1)


def token_times(attention: np.ndarray, n_frames: int) -> np.ndarray:
    """Start time in seconds of each row of `attention` (heads x rows x frames, softmaxed), plus
    the end of the last row: len(rows) + 1 values, monotonic."""
    weights = attention[:, :, :n_frames]
    std, mean = weights.std(axis=-2, keepdims=True), weights.mean(axis=-2, keepdims=True)
    weights = (weights - mean) / np.maximum(std, 1e-8)  # which frames stand out for this token
    matrix = _median_filter(weights, MEDIAN_WIDTH).mean(axis=0)
    rows, frames = dtw(-matrix)
    first = np.flatnonzero(np.diff(rows, prepend=-1))  # the step where the path reaches each row
    starts = frames[first] / FRAMES_PER_S
    return np.append(starts, n_frames / FRAMES_PER_S)


class Aligner:
    """The checkpoint in PyTorch (eager attention, so attention weights are returned). It costs about
    half a transcription per chunk on CPU, so the ingress asks for it only when times are wanted."""

    def __init__(self, model_dir: str, device: str | None = None, window_s: float | None = None) -> None:
        import torch
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        generation = json.loads((Path(model_dir) / "generation_config.json").read_text())
        self.heads: list[tuple[int, int]] = [(layer, head) for layer, head in generation.get("alignment_heads") or []]
        self.features = WhisperFeatureExtractor.from_pretrained(model_dir)
        # The engine's `auto` rule (precision.py): bfloat16 halves the encoder pass on a CPU that has
        # it, and times come out the same to the 20 ms frame.
        self.dtype = getattr(torch, cpu_dtype(AUTO)) if self.device == "cpu" else torch.float16
        model = WhisperForConditionalGeneration.from_pretrained(model_dir, attn_implementation="eager", dtype=self.dtype)
        # transformers decorates `to` with functools.wraps, and typeshed's wrapper type does not bind as a
        # method: mypy takes the device for `self`. The call is nn.Module.to's.
        self.model: WhisperForConditionalGeneration = model.to(self.device).eval()  # type: ignore[arg-type]
        config = self.model.config
        if window_s is not None and window_s * FRAMES_PER_S < config.max_source_positions:
            self._shorten_window(int(window_s * FRAMES_PER_S))
        # Features padded to the encoder's window, which may be shorter than the checkpoint's 30 s.
        self.window_samples = config.max_source_positions * 2 * self.features.hop_length
        if not self.heads:  # Whisper's fallback: every head of the upper half of the decoder
            layers = config.decoder_layers
            self.heads = [(layer, h) for layer in range(layers // 2, layers) for h in range(config.decoder_attention_heads)]

    def _shorten_window(self, positions: int) -> None:
        """The encoder over its first `positions` frames only, as tools/models/convert.py cuts a
        checkpoint: chunks are never longer than the engine's longest window (settings.WindowPolicy),
        and a 30 s checkpoint would pay for twice the frames on every 15 s chunk."""
        encoder = self.model.model.encoder
        table = encoder.embed_positions
        shorter = self.torch.nn.Embedding(positions, table.embedding_dim, device=table.weight.device, dtype=table.weight.dtype)
        shorter.weight.data.copy_(table.weight.data[:positions])
        shorter.requires_grad_(False)
        encoder.embed_positions = shorter
        encoder.max_source_positions = positions
        encoder.config.max_source_positions = positions  # what the encoder checks its input's length against

    def align(self, audio: np.ndarray, prompt: list[int], text_tokens: list[int], eot: int) -> list[tuple[float, float]]:
        """(start, end) in seconds from the chunk's start for each of `text_tokens`."""
        if not text_tokens:
            return []
        torch = self.torch
        mel = self.features(audio, sampling_rate=SAMPLE_RATE, max_length=self.window_samples, return_tensors="pt")
        mel = mel.input_features.to(self.device, self.dtype)
        ids = torch.tensor([prompt + text_tokens + [eot]], device=self.device)
        with torch.inference_mode():
            out = self.model(input_features=mel, decoder_input_ids=ids, output_attentions=True)
        # Row p predicts token p+1: rows from the last prompt token to the last text token.
        first = len(prompt) - 1
        attention = np.stack(
            [
                out.cross_attentions[layer][0, h, first : first + len(text_tokens) + 1].float().cpu().numpy()
                for layer, h in self.heads
            ]
        )
        n_frames = min(attention.shape[-1], int(np.ceil(audio.size / SAMPLE_RATE * FRAMES_PER_S)))
        times = token_times(attention, max(n_frames, 1))
        return [(float(times[k]), float(times[k + 1])) for k in range(len(text_tokens))]
