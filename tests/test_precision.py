"""The engine's dtype follows the hardware (serve_app/engine/precision.py): bfloat16 only on a CPU that
multiplies it natively, float32 on one that would emulate it, vLLM's choice on a GPU; an explicit
setting is kept."""

from __future__ import annotations

import logging

import pytest
import torch
from pydantic import ValidationError

from serve_app.engine import precision
from serve_app.settings import EngineArgs


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Sets which bf16 instructions the 'CPU' reports: cpu(avx512_bf16=..., amx=...)."""

    def set_features(avx512_bf16: bool = False, amx: bool = False) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)

    return set_features


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(True, False, "bfloat16"), (False, True, "bfloat16"), (False, False, "float32")]
)
def test_auto_on_cpu_is_bfloat16_only_where_native(cpu, avx512_bf16: bool, amx: bool, expected: str) -> None:  # type: ignore[no-untyped-def]
    cpu(avx512_bf16=avx512_bf16, amx=amx)
    assert precision.cpu_has_native_bf16() is (expected == "bfloat16")
    assert precision.engine_dtype("auto", on_cpu=True) == expected


def test_auto_on_gpu_is_left_to_vllm(cpu) -> None:  # type: ignore[no-untyped-def]
    cpu(avx512_bf16=False)
    assert precision.engine_dtype("auto", on_cpu=False) == "auto"
    assert precision.engine_dtype("float16", on_cpu=False) == "float16"


def test_explicit_bfloat16_on_an_emulating_cpu_is_kept_and_warned(cpu, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    cpu(avx512_bf16=False)
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        assert precision.engine_dtype("bfloat16", on_cpu=True) == "bfloat16"
    assert "emulated" in caplog.text
    caplog.clear()
    cpu(avx512_bf16=True)
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        assert precision.engine_dtype("bfloat16", on_cpu=True) == "bfloat16"
        assert precision.engine_dtype("float32", on_cpu=True) == "float32"
    assert caplog.text == ""


def test_the_setting_defaults_to_auto_and_rejects_other_types() -> None:
    assert EngineArgs().dtype == "auto"
    assert EngineArgs(dtype="float32").dtype == "float32"
    with pytest.raises(ValidationError):
        EngineArgs(dtype="int8")  # type: ignore[arg-type]
