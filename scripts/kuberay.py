"""Generate the Kubernetes manifests in kuberay/<environment>/ from configs/prod.yaml and kuberay/values/.

The RayService's `serveConfigV2` is configs/prod.yaml itself, adapted per environment (which license
keys it accepts, how far the engine may scale), so the two never drift: tests/test_kuberay.py
regenerates everything and compares. Secrets are referenced, never written: the Redis password and the
license files are created by the operator (kuberay/README.md), so no manifest holds a default password.

Usage: python scripts/kuberay.py            (writes kuberay/{dev,staging,prod}/stt.yaml)
       python scripts/kuberay.py --check    (exit 1 if a committed file differs)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBERAY = ROOT / "kuberay"
RAY_VERSION = "2.60.0"
SERVE_PORT = 7100
METRICS_PORT = 8080
LICENSE_DIR = "/etc/stt/license"
Manifest = dict[str, Any]


def serve_config(values: dict[str, Any]) -> dict[str, Any]:
    """configs/prod.yaml for one environment: its keys only, and at most one engine per GPU worker."""
    config = yaml.safe_load((ROOT / "configs" / "prod.yaml").read_text())
    app = config["applications"][0]
    app["args"]["license"]["environments"] = [values["environment"]]
    engine = next(d for d in app["deployments"] if d["name"] == "WhisperEngine")
    scaling = engine["autoscaling_config"]
    scaling["max_replicas"] = min(scaling["max_replicas"], values["gpuWorkers"]["max"])
    scaling["min_replicas"] = min(scaling["min_replicas"], scaling["max_replicas"])
    return config


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "stt", "app.kubernetes.io/component": component}


def _container(values: dict[str, Any], name: str, resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "image": values["image"],
        "ports": [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": SERVE_PORT, "name": "serve"},
            {"containerPort": METRICS_PORT, "name": "metrics"},
        ],
        "env": [
            {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "stt-redis", "key": "password"}}},
            # Kubernetes expands $(REDIS_PASSWORD) from the variable above: the URL never sits in a manifest.
            {"name": "STT_REDIS_URL", "value": "redis://:$(REDIS_PASSWORD)@stt-redis:6379/0"},
        ],
        "volumeMounts": [{"name": "license", "mountPath": LICENSE_DIR, "readOnly": True}],
        "resources": {"limits": resources, "requests": resources},
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}},
    }


def _pod(values: dict[str, Any], name: str, resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": _labels("ray")},
        "spec": {
            "containers": [_container(values, name, resources)],
            "volumes": [{"name": "license", "secret": {"secretName": "stt-license"}}],
            **extra,
        },
    }


def ray_service(values: dict[str, Any]) -> Manifest:
    gpu, cpu = values["gpuWorkers"], values["cpuWorkers"]
    metrics = {"metrics-export-port": str(METRICS_PORT)}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "stt", "namespace": values["namespace"], "labels": _labels("rayservice")},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(values), sort_keys=False),
            "upgradeStrategy": {"type": "NewCluster"},  # a changed cluster spec starts a new cluster, then switches
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": True,  # workers follow Serve's replica demand
                "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 300},
                # GCS state in Redis: the head can restart without losing the Serve application.
                "gcsFaultToleranceOptions": {
                    "redisAddress": "redis://stt-redis:6379",
                    "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "stt-redis", "key": "password"}}},
                },
                "headGroupSpec": {
                    # num-cpus 0: the head schedules no replicas, only Ray's own processes and a proxy.
                    "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0", **metrics},
                    "template": _pod(values, "ray-head", {"cpu": "4", "memory": "16Gi"}),
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "gpu",
                        "replicas": gpu["min"], "minReplicas": gpu["min"], "maxReplicas": gpu["max"],
                        "rayStartParams": {"num-gpus": "1", **metrics},
                        "template": _pod(values, "ray-worker", {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "1"},
                                         tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
                    },
                    {
                        "groupName": "cpu",  # ingress replicas and proxies
                        "replicas": cpu["min"], "minReplicas": cpu["min"], "maxReplicas": cpu["max"],
                        "rayStartParams": metrics,
                        "template": _pod(values, "ray-worker", {"cpu": "4", "memory": "8Gi"}),
                    },
                ],
            },
        },
    }


def edge(values: dict[str, Any]) -> list[Manifest]:
    """The Service on port 7100 (pods KubeRay marks ready to serve) and the Ingress in front of it."""
    namespace, tls = values["namespace"], values["apiServer"]["tls"]
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "stt", "namespace": namespace, "labels": _labels("api")},
        "spec": {
            "selector": {"ray.io/serve": "true", "app.kubernetes.io/name": "stt"},
            "ports": [{"name": "http", "port": SERVE_PORT, "targetPort": SERVE_PORT}],
        },
    }
    ingress: Manifest = {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "stt", "namespace": namespace, "labels": _labels("api"),
                     "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "100m",
                                     "nginx.ingress.kubernetes.io/proxy-read-timeout": "900"}},
        "spec": {"rules": [{"host": values["host"], "http": {"paths": [{
            "path": "/", "pathType": "Prefix", "backend": {"service": {"name": "stt", "port": {"number": SERVE_PORT}}}}]}}]},
    }
    if tls["enabled"]:
        ingress["spec"]["tls"] = [{"hosts": [values["host"]], "secretName": tls["certSecretName"]}]
    return [service, ingress]


def redis(values: dict[str, Any]) -> list[Manifest]:
    """Redis for usage, limits and GCS fault tolerance; its password from the `stt-redis` Secret."""
    namespace, labels = values["namespace"], _labels("redis")
    return [
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "stt-redis", "namespace": namespace, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "redis", "port": 6379, "targetPort": 6379}]},
        },
        {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "stt-redis", "namespace": namespace, "labels": labels},
            "spec": {
                "serviceName": "stt-redis", "replicas": 1, "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{
                        "name": "redis", "image": "redis:7.4",
                        "args": ["--requirepass", "$(REDIS_PASSWORD)", "--appendonly", "yes", "--save", "60 1"],
                        "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "stt-redis", "key": "password"}}}],
                        "ports": [{"containerPort": 6379, "name": "redis"}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "readinessProbe": {"exec": {"command": ["sh", "-c", "redis-cli -a \"$REDIS_PASSWORD\" --no-auth-warning ping"]}},
                    }]},
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": values["redisStorage"]}}},
                }],
            },
        },
    ]


def monitoring(values: dict[str, Any]) -> list[Manifest]:
    """Prometheus scrapes every Ray pod's metrics port (the service's own metrics are exported there);
    Grafana's sidecar picks the dashboard up from the labelled ConfigMap."""
    namespace = values["namespace"]
    dashboard = json.loads((KUBERAY / "grafana" / "stt-dashboard.json").read_text())
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": {"name": "stt-ray", "namespace": namespace, "labels": _labels("monitoring")},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": "stt", "app.kubernetes.io/component": "ray"}},
                "podMetricsEndpoints": [{"port": "metrics", "interval": "15s"}],
            },
        },
        {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "stt-grafana-dashboard", "namespace": namespace,
                         "labels": {**_labels("monitoring"), "grafana_dashboard": "1"}},
            "data": {"stt-dashboard.json": json.dumps(dashboard, indent=2)},
        },
    ]


def manifests(values: dict[str, Any]) -> list[Manifest]:
    return [ray_service(values), *edge(values), *redis(values), *monitoring(values)]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2, the dashboard) as readable `|` blocks."""


_Dumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
)


def render(values_file: Path) -> str:
    values = yaml.safe_load(values_file.read_text())
    header = (f"# Generated by scripts/kuberay.py from configs/prod.yaml and kuberay/values/{values_file.name}: "
              "edit those, then run it again.\n")
    return header + yaml.dump_all(manifests(values), Dumper=_Dumper, sort_keys=False, width=120)


def outputs() -> dict[Path, str]:
    return {KUBERAY / f.stem / "stt.yaml": render(f) for f in sorted((KUBERAY / "values").glob("*.yaml"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = parser.parse_args()
    stale = []
    for path, text in outputs().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        sys.exit(f"out of date (run scripts/kuberay.py): {', '.join(str(p.relative_to(ROOT)) for p in stale)}")


if __name__ == "__main__":
    main()
