"""Both Serve configs validate with Ray's own schema and build with their args."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.app import ConfigError, build_app
from serve_app.settings import ROOT, AppArgs

from .helpers import Issuer

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_builds(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "issuer.pub").write_text(Issuer().public_line() + "\n")
    monkeypatch.setenv("STT_LICENSE_PUBLIC_KEYS", str(tmp_path / "issuer.pub"))
    monkeypatch.setenv("STT_LICENSE_REVOCATIONS", str(tmp_path / "revoked.txt"))
    monkeypatch.setenv("STT_USAGE_DB", str(tmp_path / "usage.sqlite3"))
    monkeypatch.setenv("STT_REDIS_URL", "redis://127.0.0.1:1/0")  # not contacted while building
    config = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    (app,) = config.applications
    assert app.import_path == "serve_app.app:build_app"
    AppArgs.model_validate(app.args)
    built = build_app(app.args)
    assert built is not None
    names = {d.name for d in app.deployments}
    assert names == {"Ingress", "WhisperEngine"}


def test_configs_cover_cpu_default_and_gpu_prod() -> None:
    assert {p.name for p in CONFIGS} >= {"cpu.yaml", "prod.yaml"}
    prod = yaml.safe_load((ROOT / "configs/prod.yaml").read_text())["applications"][0]
    engine = next(d for d in prod["deployments"] if d["name"] == "WhisperEngine")
    assert engine["ray_actor_options"]["num_gpus"] == 1 and "autoscaling_config" in engine
    # The scaling target follows the measured knee (throughput saturates at max_num_seqs ongoing):
    # scale before a replica's batch is full, and never queue past what the replica admits.
    batch = prod["args"]["engine"]["max_num_seqs"]
    assert batch // 2 <= engine["autoscaling_config"]["target_ongoing_requests"] < batch <= engine["max_ongoing_requests"]


def test_unknown_args_are_refused() -> None:
    with pytest.raises(ValueError):
        AppArgs.model_validate({"engine": {"modle": "typo"}})


def test_missing_public_keys_or_redis_url_refuse_to_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("STT_LICENSE_PUBLIC_KEYS", "STT_USAGE_STORE", "STT_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STT_USAGE_DB", str(tmp_path / "usage.sqlite3"))
    with pytest.raises(ConfigError, match="public keys"):
        build_app({})
    (tmp_path / "k.pub").write_text(Issuer().public_line())
    with pytest.raises(ConfigError, match="STT_REDIS_URL"):
        build_app({"license": {"public_keys_file": str(tmp_path / "k.pub")}, "usage": {"store": "redis"}})


def _repeats(section: dict, defaults: dict, where: str) -> list[str]:
    return [f"{where}.{key}" for key, value in section.items() if key in defaults and defaults[key] == value]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_state_only_what_differs_from_the_shared_defaults(path: Path) -> None:
    """Shared settings live once, in code; a config that restates one would drift from it. The engine's
    args (model, batch, cache) and replicas/resources are the hardware's and always stated."""
    from serve_app.app import EngineDeployment, IngressDeployment

    app = yaml.safe_load(path.read_text())["applications"][0]
    defaults = AppArgs().model_dump()
    repeated = [
        r
        for name, section in app.get("args", {}).items()
        if name != "engine"
        for r in _repeats(section, defaults[name], f"args.{name}")
    ]
    for deployment in app["deployments"]:
        code = {"WhisperEngine": EngineDeployment, "Ingress": IngressDeployment}[deployment["name"]]
        shared = code._deployment_config.model_dump()
        options = {k: v for k, v in deployment.items() if k not in ("num_replicas", "autoscaling_config", "ray_actor_options")}
        repeated += _repeats(options, shared, f"deployments.{deployment['name']}")
    assert repeated == []


def test_demo_configs_of_the_cluster_tools_validate(tmp_path: Path) -> None:
    """tools/cluster/multinode.py and tools/cluster/autoscale.py derive their configs from configs/cpu.yaml."""
    from tools.cluster import autoscale, multinode

    cluster = multinode.Cluster.__new__(multinode.Cluster)  # no processes: only its ports are read
    cluster.http_port = 17100
    engines = {}
    for name, path in (
        ("autoscale", autoscale.config(cluster, tmp_path)),
        ("multinode", multinode.config_for(cluster, tmp_path)),
    ):
        app = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text())).applications[0]
        engines[name] = next(d for d in app.deployments if d.name == "WhisperEngine")
    assert engines["autoscale"].autoscaling_config["max_replicas"] == 2
    assert engines["multinode"].ray_actor_options.resources == {multinode.ENGINE_RESOURCE: 1}


def test_the_readme_lists_every_environment_setting() -> None:
    """The README's table of environment variables and the `Environment` schema name the same settings."""
    from serve_app.settings import Environment

    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(STT_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    declared = {f"STT_{name.upper()}" for name in Environment.model_fields}
    assert documented == declared


def test_the_environment_is_read_typed_and_keeps_secrets_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_app.settings import Environment

    monkeypatch.setenv("STT_URL_ALLOWLIST", "127.0.0.2/32, minio.internal")
    monkeypatch.setenv("STT_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    monkeypatch.setenv("STT_USAGE_DB", "")
    env = Environment()
    assert env.url_allowlist == ["127.0.0.2/32", "minio.internal"] and env.usage_db is None
    assert env.redis_url is not None and env.redis_url.get_secret_value().endswith("@127.0.0.1:1/0")
    assert "hunter2" not in repr(env) and "hunter2" not in str(env.model_dump())
    monkeypatch.setenv("STT_USAGE_STORE", "postgres")
    with pytest.raises(ValueError):
        Environment()


def test_the_demo_page_is_on_for_laptops_and_off_in_production() -> None:
    """`ingress.demo_page` (GET /demo): the CPU configs turn it on; production keeps the default, off,
    also with the CPU override that tests/test_prod_shape.py serves."""
    from serve_app.overlay import load

    def demo(name: str, override: str | None = None) -> bool:
        config = load(ROOT / "configs" / name, ROOT / "configs" / override if override else None)
        return AppArgs.model_validate(config["applications"][0]["args"]).ingress.demo_page

    assert demo("cpu.yaml") and demo("cpu-multilingual.yaml")
    assert not demo("prod.yaml") and not demo("prod.yaml", "overrides/prod-on-cpu.yaml")
