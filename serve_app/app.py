"""The Serve application: `build_app(args)` is the one import path every config points at
(`import_path: serve_app.app:build_app`). It validates the YAML `args`, folds in the environment's
overrides (issuer keys, revocations, usage store, URL allowlist) and binds the ingress to the
engine's handle. Replica counts, autoscaling and resources stay in the YAML's `deployments:`;
the deployment options every config shares are the defaults below."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ray import serve
from ray.serve import Application

from .engine.deployment import WhisperEngine
from .errors import ServiceError
from .ingress import Ingress
from .licensing.auth import LicenseAuthenticator, RevocationList
from .licensing.keys import PublicKeys
from .licensing.limits import Limiter
from .licensing.usage import RedisStore, SqliteStore, UsageStore
from .pipeline.fetch import UrlPolicy
from .settings import AppArgs, Environment, repo_path

# What every config shares lives here; configs/*.yaml state only what depends on the hardware
# (model, replicas or autoscaling, resources, slower GPU start-up), so no setting is copied between them.
EngineDeployment = serve.deployment(
    name="WhisperEngine",
    max_ongoing_requests=64,  # chunks in flight per replica; vLLM batches up to max_num_seqs of them
    # Beyond this many waiting chunks a new request is shed with 503 + retry_after. 64 waiting plus
    # 64 running is under 30 s of work for tiny.en on two cores (tools/cluster/soak.py): a client's
    # timeout is not reached in the queue. Requests under way wait instead (Ingress._patiently).
    max_queued_requests=64,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=30,  # requests in flight finish before a replica stops
    # A changed config (new args or code) replaces replicas: the replacement starts before the old
    # one stops, so an upgrade drops nothing. Without room for it, the old replica keeps serving.
    max_surge_percent=25,  # of the replicas, rounded up: one extra engine at a time below 5
)(WhisperEngine)
IngressDeployment = serve.deployment(
    name="Ingress",
    max_ongoing_requests=256,
    health_check_period_s=10,
    # A stopped replica's live streams end after the finals of what they took (stream/drain.py): noticed
    # within a second; then a stream holds at most buffered_s (10 s) of audio to segment, one open
    # utterance (a window) and decodes_in_flight (4) finals decoding: about 6 engine calls, 2 s at the
    # 3 decodes a second of two CPU cores. 60 s covers some 30 streams a replica there (docs/streaming.md).
    graceful_shutdown_timeout_s=60,
    max_surge_percent=100,  # ingress replicas are cheap: replace them all side by side
)(serve.ingress()(Ingress))


class ConfigError(ServiceError):
    """The application cannot start as configured (raised while building, never to a client)."""


def build_authenticator(args: AppArgs, env: Environment) -> LicenseAuthenticator:
    keys_file = env.license_public_keys or args.license.public_keys_file
    if keys_file is None:
        raise ConfigError("No issuer public keys: set license.public_keys_file or STT_LICENSE_PUBLIC_KEYS")
    revocations = env.license_revocations or args.license.revocations_file
    return LicenseAuthenticator(
        PublicKeys.from_file(repo_path(keys_file)),
        RevocationList(repo_path(revocations) if revocations else None, args.license.revocations_check_s),
        environments=args.license.environments,
        clock_skew=timedelta(seconds=args.license.clock_skew_s),
    )


def build_store(args: AppArgs, env: Environment) -> UsageStore:
    if (env.usage_store or args.usage.store) == "redis":
        if env.redis_url is None:
            raise ConfigError("usage.store is redis but STT_REDIS_URL is not set")
        return RedisStore(env.redis_url.get_secret_value())
    return SqliteStore(repo_path(env.usage_db or args.usage.sqlite_path))


def build_app(raw_args: dict[str, Any] | None = None) -> Application:
    args = AppArgs.model_validate(raw_args or {})
    env = Environment()
    engine = EngineDeployment.bind(args.engine.model_dump())
    limiter = Limiter(build_store(args, env), lease_s=args.usage.concurrency_lease_s)
    policy = UrlPolicy([*args.ingress.url_allowlist, *env.url_allowlist])
    return IngressDeployment.bind(engine, args.ingress.model_dump(), build_authenticator(args, env), limiter, policy)
