"""The number type the engine computes in, chosen from what the hardware does natively.

bfloat16 halves the memory traffic of every layer, and a CPU with AVX-512 BF16 or AMX multiplies it
in hardware. A CPU without them (AVX2 only: most laptops, AMD before Zen 4, Intel client chips)
emulates it: on a 2-core AMD EPYC with AVX2, a (12000 x 384) x (384 x 1536) product took 11.6 s in
bfloat16 against 0.16 s in float32, and a request of the CPU default took tens of seconds. So `auto`
takes bfloat16 on a CPU only where the CPU has it, float32 otherwise; on a GPU it is vLLM's own
choice (the checkpoint's float16).
"""

from __future__ import annotations

import logging

AUTO = "auto"
CPU_NATIVE = "bfloat16"
CPU_FALLBACK = "float32"

logger = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16, or AMX tiles)."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_dtype(requested: str) -> str:
    """The dtype for a CPU: `requested` unless it is `auto`. A bfloat16 asked for on a CPU that
    emulates it is kept (the operator chose it) but logged, since it is many times slower."""
    native = cpu_has_native_bf16()
    if requested == AUTO:
        return CPU_NATIVE if native else CPU_FALLBACK
    if requested == CPU_NATIVE and not native:
        logger.warning("dtype bfloat16 on a CPU without AVX-512 BF16 or AMX: emulated, many times slower than float32")
    return requested


def engine_dtype(requested: str, on_cpu: bool) -> str:
    """What vLLM is given: resolved here on a CPU, passed through (`auto` included) on a GPU."""
    return cpu_dtype(requested) if on_cpu else requested


def use_int8_linear(requested: str, on_cpu: bool) -> bool:
    """Whether the decoder's linear layers run in int8 (int8_linear.py): asked for, on a CPU whose
    torch has fbgemm. Never on a GPU: the kernels are CPU ones."""
    from .int8_linear import fbgemm_available

    if requested != "int8" or not on_cpu:
        return False
    if not fbgemm_available():
        logger.warning("linear: int8 needs PyTorch's fbgemm, which this torch lacks: linear layers stay float")
        return False
    return True
