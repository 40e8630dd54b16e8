"""The Serve application: `build_app(args)` is the one import path every config points at
(`import_path: serve_app.app:build_app`). It validates the YAML `args`, folds in the environment's
overrides (license keys, URL allowlist) and binds the ingress to the engine's handle. Replica
counts, autoscaling and resources stay in the YAML's `deployments:` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import Application

from .audio.fetch import UrlPolicy
from .auth import KeyStore, hash_key, read_key_hashes
from .engine import WhisperEngine
from .ingress import Ingress
from .settings import AppArgs, Environment

EngineDeployment = serve.deployment(name="WhisperEngine", max_ongoing_requests=64, health_check_period_s=10)(WhisperEngine)
IngressDeployment = serve.deployment(name="Ingress", max_ongoing_requests=256)(serve.ingress()(Ingress))


def key_hashes(args: AppArgs, env: Environment) -> list[str]:
    hashes = [hash_key(k) for k in env.license_keys]
    for path in filter(None, (args.ingress.license_keys_file, env.license_keys_file)):
        hashes += read_key_hashes(Path(path))
    return hashes


def build_app(raw_args: dict[str, Any] | None = None) -> Application:
    args = AppArgs.model_validate(raw_args or {})
    env = Environment.read()
    allowlist = [*args.ingress.url_allowlist, *env.url_allowlist]
    engine = EngineDeployment.bind(args.engine.model_dump())
    return IngressDeployment.bind(engine, args.ingress.model_dump(), KeyStore(key_hashes(args, env)), UrlPolicy(allowlist))
