"""The decoder's linear layers in int8 on a CPU that computes in float32 (PyTorch's fbgemm kernels).

A CPU without native bfloat16 (AVX2 only) runs the engine in float32, and there every linear layer
reads four bytes per weight. A decoding step is a product of a few rows (one per sequence in the
batch) by each weight matrix, so it is bound by reading the weights: the vocabulary projection alone
reads 80 MB per step for tiny.en. fbgemm's dynamic int8 linear (weights int8 per output row,
activations quantized per call) reads a quarter of that and multiplies in AVX2's int8 instructions.
Measured on a 2-core AVX2 EPYC (`python -m tools.bench.linear`; docs/benchmarks.md, "int8 linear
layers"): 16 rows by the vocabulary 16.4 ms in float32 against 2.3 ms, by the decoder's other
layers 1.2-1.4x faster. faster-whisper's int8 quantizes its linear layers too.

Opt-in (`engine.linear: int8`), the decoder's linear layers and the vocabulary projection only
(`fitted_model.py`); the encoder, the embedding lookup, attention and norms stay in the engine's
dtype. On a 2-core AVX2 EPYC in float32 it made bare vLLM about 1.06x faster, and some words differ:
- with the encoder's layers in int8 too (1.2-1.3x), telephone audio suffered: a phone call opened
  with "Hello." 14-16 times instead of a few, and the JFK clip through a Twilio stream (8 kHz
  mu-law) lost the "s" of "Americans";
- with the decoder's alone, the streaming benchmark's smoke run (12 s streams cut mid-sentence, two
  at a time) read 0.55 WER against float32's 0.43.
Word error rates over the recorded sets stayed within float32's run-to-run noise either way
(docs/benchmarks.md, "int8 linear layers"), so it is there for operators who want the speed.
PyTorch marks its quantized tensor type deprecated (it still ships, in the torch vLLM pins); without
fbgemm (an ARM build, a future torch) `int8` keeps float layers and logs why (`precision.use_int8_linear`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import cast

import torch

# Rows per fbgemm call: a large call (the decoder's first step over a batch's prompts, thousands of
# rows with previous text) is cut so that each slice's scaling passes stay in cache. Whole, on 12000
# rows of 1536, those passes went to memory and cost more than the int8 product saved (110 ms
# against float32's 83; in slices of 512: 56-64 ms).
CHUNK_ROWS = 512

Linear = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def fbgemm_available() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized, "linear_dynamic")


def int8_linear(weight: torch.Tensor) -> Linear:
    """A `layer.cpu_linear` (vLLM's CPU GEMM hook: x, weight, bias) that multiplies `x` by `weight`
    quantized to int8, one scale per output row."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    zero = torch.zeros(w.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # the deprecation above, once per layer
        warnings.filterwarnings("ignore", message=".*quantize_per_channel.*deprecated")
        quantized = torch.quantize_per_channel(w, scale.double(), zero, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(quantized, None)
    outputs = w.shape[0]  # the closures below keep this, not `w`: the float weights can be freed
    del w, quantized

    def product(rows: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # fbgemm quantizes the activations with one scale per call. Dividing each row (a frame, a
        # token) by its largest value first, and multiplying its products back, gives each row its
        # own scale, as faster-whisper's int8 does: with one scale per call (and every layer int8)
        # Whisper base made 15% more errors in five languages, per row as many as float32
        # (docs/benchmarks.md).
        scale = rows.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-12)
        # reduce_range: 7-bit activations, so AVX2's u8 x s8 pair sums cannot saturate.
        y = torch.ops.quantized.linear_dynamic(rows / scale, packed, True).mul_(scale)
        return y if bias is None else y.add_(bias)

    def linear(x: torch.Tensor, _weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        flat = x.float().reshape(-1, x.shape[-1])
        if flat.shape[0] <= CHUNK_ROWS:
            out = product(flat, bias)
        else:
            out = torch.empty(flat.shape[0], outputs)
            for start in range(0, flat.shape[0], CHUNK_ROWS):
                out[start : start + CHUNK_ROWS] = product(flat[start : start + CHUNK_ROWS], bias)
        # fbgemm's product is float32; a bfloat16 engine (`linear: int8`) gets its own type back.
        return out.reshape(*x.shape[:-1], outputs).to(x.dtype)

    return linear


def use_int8_linear_layers(*parts: torch.nn.Module) -> int:
    """Before vLLM loads the weights: every float linear layer in `parts`, and a vocabulary
    projection among them, computes through `int8_linear` once loaded. Returns how many layers."""
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, UnquantizedEmbeddingMethod

    # vLLM's CPU path multiplies through `layer.cpu_linear`, which its own methods set at this step.
    class Int8LinearMethod(UnquantizedLinearMethod):
        def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
            layer.cpu_linear = int8_linear(cast(torch.Tensor, layer.weight))  # type: ignore[assignment]
            layer.weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)  # the float copy is not read again

    class Int8ProjectionMethod(UnquantizedEmbeddingMethod):
        # The projection's weight is the token embedding's (tied), which the lookup still reads in float.
        def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
            layer.cpu_linear = int8_linear(cast(torch.Tensor, layer.weight))  # type: ignore[assignment]

    swapped = 0
    for module in (m for part in parts for m in part.modules()):
        method = getattr(module, "quant_method", None)
        if type(method) is UnquantizedLinearMethod:
            module.quant_method = Int8LinearMethod()  # type: ignore[assignment]  # torch types attributes as tensors
        elif isinstance(module, ParallelLMHead) and type(method) is UnquantizedEmbeddingMethod:
            module.quant_method = Int8ProjectionMethod()  # type: ignore[assignment]
        else:
            continue
        swapped += 1
    return swapped
