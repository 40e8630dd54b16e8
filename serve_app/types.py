"""What crosses between the ingress and the engine deployments: arrays and options go in, these come
back. Plain frozen dataclasses with no heavy imports, so the ingress side (which never imports the
engine package, where torch and vLLM live) can use them."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16000  # audio crosses as 16 kHz mono float32 arrays


@dataclass(frozen=True)
class Token:
    text: str
    logprob: float
    start: float | None  # seconds from the chunk's start, from cross-attention alignment (if asked for)
    end: float | None


@dataclass(frozen=True)
class ChunkTranscript:
    text: str
    tokens: list[Token]
    aligned: bool = False


@dataclass(frozen=True)
class EngineInfo:
    model: str
    multilingual: bool
    languages: list[str]
    window_s: float  # the longest audio one decode takes: the service chunks to this


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: int
