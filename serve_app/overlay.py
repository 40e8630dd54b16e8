"""Serve configs with hardware overrides: `configs/prod.yaml` as written, plus a small file that
changes only what the hardware forces (model path, dtype, GPUs, CPU reservations, replica floors).

  python -m serve_app.overlay configs/prod.yaml configs/overrides/prod-on-cpu.yaml -o /tmp/prod-cpu.yaml
  CONFIG=configs/prod.yaml OVERRIDE=configs/overrides/prod-on-cpu.yaml scripts/run.sh

Mappings merge key by key; lists of applications and deployments merge item by item on `name`
(an override may not add an application or a deployment: a typo would otherwise pass silently);
any other value, lists included, replaces the base's. `null` sets a value back to the code's default.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

_NAMED_LISTS = ("applications", "deployments")


class OverlayError(ValueError):
    """The override does not fit the base config."""


def merge(base: Any, override: Any, path: str = "") -> Any:
    """`base` with `override` applied (neither is changed)."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            where = f"{path}.{key}" if path else str(key)
            if key in _NAMED_LISTS and isinstance(value, list):
                merged[key] = _merge_named(base.get(key) or [], value, where)
            elif key in base and value is not None:
                merged[key] = merge(base[key], value, where)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _merge_named(base: list[dict], override: list[dict], path: str) -> list[dict]:
    by_name = {item.get("name"): index for index, item in enumerate(base)}
    merged = copy.deepcopy(base)
    for item in override:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in by_name:
            raise OverlayError(f"{path}: the base config has no entry named {name!r}")
        merged[by_name[name]] = merge(base[by_name[name]], item, f"{path}[{name}]")
    return merged


def load(base: Path, override: Path | None) -> dict:
    config = yaml.safe_load(base.read_text())
    return merge(config, yaml.safe_load(override.read_text())) if override is not None else config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply a hardware override to a Serve config")
    parser.add_argument("base", type=Path)
    parser.add_argument("override", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    try:
        text = yaml.safe_dump(load(args.base, args.override), sort_keys=False)
    except OverlayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
