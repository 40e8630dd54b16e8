"""The decoder's linear layers in int8 (serve_app/engine/int8_linear.py): what each computes against
float32, which layers take it, and when the engine's `linear` setting turns it on. The real model
runs it in tests/test_languages.py."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import torch

from serve_app.engine import int8_linear as int8
from serve_app.engine import precision
from serve_app.engine.windows import INT8_KEY, hf_overrides
from serve_app.settings import EngineArgs, WindowPolicy

pytestmark = pytest.mark.skipif(not int8.fbgemm_available(), reason="this torch has no fbgemm")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    # Every test draws its weights and inputs at random and bounds a rounding error: the same draw
    # every run, so that a bound is never crossed by a rare draw.
    torch.manual_seed(0)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("shape", [(16, 384), (2, 750, 384)])  # decoder rows; an encoder's batch of frames
@pytest.mark.parametrize("with_bias", [True, False])
def test_it_is_the_float_product_within_int8_rounding(shape: tuple[int, ...], with_bias: bool) -> None:
    weight = torch.randn(1536, 384) * 0.05
    bias = torch.randn(1536) if with_bias else None
    x = torch.randn(*shape)
    got = int8.int8_linear(weight)(x, weight, bias)
    want = torch.nn.functional.linear(x, weight, bias)
    assert got.shape == want.shape
    assert _relative_error(got, want) < 0.04  # 7-bit activations per call, 8-bit weights per row: ~2%
    # ... and not by chance: another weight gives another product.
    assert _relative_error(int8.int8_linear(weight.flip(0))(x, weight, bias), want) > 0.5


def test_each_weight_row_gets_its_own_scale() -> None:
    # A row 1000x smaller than its neighbours keeps its precision; a row of zeros stays zeros.
    weight = torch.randn(3, 64)
    weight[1] *= 1e-3
    weight[2] = 0
    x = torch.randn(8, 64)
    got = int8.int8_linear(weight)(x, weight, None)
    want = x @ weight.t()
    assert _relative_error(got[:, 1], want[:, 1]) < 0.04
    assert torch.equal(got[:, 2], torch.zeros(8))


def test_each_activation_row_gets_its_own_scale() -> None:
    # A frame 10^6 times quieter than the one beside it in the same call keeps its precision (with one
    # scale per call it would round to zero).
    weight = torch.randn(32, 64)
    x = torch.randn(2, 64)
    x[0] *= 1e3
    x[1] *= 1e-3
    got = int8.int8_linear(weight)(x, weight, None)
    want = x @ weight.t()
    assert _relative_error(got[1], want[1]) < 0.04
    assert _relative_error(got[0], want[0]) < 0.04


def test_a_bfloat16_engine_gets_bfloat16_back() -> None:
    weight, x = torch.randn(8, 16), torch.randn(4, 16)
    got = int8.int8_linear(weight)(x.bfloat16(), weight, torch.zeros(8, dtype=torch.bfloat16))
    assert got.dtype == torch.bfloat16
    assert _relative_error(got.float(), x @ weight.t()) < 0.04


def test_it_leaves_the_weight_it_was_given_alone() -> None:
    weight = torch.randn(32, 16)
    before = weight.clone()
    int8.int8_linear(weight)
    assert torch.equal(weight, before)


def test_it_does_not_keep_the_float_weight_alive() -> None:
    """The int8 copy replaces the float one: once the layer drops its weight, its memory is freed."""
    weight = torch.randn(600, 16)
    layer = int8.int8_linear(weight)
    memory = weakref.ref(weight.untyped_storage())
    del weight
    gc.collect()
    assert memory() is None, "the layer still holds the float weight"
    rows = int8.CHUNK_ROWS + 3  # and the sliced path works without it
    assert layer(torch.randn(rows, 16), torch.empty(0), None).shape == (rows, 600)


@pytest.fixture
def one_process_group(tmp_path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """vLLM's layers ask their tensor-parallel group for their shard: a group of this process alone,
    met through a file (no socket)."""
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.distributed import parallel_state

    with set_current_vllm_config(VllmConfig()):
        parallel_state.init_distributed_environment(1, 0, f"file://{tmp_path}/group", 0, backend="gloo")
        parallel_state.initialize_model_parallel(1, 1)
        try:
            yield
        finally:
            parallel_state.destroy_model_parallel()
            parallel_state.destroy_distributed_environment()


@pytest.mark.usefixtures("one_process_group")
def test_every_linear_layer_and_the_vocabulary_projection_take_it() -> None:
    from vllm.model_executor.layers.linear import ReplicatedLinear, UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = VocabParallelEmbedding(100, 32)
            self.fc = ReplicatedLinear(32, 48, bias=True)
            self.norm = torch.nn.LayerNorm(32)
            self.head = ParallelLMHead(100, 32).tie_weights(self.embed)

    model = Tiny()
    assert isinstance(model.fc.quant_method, UnquantizedLinearMethod)
    assert int8.use_int8_linear_layers(model) == 2
    # vLLM allocates parameters with torch.empty: whatever memory held (even inf or NaN) until the
    # loader fills them, so the test fills every one it reads.
    torch.nn.init.normal_(model.fc.weight)
    torch.nn.init.normal_(model.fc.bias)
    torch.nn.init.normal_(model.embed.weight)
    fc_weight, table = model.fc.weight.detach().clone(), model.embed.weight.detach().clone()
    for module in (model.fc, model.head, model.embed):  # what vLLM's loader does once the weights are in
        module.quant_method.process_weights_after_loading(module)

    x = torch.randn(4, 32)
    out, _ = model.fc(x)
    assert _relative_error(out, torch.nn.functional.linear(x, fc_weight, model.fc.bias)) < 0.04
    assert model.fc.weight.numel() == 0  # its float copy is freed
    logits = model.head.quant_method.apply(model.head, x)
    assert _relative_error(logits, x @ table.t()) < 0.04
    # The tied embedding still looks tokens up in float32.
    ids = torch.tensor([3, 7])
    assert torch.equal(model.embed(ids), table[ids])


@pytest.mark.parametrize(
    ("setting", "on_cpu", "expected"),
    [("int8", True, True), ("float", True, False), ("int8", False, False)],  # GPUs never: the kernels are CPU ones
)
def test_the_setting(setting: str, on_cpu: bool, expected: bool) -> None:
    assert precision.use_int8_linear(setting, on_cpu) is expected


def test_int8_without_fbgemm_stays_float_and_says_so(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(int8, "fbgemm_available", lambda: False)
    assert precision.use_int8_linear("int8", on_cpu=True) is False
    assert "fbgemm" in caplog.text


def test_the_setting_defaults_to_float_and_travels_with_the_fitted_windows() -> None:
    assert EngineArgs().linear == "float"
    with pytest.raises(ValueError):
        EngineArgs(linear="auto")  # type: ignore[arg-type]
    assert hf_overrides(WindowPolicy(), int8_linear=True)[INT8_KEY] is True
    assert hf_overrides(WindowPolicy())[INT8_KEY] is False
