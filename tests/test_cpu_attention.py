"""The encoder's CPU self-attention (serve_app/engine/cpu_attention.py) computes what PyTorch's fused
attention computes, on the layout vLLM's Whisper encoder hands it; the engine's `encoder_attention`
setting reaches the model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from serve_app.engine.cpu_attention import HeadwiseAttention, use_headwise_attention
from serve_app.engine.windows import ATTENTION_KEY, hf_overrides
from serve_app.settings import EngineArgs, WindowPolicy

HEADS, HEAD_SIZE, SCALE = 6, 64, 64**-0.5


def qkv(batch: int, frames: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views into one projection's output, as vLLM splits its fused q/k/v projection."""
    generator = torch.Generator().manual_seed(batch * 1000 + frames)
    fused = (torch.randn(batch, frames, 3 * HEADS * HEAD_SIZE, generator=generator) * 2).to(dtype)
    q, k, v = fused.split(HEADS * HEAD_SIZE, dim=-1)
    return q, k, v


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    b, s, _ = q.shape
    heads = [t.reshape(b, s, HEADS, HEAD_SIZE).transpose(1, 2) for t in (q, k, v)]
    return F.scaled_dot_product_attention(*heads, scale=SCALE).transpose(1, 2).reshape(b, s, -1)


@pytest.mark.parametrize("batch, frames", [(1, 50), (3, 120)])
def test_it_is_the_fused_attention_in_float32(batch: int, frames: int) -> None:
    q, k, v = qkv(batch, frames, torch.float32)
    out = HeadwiseAttention(HEADS, HEAD_SIZE, SCALE)(q, k, v)
    assert out.shape == q.shape
    torch.testing.assert_close(out, fused_attention(q, k, v), rtol=1e-4, atol=1e-5)


def test_in_bfloat16_it_stays_within_bfloat16s_rounding_of_float32() -> None:
    q, k, v = qkv(2, 200, torch.bfloat16)
    exact = fused_attention(q.float(), k.float(), v.float())
    out = HeadwiseAttention(HEADS, HEAD_SIZE, SCALE)(q, k, v)
    assert out.dtype == torch.bfloat16
    error = (out.float() - exact).abs()
    # bf16 keeps 8 significant bits (0.4%): the outputs here are of order 1.
    assert error.mean() < 0.02 and error.max() < 0.2
    # And each head is its own: scrambling one head's values changes that head's columns only.
    v2 = v.clone()
    v2[..., :HEAD_SIZE] = torch.flip(v2[..., :HEAD_SIZE], dims=[1])
    out2 = HeadwiseAttention(HEADS, HEAD_SIZE, SCALE)(q, k, v2)
    assert not torch.equal(out2[..., :HEAD_SIZE], out[..., :HEAD_SIZE])
    assert torch.equal(out2[..., HEAD_SIZE:], out[..., HEAD_SIZE:])


def test_an_unbatched_call_keeps_its_shape() -> None:
    q, k, v = qkv(1, 40, torch.float32)
    out = HeadwiseAttention(HEADS, HEAD_SIZE, SCALE)(q[0], k[0], v[0])
    assert out.shape == q[0].shape
    torch.testing.assert_close(out, fused_attention(q, k, v)[0], rtol=1e-4, atol=1e-5)


def test_every_encoder_layer_gets_it_with_its_own_sizes() -> None:
    layers = [
        SimpleNamespace(self_attn=SimpleNamespace(attn=SimpleNamespace(num_heads=HEADS, head_size=HEAD_SIZE, scale=SCALE)))
        for _ in range(4)
    ]
    assert use_headwise_attention(SimpleNamespace(layers=layers)) == 4  # type: ignore[arg-type]
    for layer in layers:
        attention = layer.self_attn.attn
        assert isinstance(attention, HeadwiseAttention)
        assert (attention.num_heads, attention.head_size, attention.scale) == (HEADS, HEAD_SIZE, SCALE)


def test_the_engine_setting_travels_to_the_model_with_the_fitted_windows() -> None:
    policy = WindowPolicy(min_s=12, fill=0.7)
    assert hf_overrides(policy)[ATTENTION_KEY] == "headwise"  # the default
    assert hf_overrides(policy, EngineArgs(encoder_attention="fused").encoder_attention)[ATTENTION_KEY] == "fused"
    assert hf_overrides(None, "fused") == {}  # no fitted windows: vLLM's own model, its own attention
    with pytest.raises(ValidationError):
        EngineArgs(encoder_attention="flash")  # type: ignore[arg-type]
