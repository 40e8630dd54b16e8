"""The CTranslate2 -> Hugging Face conversion: tensor names and shapes match transformers' own
Whisper, and the converted weights transcribe the JFK clip exactly (both tiny.en and base)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

from serve_app.engine.prompts import encoder_window_s
from serve_app.pipeline.decode import decode
from serve_app.settings import ROOT
from tools.models.convert import ConversionError, read_ct2, shorten_window

from .helpers import JFK_FLAC, manifest, normalize

MODELS = {name: ROOT / f"models/whisper-{name}" for name in ("tiny.en", "tiny.en-15s", "base")}


def _ct2_blob(variables: dict[str, np.ndarray], version: int = 6, spec: str = "WhisperSpec") -> bytes:
    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("<I", version) + string(spec) + struct.pack("<II", 3, len(variables))
    for name, value in variables.items():
        out += string(name) + struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape)
        out += struct.pack("<BI", 4, value.nbytes) + value.tobytes()
    return out + struct.pack("<I", 1) + string("decoder/projection/weight") + string("decoder/embeddings/weight")


def test_reader_round_trips_variables_and_aliases() -> None:
    emb = np.arange(12, dtype=np.float16).reshape(4, 3)
    model = read_ct2(_ct2_blob({"decoder/embeddings/weight": emb}))
    assert np.array_equal(model.get("decoder/projection/weight"), emb)


@pytest.mark.parametrize("blob, message", [(_ct2_blob({}, version=5), "version"), (_ct2_blob({}, spec="Other"), "Whisper")])
def test_reader_refuses_other_checkpoints(blob: bytes, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        read_ct2(blob)


def test_reader_refuses_truncated_file() -> None:
    blob = _ct2_blob({"x": np.zeros((8, 8), dtype=np.float16)})
    with pytest.raises(ConversionError, match="truncated"):
        read_ct2(blob[:-200])


@pytest.mark.parametrize("name", MODELS)
def test_converted_names_and_shapes_match_transformers(name: str) -> None:
    path = MODELS[name]
    from safetensors.numpy import load_file

    ours = {k: v.shape for k, v in load_file(str(path / "model.safetensors")).items()}
    reference = WhisperForConditionalGeneration(WhisperConfig.from_pretrained(path)).state_dict()
    expected = {k: tuple(v.shape) for k, v in reference.items()}
    assert ours == expected


@pytest.mark.parametrize("name", MODELS)
def test_converted_model_transcribes_jfk_exactly(name: str) -> None:
    path = MODELS[name]
    model = WhisperForConditionalGeneration.from_pretrained(path, torch_dtype=torch.float32).eval()
    features = WhisperFeatureExtractor.from_pretrained(path)(
        decode(JFK_FLAC.read_bytes(), 60), sampling_rate=16000, return_tensors="pt"
    )
    tokenizer = WhisperTokenizerFast.from_pretrained(path)
    generation = json.loads((Path(path) / "generation_config.json").read_text())
    prompt = [generation["decoder_start_token_id"]]
    if generation["is_multilingual"]:
        prompt += [generation["lang_to_id"]["<|en|>"], generation["task_to_id"]["transcribe"]]
    prompt.append(generation["no_timestamps_token_id"])
    with torch.no_grad():
        ids = model.generate(features.input_features, decoder_input_ids=torch.tensor([prompt]), max_new_tokens=100)
    text = tokenizer.decode(ids[0], skip_special_tokens=True)
    assert normalize(text) == normalize(manifest()["whisper_jfk.flac"]["text"])


def test_short_window_variant_keeps_the_first_positions() -> None:
    from safetensors.numpy import load_file

    full = load_file(str(MODELS["tiny.en"] / "model.safetensors"))["model.encoder.embed_positions.weight"]
    short = load_file(str(MODELS["tiny.en-15s"] / "model.safetensors"))["model.encoder.embed_positions.weight"]
    assert short.shape == (750, full.shape[1]) and np.array_equal(short, full[:750])
    config = json.loads((MODELS["tiny.en-15s"] / "config.json").read_text())
    assert encoder_window_s(config) == 15
    assert json.loads((MODELS["tiny.en-15s"] / "preprocessor_config.json").read_text())["n_samples"] == 15 * 16000


def test_window_must_fit_whisper() -> None:
    with pytest.raises(ConversionError):
        shorten_window({}, {}, 45)
