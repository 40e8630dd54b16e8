"""Fitted encoder windows: the policy (serve_app/settings.py), and vLLM's processor padding each
audio to its window with as many encoder placeholders (serve_app/engine/fitted_model.py)."""

from __future__ import annotations

from importlib import import_module

import numpy as np
import pytest
import tomllib
from pydantic import ValidationError

from serve_app.engine.windows import hf_overrides
from serve_app.settings import ROOT, EngineArgs, WindowPolicy

POLICY = WindowPolicy(min_s=10, fill=0.7)


@pytest.mark.parametrize(
    "audio_s, max_s, window_s",
    [
        (0.5, 15, 10),  # never below min_s
        (7.0, 15, 10),  # 7 s fill 10 s to 0.7 exactly
        (7.1, 15, 11),  # then the next whole second
        (10.0, 15, 15),
        (14.9, 15, 15),  # never above the checkpoint's window
        (20.0, 30, 29),
    ],
)
def test_the_window_is_the_smallest_whole_second_the_audio_fills_to_fill(audio_s: float, max_s: float, window_s: float) -> None:
    assert POLICY.window_s(audio_s, max_s) == window_s


@pytest.mark.parametrize("bad", [{"fill": 0}, {"fill": 1.5}, {"min_s": 0}, {"min_s": 10, "pad": 1}])
def test_a_bad_policy_is_refused_when_the_config_loads(bad: dict) -> None:
    with pytest.raises(ValidationError):
        EngineArgs(window=bad)  # type: ignore[arg-type]


def test_the_plugin_entry_point_names_the_registration_hook() -> None:
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["vllm.general_plugins"]
    module, _, name = entry["fitted_window"].partition(":")
    assert callable(getattr(import_module(module), name))


def test_vllms_processor_pads_each_audio_to_its_fitted_window() -> None:
    """The real processor vLLM's front end runs, on the CPU default's checkpoint: a 3 s and a 9 s audio
    get 10 and 13 s of features and 500 and 650 encoder placeholders; 14 s gets the whole 15 s."""
    pytest.importorskip("vllm")
    model = ROOT / "models" / "whisper-tiny.en-15s"
    if not (model / "config.json").exists():
        pytest.skip("models/whisper-tiny.en-15s not prepared (scripts/setup.sh)")
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.processing import ProcessorInputs, TimingContext

    from serve_app.engine.windows import register

    register()
    config = ModelConfig(str(model), hf_overrides=hf_overrides(POLICY), max_model_len=448)
    processor = MULTIMODAL_REGISTRY.create_processor(config)
    for seconds, frames in [(3, 1000), (9, 1300), (14, 1500)]:
        audio = np.zeros(16_000 * seconds, dtype=np.float32)
        items = processor.info.get_data_parser().parse_mm_data({"audio": [(audio, 16_000)]})
        out = processor.apply(ProcessorInputs([0], items), TimingContext())
        features = out["mm_kwargs"]["audio"][0]["input_features"].data
        assert features is not None and features.shape[-1] == frames
        assert len(out["encoder_prompt_token_ids"]) == frames // 2  # 50 encoder positions a second
