"""Encoder windows fitted to each request's audio.

Whisper's encoder costs what its window costs, speech or padding: a 4 s chunk in a 15 s window pays
for 11 s of silence. With a fitted window (`WindowPolicy` in settings.py, the engine's `window`) the
engine pads each chunk only to a window the chunk fills to at most `fill`, never below `min_s` and
never above `max_s`: the model stays accurate where speech leaves it room (tiny.en repeats itself in
a window the speech fills to its end, and in any window under 10 s), and short chunks stop paying
for padding. Two exceptions, both measured (docs/accuracy/windows.md): a file's audio under
`full_under_s` takes the checkpoint's whole window, where a clip of a few seconds is decoded best;
a live utterance takes `live_s` (the engine pads it with silence to that window's length). One
engine serves every window up to its checkpoint's (`fitted_model.py`).

`register` is vLLM's plugin hook (an entry point in pyproject.toml), so that every vLLM process,
spawned or not, knows the model class; it imports the class only when a checkpoint asks for it.
"""

from __future__ import annotations

from typing import Any

from ..settings import WindowPolicy

ARCHITECTURE = "FittedWhisperForConditionalGeneration"
CONFIG_KEY = "fitted_window"  # where the policy travels: the checkpoint's config, through vLLM's hf_overrides
ATTENTION_KEY = "encoder_attention"  # and the engine's `encoder_attention` (fitted_model.py)
INT8_KEY = "int8_linear"  # and whether its linear layers run in int8 (int8_linear.py)


def register() -> None:
    from vllm import ModelRegistry

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, "serve_app.engine.fitted_model:FittedWhisperForConditionalGeneration")


def hf_overrides(policy: WindowPolicy | None, encoder_attention: str = "headwise", int8_linear: bool = False) -> dict[str, Any]:
    """vLLM's `hf_overrides` for a checkpoint served in fitted windows: the model class in place of
    vLLM's, the policy, the encoder's attention and the linear layers' number type in its config.
    None: no overrides (the checkpoint's whole window, vLLM's own model)."""
    if not policy:
        return {}
    return {
        "architectures": [ARCHITECTURE],
        CONFIG_KEY: policy.model_dump(),
        ATTENTION_KEY: encoder_attention,
        INT8_KEY: int8_linear,
    }
