"""vLLM's Whisper with an encoder window fitted to each request (why: `windows.py`; the policy:
`WindowPolicy` in settings.py).

Two changes to vLLM's own Whisper, both in subclasses:
- the processor pads each audio to its fitted window instead of the checkpoint's, and gives the
  encoder prompt that many placeholders (one per encoder frame, 50 a second), so the scheduler
  reserves cross-attention cache for the frames the request has, not for a full window;
- the encoder runs once per distinct window length in a batch: vLLM's stacks every request's
  features into one tensor, which needs equal lengths.
And on CPU in bfloat16 the encoder's self-attention is `HeadwiseAttention` unless the engine's
`encoder_attention` says "fused" (why: `cpu_attention.py`).

Imported only inside vLLM's processes, through the model registry (`windows.register`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import torch
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.model_executor.models.whisper import (
    WhisperDummyInputsBuilder,
    WhisperForConditionalGeneration,
    WhisperMultiModalProcessor,
    WhisperProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalKwargsItems
from vllm.multimodal.parse import AudioProcessorItems, MultiModalDataItems
from vllm.multimodal.processing import PromptReplacement, PromptUpdate
from vllm.platforms import current_platform

from ..settings import WindowPolicy
from .cpu_attention import use_headwise_attention
from .int8_linear import use_int8_linear_layers
from .prompts import POSITIONS_PER_S
from .windows import ATTENTION_KEY, CONFIG_KEY, INT8_KEY

log = logging.getLogger(f"vllm.{__name__}")  # vLLM's processes print only its own loggers' records


class FittedWhisperProcessingInfo(WhisperProcessingInfo):
    @cached_property
    def policy(self) -> WindowPolicy:
        return WindowPolicy.model_validate(getattr(self.get_hf_config(), CONFIG_KEY, None) or {})

    def window_samples(self, audio_samples: int) -> int:
        """How many samples the feature extractor pads this audio to."""
        extractor = self.get_feature_extractor()
        rate = extractor.sampling_rate
        max_s = self.get_hf_config().max_source_positions / POSITIONS_PER_S
        return int(self.policy.window_s(audio_samples / rate, max_s) * rate)

    def encoder_positions(self, audio_samples: int) -> int:
        return self.window_samples(audio_samples) * POSITIONS_PER_S // self.get_feature_extractor().sampling_rate


class FittedWhisperMultiModalProcessor(WhisperMultiModalProcessor):
    info: FittedWhisperProcessingInfo

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        audios = hf_data.get("audios", hf_data.get("audio"))
        assert isinstance(audios, list) and len(audios) == 1, "one audio per request (limit_mm_per_prompt)"
        padded = {**hf_kwargs, "max_length": self.info.window_samples(len(audios[0]))}
        return self.info.ctx.call_hf_processor(self.info.get_hf_processor(**hf_kwargs), hf_data, padded)

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        # From the audio's length, by the same policy the features were padded by (vLLM may hand an
        # item over without its features when it has them cached).
        audios = mm_items.get_items("audio", AudioProcessorItems)
        return [
            PromptReplacement(
                modality="audio",
                target=[0],
                replacement=lambda item: [0] * self.info.encoder_positions(audios.get_audio_length(item)),
            )
        ]


@MULTIMODAL_REGISTRY.register_processor(
    FittedWhisperMultiModalProcessor, info=FittedWhisperProcessingInfo, dummy_inputs=WhisperDummyInputsBuilder
)
class FittedWhisperForConditionalGeneration(WhisperForConditionalGeneration):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        config = vllm_config.model_config
        headwise = getattr(config.hf_config, ATTENTION_KEY, "headwise") == "headwise"
        if headwise and current_platform.is_cpu() and config.dtype == torch.bfloat16:
            layers = use_headwise_attention(self.model.encoder)
            log.info("encoder self-attention: one head at a time in bfloat16 matmuls, %d layers", layers)
        if getattr(config.hf_config, INT8_KEY, False) and current_platform.is_cpu():
            layers = use_int8_linear_layers(self.model.decoder, self.proj_out)  # not the encoder (int8_linear.py)
            log.info("linear layers: int8 weights and activations (fbgemm) in the decoder, %d layers", layers)

    def embed_multimodal(self, **kwargs: object) -> list[torch.Tensor]:  # type: ignore[override]
        # Not through vLLM's input schema: it requires every request's features to be the same length.
        features: Any = kwargs["input_features"]
        by_length: dict[int, list[int]] = {}
        for i, f in enumerate(features):
            by_length.setdefault(f.shape[-1], []).append(i)
        out: list[torch.Tensor] = [torch.empty(0)] * len(features)
        for indices in by_length.values():
            encoded = self.model.get_encoder_outputs([features[i].to(self.dtype) for i in indices])
            assert encoded is not None
            for i, states in zip(indices, encoded.unbind(dim=0)):
                out[i] = states
        return out
