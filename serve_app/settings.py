"""Typed configuration. Serve YAML `args` are validated by `AppArgs` in the app builder; secrets and
the run command's overrides come from the environment (`Environment`)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

ROOT = Path(__file__).resolve().parent.parent


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineArgs(_Strict):
    model: str = Field("models/whisper-tiny.en", description="HF Whisper folder (relative to the repo) or hub id")
    served_model_name: str | None = Field(None, description="name reported in responses; default: folder name")
    dtype: str = Field("bfloat16", description="vLLM dtype: bfloat16 on CPU, float16/bfloat16 on GPU")
    max_num_seqs: int = Field(16, ge=1, description="how many chunks vLLM decodes in one batch")
    max_tokens: int = Field(224, ge=1, le=448, description="decoded tokens per 30 s chunk (Whisper's own cap)")
    enforce_eager: bool = Field(False, description="skip graph compilation: faster start, same batch speed on CPU")
    cpu_kvcache_space_gib: int | None = Field(1, description="VLLM_CPU_KVCACHE_SPACE; None on GPU")
    cpu_omp_threads_bind: str | None = Field("auto", description="VLLM_CPU_OMP_THREADS_BIND: 'auto', '0-1', ...")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)

    def model_path(self) -> str:
        path = Path(self.model)
        if path.is_absolute():
            return self.model
        local = ROOT / path
        return str(local) if local.exists() or self.model.startswith(("models/", "./")) else self.model

    def model_name(self) -> str:
        return self.served_model_name or Path(self.model).name


class IngressArgs(_Strict):
    max_body_mb: float = Field(100, gt=0, description="largest accepted upload or fetched file (413 beyond)")
    max_duration_s: float = Field(7200, gt=0, description="longest accepted audio (413 beyond)")
    url_timeout_s: float = Field(30, gt=0, description="connect/read timeout for audio URLs")
    url_max_redirects: int = Field(5, ge=0)
    url_allowlist: list[str] = Field(
        default_factory=list,
        description="CIDRs or hostnames that audio URLs may reach although not public (internal storage)",
    )
    license_keys_file: str | None = Field(None, description="file of sha256:<hex> key hashes, one per line")
    engine_timeout_s: float = Field(600, gt=0, description="longest wait for one chunk's transcription")


class AppArgs(_Strict):
    engine: EngineArgs = Field(default_factory=EngineArgs)
    ingress: IngressArgs = Field(default_factory=IngressArgs)

    @field_validator("engine", "ingress", mode="before")
    @classmethod
    def _none_is_default(cls, value: object) -> object:
        return {} if value is None else value


class Environment(BaseModel):
    """Overrides the run command and operators set without editing YAML."""

    url_allowlist: list[str] = []
    license_keys: list[str] = []  # plaintext keys, hashed at once and never logged
    license_keys_file: str | None = None

    @classmethod
    def read(cls, env: dict[str, str] | None = None) -> "Environment":
        env = dict(os.environ) if env is None else env

        def items(name: str) -> list[str]:
            return [v.strip() for v in env.get(name, "").split(",") if v.strip()]

        return cls(
            url_allowlist=items("STT_URL_ALLOWLIST"),
            license_keys=items("STT_LICENSE_KEYS"),
            license_keys_file=env.get("STT_LICENSE_KEYS_FILE") or None,
        )
