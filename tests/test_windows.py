"""Fitted encoder windows: the policy (serve_app/settings.py), and vLLM's processor padding each
audio to its window with as many encoder placeholders (serve_app/engine/fitted_model.py)."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace

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


SHORT_IN_FULL = WindowPolicy(min_s=12, fill=0.7, max_s=15, full_under_s=4)


@pytest.mark.parametrize(
    "audio_s, window_s",
    [
        (0.5, 30),  # a clip of a few seconds: the checkpoint's whole window
        (3.99, 30),
        (4.0, 12),  # from full_under_s on, fitted as before
        (9.0, 13),
        (14.9, 15),  # never above max_s, though the checkpoint's window is longer
    ],
)
def test_short_audio_takes_the_whole_window_and_the_rest_stays_under_max_s(audio_s: float, window_s: float) -> None:
    assert SHORT_IN_FULL.window_s(audio_s, 30) == window_s


def test_the_longest_window_is_the_chunk_length_the_engine_reports() -> None:
    assert SHORT_IN_FULL.longest_s(30) == 15  # files are cut into chunks of at most max_s
    assert SHORT_IN_FULL.longest_s(10) == 10  # never past the checkpoint's own window
    assert POLICY.longest_s(30) == 30  # no cap: the checkpoint's window


@pytest.mark.parametrize(
    "bad", [{"fill": 0}, {"fill": 1.5}, {"min_s": 0}, {"min_s": 10, "pad": 1}, {"max_s": 0}, {"full_under_s": -1}]
)
def test_a_bad_policy_is_refused_when_the_config_loads(bad: dict) -> None:
    with pytest.raises(ValidationError):
        EngineArgs(window=bad)  # type: ignore[arg-type]


def test_the_plugin_entry_point_names_the_registration_hook() -> None:
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["vllm.general_plugins"]
    module, _, name = entry["fitted_window"].partition(":")
    assert callable(getattr(import_module(module), name))


@pytest.mark.parametrize(
    "checkpoint, policy, cases",
    [
        # a 3 s and a 9 s audio get 10 and 13 s of features and 500 and 650 encoder placeholders;
        # 14 s gets the whole 15 s
        ("whisper-tiny.en-15s", POLICY, [(3, 1000), (9, 1300), (14, 1500)]),
        # the CPU default: 3 s in the whole 30 s, 9 s in 13 s, 14 s in 15 s although the checkpoint has 30
        ("whisper-tiny.en", SHORT_IN_FULL, [(3, 3000), (9, 1300), (14, 1500)]),
    ],
)
def test_vllms_processor_pads_each_audio_to_its_fitted_window(
    checkpoint: str, policy: WindowPolicy, cases: list[tuple[int, int]]
) -> None:
    """The real processor vLLM's front end runs, on a real checkpoint: features and encoder
    placeholders (50 a second) for the window the policy gives each audio."""
    pytest.importorskip("vllm")
    model = ROOT / "models" / checkpoint
    if not (model / "config.json").exists():
        pytest.skip(f"models/{checkpoint} not prepared (scripts/setup.sh --model all)")
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.processing import ProcessorInputs, TimingContext

    from serve_app.engine.windows import register

    register()
    config = ModelConfig(str(model), hf_overrides=hf_overrides(policy), max_model_len=448)
    processor = MULTIMODAL_REGISTRY.create_processor(config)
    for seconds, frames in cases:
        audio = np.zeros(16_000 * seconds, dtype=np.float32)
        items = processor.info.get_data_parser().parse_mm_data({"audio": [(audio, 16_000)]})
        out = processor.apply(ProcessorInputs([0], items), TimingContext())
        features = out["mm_kwargs"]["audio"][0]["input_features"].data
        assert features is not None and features.shape[-1] == frames
        assert len(out["encoder_prompt_token_ids"]) == frames // 2  # 50 encoder positions a second


def test_a_live_utterance_is_padded_with_silence_into_the_live_window() -> None:
    """What the engine hands vLLM for a stream's utterance: its samples, then zeros up to the length
    whose fitted window is `live_s`; a file's chunk, and an utterance already that long, as they are."""
    from serve_app.engine.deployment import WhisperEngine

    policy = WindowPolicy(min_s=12, fill=0.7, max_s=15, full_under_s=4, live_s=15)
    engine = SimpleNamespace(args=EngineArgs(window=policy))
    audio = np.full(3 * 16_000, 0.5, dtype=np.float32)
    live = WhisperEngine._windowed(engine, audio, True)  # type: ignore[arg-type]
    assert policy.window_s(live.size / 16_000, 30) == 15 and policy.window_s(audio.size / 16_000, 30) == 30
    assert np.array_equal(live[: audio.size], audio) and not live[audio.size :].any()
    assert WhisperEngine._windowed(engine, audio, False) is audio  # type: ignore[arg-type]
    longer = np.ones(12 * 16_000, dtype=np.float32)
    assert WhisperEngine._windowed(engine, longer, True) is longer  # type: ignore[arg-type]
    plain = SimpleNamespace(args=EngineArgs())  # no policy: the checkpoint's window, nothing to pad
    assert WhisperEngine._windowed(plain, audio, True) is audio  # type: ignore[arg-type]


def test_a_live_window_outside_the_fitted_ones_is_refused() -> None:
    for bad in [{"live_s": 10}, {"live_s": 20, "max_s": 15}, {"live_s": 12, "full_under_s": 9}]:
        with pytest.raises(ValidationError):
            WindowPolicy(min_s=12, fill=0.7, **bad)
