"""Typed configuration. Serve YAML `args` are validated by `AppArgs` in the app builder; secrets and
the run command's overrides come from the environment (`Environment`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowPolicy(_Strict):
    """Encoder windows fitted to each chunk (serve_app/engine/windows.py): the smallest whole-second
    window the audio fills to at most `fill`, never below `min_s`, never above `max_s` or the
    checkpoint's; and the checkpoint's whole window for audio shorter than `full_under_s`."""

    min_s: int = Field(
        12, ge=1, le=30, description="shortest window: tiny.en loops under 10 s (its live streams, at times, under 15 s)"
    )
    fill: float = Field(0.7, gt=0.0, le=1.0, description="largest share of its window a chunk may take")
    max_s: int | None = Field(
        None,
        ge=1,
        le=30,
        description="longest fitted window, and so the longest chunk a file is cut into; None: the checkpoint's",
    )
    full_under_s: float = Field(
        0.0,
        ge=0.0,
        le=30.0,
        description="audio shorter than this takes the checkpoint's whole window: a clip of a few seconds is "
        "decoded most accurately in the 30 s window Whisper was trained on (docs/accuracy/windows.md)",
    )
    live_s: int | None = Field(
        None,
        ge=1,
        le=30,
        description="the window a live utterance (final or interim) shorter than it takes; None: fitted as a "
        "file's chunk. tiny.en's live utterances looped at times in 12 s windows, or came back with words changed",
    )

    @model_validator(mode="after")
    def _live_window_is_a_fitted_one(self) -> WindowPolicy:
        if self.live_s is not None and not (
            self.min_s <= self.live_s <= (self.max_s or 30) and self.live_s * self.fill >= self.full_under_s
        ):
            raise ValueError("live_s must lie between min_s and max_s, and fill it past full_under_s")
        return self

    def live_pad_s(self) -> float:
        """How long a live utterance is made with trailing silence so that its window is `live_s`
        (what the window's own padding adds anyway); 0: no padding."""
        return self.live_s * self.fill if self.live_s is not None else 0.0

    def longest_s(self, max_s: float) -> float:
        """The longest window for audio of `full_under_s` or more, on a checkpoint whose window is `max_s`."""
        return float(min(self.max_s or max_s, max_s))

    def window_s(self, audio_s: float, max_s: float) -> float:
        """The window for `audio_s` seconds of audio, on a checkpoint whose window is `max_s`."""
        if audio_s < self.full_under_s:
            return float(max_s)
        return float(min(max(self.min_s, math.ceil(audio_s / self.fill - 1e-9)), self.longest_s(max_s)))


class EngineArgs(_Strict):
    model: str = Field("models/whisper-tiny.en", description="HF Whisper folder (relative to the repo) or hub id")
    served_model_name: str | None = Field(None, description="name reported in responses; default: folder name")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="vLLM dtype; auto: on CPU bfloat16 where the CPU has it natively (AVX-512 BF16, AMX), else "
        "float32 (serve_app/engine/precision.py); on GPU the checkpoint's",
    )
    window: WindowPolicy | None = Field(
        None,
        description="fit the encoder window to each chunk (serve_app/engine/windows.py); None: every chunk pays for "
        "the checkpoint's whole window",
    )
    encoder_attention: Literal["headwise", "fused"] = Field(
        "headwise",
        description="with `window`, on CPU in bfloat16: the encoder's self-attention one head at a time in oneDNN's "
        "bf16 matmuls (serve_app/engine/cpu_attention.py), or PyTorch's fused kernel as vLLM runs it; "
        "`python -m tools.bench.attention` measures both on your CPU. GPUs always run vLLM's",
    )
    linear: Literal["float", "int8"] = Field(
        "float",
        description="on CPU, the decoder's linear layers and vocabulary projection in the engine's dtype, or in int8 "
        "(fbgemm, serve_app/engine/int8_linear.py): about 1.06x faster in float32 on AVX2, some words differ. Needs `window`",
    )
    max_num_seqs: int = Field(16, ge=1, description="how many chunks vLLM decodes in one batch")
    max_tokens: int = Field(224, ge=1, le=448, description="decoded tokens per 30 s chunk (Whisper's own cap)")
    enforce_eager: bool = Field(False, description="skip graph compilation: faster start, same batch speed on CPU")
    kv_cache_mb: int | None = Field(
        512, ge=16, description="KV cache size; None: vLLM's default (a share of the device's memory)"
    )
    cpu_omp_threads_bind: str | None = Field("auto", description="VLLM_CPU_OMP_THREADS_BIND: 'auto', '0-1', ...")
    cpu_worker_niceness: int | None = Field(
        None, ge=0, le=19, description="nice vLLM's worker threads to this, so the ingress feeding it runs first"
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    engine_metrics: bool = Field(
        True, description="export vLLM's own metrics (batch, queue depth and time) through Ray's metrics"
    )
    speaker_model: str = Field(
        "models/speaker/resemblyzer.pt",
        description="speaker encoder for diarization (tools/models/prepare.py, run by scripts/setup.sh)",
    )

    def model_path(self) -> str:
        path = Path(self.model)
        if path.is_absolute():
            return self.model
        local = ROOT / path
        return str(local) if local.exists() or self.model.startswith(("models/", "./")) else self.model

    def model_name(self) -> str:
        return self.served_model_name or Path(self.model).name


class StreamArgs(_Strict):
    endpointing_ms: int = Field(
        300,
        ge=100,
        le=60_000,
        description="pause that ends an utterance when a stream does not say (`endpointing`, `eou_timeout_ms`)",
    )
    min_final_speech_s: float = Field(
        3.0,
        ge=0,
        description="an utterance with less speech than this is not final at an endpointing pause but goes on with "
        "what follows (Whisper decodes a few words alone badly), unless the pause reaches merge_pause_ms",
    )
    merge_pause_ms: int = Field(
        1500, ge=100, le=60_000, description="a pause this long ends even a short utterance (see min_final_speech_s)"
    )
    interim_every_s: float = Field(1.0, gt=0, description="new speech in an utterance before its next interim result")
    idle_timeout_s: float = Field(10, gt=0, description="a stream without audio or KeepAlive for this long is closed")
    decodes_in_flight: int = Field(4, ge=1, description="finals of one stream decoding at once; a faster sender waits")
    interims_in_flight: int = Field(
        2, ge=0, description="interim decodes at once across an ingress replica's streams (optional work; raise on GPUs)"
    )
    max_frame_kb: int = Field(
        1024, ge=16, le=16384, description="largest WebSocket message; a larger one ends the stream (close 1009, FILE_TOO_LARGE)"
    )
    buffered_s: float = Field(
        10, ge=1, le=600, description="decoded audio a stream may hold for its segmenter; beyond, the server stops reading it"
    )
    buffered_kb: int = Field(
        1024,
        ge=64,
        le=65536,
        description="container (webm/ogg) bytes a stream may hold ahead of FFmpeg, and FFmpeg past its last audio",
    )
    max_duration_s: float = Field(
        10800, gt=0, description="longest stream, in audio and in time: then its finals, FILE_TOO_LARGE and close 1008"
    )


class CallbackArgs(_Strict):
    pending_per_replica: int = Field(
        256, ge=1, description="callback requests transcribing at once in one ingress replica (503 + retry_after beyond)"
    )
    pending_per_key: int = Field(
        16, ge=1, description="a key's callbacks not yet delivered, across replicas (429 RATE_LIMIT_EXCEEDED beyond)"
    )
    attempts: int = Field(5, ge=1, description="deliveries tried before a result is dropped")
    backoff_s: float = Field(1.0, gt=0, description="wait before the second attempt; it doubles after each")
    attempt_timeout_s: float = Field(
        10, gt=0, description="one deadline per attempt: resolve, connect, send and the reply's status line"
    )
    max_result_mb: float = Field(
        64,
        gt=0,
        description="largest stored result (2 h of mono audio with every option is under 40); beyond, RESULT_TOO_LARGE is sent",
    )
    lease_s: float = Field(
        60, gt=0, description="a replica that dies while transcribing: its callbacks are reported failed after this"
    )
    poll_s: float = Field(1.0, gt=0, description="how often each ingress replica looks for callbacks due")
    deliveries_in_flight: int = Field(4, ge=1, description="deliveries one ingress replica makes at once")


class IngressArgs(_Strict):
    max_body_mb: float = Field(100, gt=0, description="largest accepted upload or fetched file (413 beyond)")
    max_duration_s: float = Field(7200, gt=0, description="longest accepted audio (413 beyond)")
    body_idle_s: float = Field(15, gt=0, description="a request body that sends no byte for this long is refused (408)")
    body_min_bytes_per_s: int = Field(
        8000, ge=0, description="once body_idle_s has passed, a body arriving slower than this on average is refused (408)"
    )
    url_timeout_s: float = Field(30, gt=0, description="deadline for a whole audio URL fetch: connect, redirects, headers, body")
    url_max_redirects: int = Field(5, ge=0)
    url_fetch_workers: int = Field(
        8,
        ge=1,
        description="audio URL downloads at once per ingress replica, on their own threads; more wait (within url_timeout_s)",
    )
    word_timestamps: bool = Field(
        False, description="align word times with the model unless a request says (costs ~half a transcription)"
    )
    url_allowlist: list[str] = Field(
        default_factory=list,
        description="CIDRs or hostnames that audio URLs may reach although not public (internal storage)",
    )
    engine_timeout_s: float = Field(600, gt=0, description="longest wait for one chunk's transcription")
    condition_on_previous_text: bool = Field(
        False,
        description="decode each chunk of a long file, and each utterance of a stream, with the text before it as "
        "Whisper's context (the chunks of one file then go to the engine one at a time); off by default: measured, "
        "it made long files worse (docs/accuracy/sets.md)",
    )
    chunks_in_flight: int = Field(
        16,
        ge=1,
        description="without condition_on_previous_text: chunks of one request sent to the engine at once "
        "(a long file cannot fill its queue)",
    )
    stream: StreamArgs = Field(default_factory=StreamArgs, description="live transcription over WebSocket")
    callbacks: CallbackArgs = Field(
        default_factory=CallbackArgs,
        description="asynchronous results (`callback`): bounds and delivery, kept in the usage store's backend",
    )
    demo_page: bool = Field(
        False,
        description="serve GET /demo, a page that streams a browser's microphone to WS /v1/listen (on in configs/cpu.yaml)",
    )
    auth_failures_per_minute: int | None = Field(
        20,
        ge=1,
        description="failed authentications from one client address in a minute before its requests "
        "are refused with 429 until the minute ends (per ingress replica; None: off, e.g. behind a proxy that hides addresses)",
    )


class LicenseArgs(_Strict):
    public_keys_file: str | None = Field(
        None, description="issuer public keys, one base64 Ed25519 key per line (env STT_LICENSE_PUBLIC_KEYS)"
    )
    revocations_file: str | None = Field(
        None, description="revoked key ids, one per line, re-read when it changes (env STT_LICENSE_REVOCATIONS)"
    )
    revocations_check_s: float = Field(1.0, gt=0, description="how often the revocation file's mtime is checked")
    clock_skew_s: float = Field(
        300, ge=0, description="how far in the future a key's issued_at may be (clocks differ); beyond it: 'not yet valid'"
    )
    environments: list[Literal["dev", "staging", "prod"]] | None = Field(
        None, description="accept only keys issued for these environments (None: any), e.g. [prod] in production"
    )


class UsageArgs(_Strict):
    store: Literal["sqlite", "redis"] = Field(
        "sqlite", description="sqlite: one machine; redis: multi-node (env STT_USAGE_STORE)"
    )
    sqlite_path: str = Field("var/usage.sqlite3", description="embedded store file, relative to the repo (env STT_USAGE_DB)")
    concurrency_lease_s: float = Field(60, gt=0, description="a dead replica's concurrency slots free themselves after this")


class AppArgs(_Strict):
    engine: EngineArgs = Field(default_factory=EngineArgs)
    ingress: IngressArgs = Field(default_factory=IngressArgs)
    license: LicenseArgs = Field(default_factory=LicenseArgs)
    usage: UsageArgs = Field(default_factory=UsageArgs)

    @field_validator("engine", "ingress", "license", "usage", mode="before")
    @classmethod
    def _none_is_default(cls, value: object) -> object:
        return {} if value is None else value


class Environment(BaseSettings):
    """What comes from the environment (`STT_*`): secrets, which live only here, and the overrides
    the run command and operators set without editing YAML. A value here wins over the YAML's."""

    model_config = SettingsConfigDict(env_prefix="STT_", extra="ignore", frozen=True)

    url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="STT_URL_ALLOWLIST: comma-separated CIDRs or hostnames that audio URLs may reach although not public",
    )
    license_public_keys: str | None = Field(None, description="STT_LICENSE_PUBLIC_KEYS: file of issuer public keys")
    license_revocations: str | None = Field(None, description="STT_LICENSE_REVOCATIONS: file of revoked key ids")
    usage_store: Literal["sqlite", "redis"] | None = Field(None, description="STT_USAGE_STORE: sqlite or redis")
    usage_db: str | None = Field(None, description="STT_USAGE_DB: the embedded store's file")
    redis_url: SecretStr | None = Field(None, description="STT_REDIS_URL: Redis URL with its password, for the redis store")

    @field_validator("url_allowlist", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("license_public_keys", "license_revocations", "usage_store", "usage_db", "redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


def repo_path(path: str) -> Path:
    """Config paths are relative to the repository, whatever the replica's working directory."""
    return Path(path) if Path(path).is_absolute() else ROOT / path
