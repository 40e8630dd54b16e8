"""The Whisper encoder's self-attention on CPU, one head at a time in plain matrix products.

vLLM's encoder attention on CPU is PyTorch's fused `scaled_dot_product_attention`. In bfloat16 its
CPU kernel does its matrix products through MKL's bf16 x bf16 -> fp32 GEMM, and on this project's
CPUs (AMD, with AVX-512 BF16) a profile of vLLM's worker shows MKL's fp32 kernels running under it:
the encoder's attention took half of the encoder's time. `torch.mm` in bfloat16 runs oneDNN's bf16
kernels, which use the CPU's bf16 instructions: 2.2-3.0x faster on the encoder's shapes
(`python -m tools.bench.attention`). Per head and sequence, the score matrix (frames x frames: 1.1 MB
for a 15 s window, 4.5 MB for 30 s) stays in cache, where one product over every head would not.

The scores come out of the product in bfloat16 before the softmax, as Hugging Face's eager attention
computes them in bf16; the fused kernel keeps them in fp32. The words are the same (docs/benchmarks.md,
"The encoder's attention on CPU"). Whisper's encoder attends to every frame, so there is no mask.
"""

from __future__ import annotations

import torch


class HeadwiseAttention(torch.nn.Module):
    """Stands in for vLLM's `WhisperEncoderAttention`: the same call, on (batch, frames, heads x
    head size) or (frames, heads x head size) tensors."""

    def __init__(self, num_heads: int, head_size: int, scale: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = scale

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        out = torch.empty(query.shape, dtype=query.dtype, device=query.device)
        for b in range(query.shape[0]):
            for h in range(self.num_heads):
                cols = slice(h * self.head_size, (h + 1) * self.head_size)
                # The scale on the queries (frames x 64), not on the scores (frames x frames).
                weights = torch.mm(query[b, :, cols] * self.scale, key[b, :, cols].t()).softmax(dim=-1)
                out[b, :, cols] = torch.mm(weights, value[b, :, cols])
        return out.squeeze(0) if unbatched else out


def use_headwise_attention(encoder: torch.nn.Module) -> int:
    """Swap every encoder layer's self-attention for `HeadwiseAttention`; returns how many."""
    swapped = 0
    for layer in getattr(encoder, "layers", []):
        attention = layer.self_attn.attn
        layer.self_attn.attn = HeadwiseAttention(attention.num_heads, attention.head_size, attention.scale)
        swapped += 1
    return swapped
