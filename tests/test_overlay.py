"""Hardware overrides of a Serve config (serve_app/overlay.py): merged by key and by name, never
adding what the base lacks, and the production-on-CPU override gives a valid config that changes only
hardware."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app import overlay
from serve_app.settings import ROOT, AppArgs
from tools.bench.common import config_window

BASE = {
    "http_options": {"port": 7100},
    "applications": [
        {
            "name": "stt",
            "args": {"engine": {"model": "a", "dtype": "float16"}},
            "deployments": [
                {"name": "Ingress", "num_replicas": 2},
                {"name": "WhisperEngine", "ray_actor_options": {"num_gpus": 1, "num_cpus": 4}},
            ],
        }
    ],
}


def test_mappings_merge_by_key_and_lists_by_name() -> None:
    override = {
        "applications": [
            {
                "name": "stt",
                "args": {"engine": {"model": "b"}},
                "deployments": [{"name": "WhisperEngine", "ray_actor_options": {"num_gpus": 0}}],
            }
        ]
    }
    merged = overlay.merge(BASE, override)
    app = merged["applications"][0]
    assert app["args"]["engine"] == {"model": "b", "dtype": "float16"}
    assert app["deployments"][0] == {"name": "Ingress", "num_replicas": 2}
    assert app["deployments"][1]["ray_actor_options"] == {"num_gpus": 0, "num_cpus": 4}
    assert BASE["applications"][0]["args"]["engine"]["model"] == "a"  # the base is not changed


def test_null_resets_to_the_default() -> None:
    merged = overlay.merge(BASE, {"applications": [{"name": "stt", "args": {"engine": {"dtype": None}}}]})
    assert merged["applications"][0]["args"]["engine"]["dtype"] is None


@pytest.mark.parametrize(
    "override",
    [
        {"applications": [{"name": "sst"}]},
        {"applications": [{"name": "stt", "deployments": [{"name": "WhisperEngin", "num_replicas": 1}]}]},
    ],
)
def test_a_misspelt_name_is_refused(override: dict) -> None:
    with pytest.raises(overlay.OverlayError):
        overlay.merge(BASE, override)


def test_the_cli_writes_the_merged_config(tmp_path: Path) -> None:
    out = tmp_path / "merged.yaml"
    assert overlay.main([str(ROOT / "configs/prod.yaml"), str(ROOT / "configs/overrides/prod-on-cpu.yaml"), "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == overlay.load(
        ROOT / "configs/prod.yaml", ROOT / "configs/overrides/prod-on-cpu.yaml"
    )


def test_prod_on_cpu_changes_only_hardware() -> None:
    prod = yaml.safe_load((ROOT / "configs/prod.yaml").read_text())
    merged = overlay.load(ROOT / "configs/prod.yaml", ROOT / "configs/overrides/prod-on-cpu.yaml")
    (app,) = ServeDeploySchema.model_validate(merged).applications
    args = AppArgs.model_validate(app.args)
    base_app = prod["applications"][0]
    assert args.engine.model == "models/whisper-tiny.en" and args.engine.dtype == "auto"
    assert args.engine.window == config_window(ROOT / "configs/cpu.yaml")  # the CPU default's windows, all of them
    # Production's own behaviour is kept: its store, its key environment, its timestamps, its stream budget.
    for section in ("ingress", "license", "usage"):
        assert merged["applications"][0]["args"][section] == base_app["args"][section]
    engine = next(d for d in app.deployments if d.name == "WhisperEngine")
    ingress = next(d for d in app.deployments if d.name == "Ingress")
    assert engine.ray_actor_options.num_gpus == 0 and ingress.autoscaling_config["min_replicas"] == 2
    assert (
        engine.max_queued_requests
        == next(d for d in base_app["deployments"] if d["name"] == "WhisperEngine")["max_queued_requests"]
    )
