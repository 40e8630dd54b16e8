"""Generate the Kubernetes manifests in kuberay/<environment>/ from configs/prod.yaml and kuberay/values/.

The RayService's `serveConfigV2` is configs/prod.yaml itself, adapted per environment (which license
keys it accepts, how far the engine may scale), so the two never drift: tests/test_kuberay.py
regenerates everything and compares. Secrets are referenced, never written: the Redis passwords, the
Ray token and the license files are created by the operator (kuberay/README.md), so no manifest holds
a default password. NetworkPolicies confine every pod of the namespace, pods run as non-root users
with no capabilities, and kuberay/prometheus/stt-alerts.yaml becomes a PrometheusRule.

Usage: python -m tools.kuberay            (writes kuberay/{dev,staging,prod}/stt.yaml)
       python -m tools.kuberay --check    (exit 1 if a committed file differs)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tools import ROOT

KUBERAY = ROOT / "kuberay"
RAY_VERSION = "2.60.0"
SERVE_PORT = 7100  # Serve's HTTP proxy on every Ray pod: the service's API
METRICS_PORT = 8080
DASHBOARD_PORT = 8265
REDIS_PORT = 6379
LICENSE_DIR = "/etc/stt/license"
RAY_USER = (1000, 100)  # the rayproject/ray image's `ray` user and its `users` group
REDIS_USER = (999, 999)  # the redis image's `redis` user and group
# Ray's writable paths once the root filesystem is read-only: its session folder (/tmp/ray: sockets,
# logs, spilled objects) and Python's temporary files in /tmp; model hub and compiler caches.
SCRATCH = {"tmp": "/tmp", "cache": "/home/ray/.cache"}
# Where the Ray pods may not connect beyond the peers the NetworkPolicies name: private, shared (CGNAT)
# and link-local ranges (the cloud metadata endpoint 169.254.169.254), so a fetched audio URL or a
# callback can reach the internet but not the cluster network. IPv6: unique-local, link-local,
# IPv4-mapped and NAT64 (which would translate back into the IPv4 ranges).
NOT_PUBLIC = {
    "0.0.0.0/0": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"],
    "::/0": ["fc00::/7", "fe80::/10", "::ffff:0:0/96", "64:ff9b::/96"],
}
OPERATOR_POD = {"app.kubernetes.io/name": "kuberay-operator"}  # the KubeRay Helm chart's pod label
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}  # the Prometheus operator's pod label
DNS_POD = {"k8s-app": "kube-dns"}  # CoreDNS (and kube-dns) in kube-system
# KubeRay's label for a pod's role; the Redis clean-up Job runs on the head's template when the
# RayService is deleted, and needs the GCS Redis like the head.
NODE_TYPE = "ray.io/node-type"
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


def _pod_security(user: tuple[int, int]) -> dict[str, Any]:
    uid, gid = user
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security(read_only: bool) -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": read_only}


def _secret_env(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}


def _container(values: dict[str, Any], name: str, resources: dict[str, Any], read_only: bool) -> dict[str, Any]:
    return {
        "name": name,
        "image": values["image"],
        "ports": [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": SERVE_PORT, "name": "serve"},
            {"containerPort": METRICS_PORT, "name": "metrics"},
        ],
        "env": [
            # Not REDIS_PASSWORD: KubeRay sets that one on the head for the GCS Redis, and refuses
            # a head container that sets it itself.
            _secret_env("STT_REDIS_PASSWORD", "stt-redis"),
            # Kubernetes expands $(STT_REDIS_PASSWORD) from the variable above: the URL never sits in a manifest.
            {"name": "STT_REDIS_URL", "value": f"redis://:$(STT_REDIS_PASSWORD)@stt-redis:{REDIS_PORT}/0"},
        ],
        "volumeMounts": [
            {"name": "license", "mountPath": LICENSE_DIR, "readOnly": True},
            *({"name": volume, "mountPath": path} for volume, path in SCRATCH.items()),
        ],
        "resources": {"limits": resources, "requests": resources},
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}},
        "securityContext": _container_security(read_only),
    }


def _pod(values: dict[str, Any], name: str, resources: dict[str, Any], read_only: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": _labels("ray")},
        "spec": {
            "securityContext": _pod_security(RAY_USER),
            "containers": [_container(values, name, resources, read_only)],
            "volumes": [
                {"name": "license", "secret": {"secretName": "stt-license"}},
                *({"name": volume, "emptyDir": {}} for volume in SCRATCH),
            ],
            **extra,
        },
    }


def _worker_group(name: str, sizes: dict[str, int], params: dict[str, str], template: dict[str, Any]) -> dict[str, Any]:
    # Workers never call the Kubernetes API (only the head's autoscaler does): no token to steal.
    template["spec"]["automountServiceAccountToken"] = False
    return {
        "groupName": name,
        "replicas": sizes["min"],
        "minReplicas": sizes["min"],
        "maxReplicas": sizes["max"],
        "rayStartParams": params,
        "template": template,
    }


def _cluster(values: dict[str, Any]) -> dict[str, Any]:
    metrics = {"metrics-export-port": str(METRICS_PORT)}
    gpu_resources = {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "1"}
    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    return {
        "rayVersion": RAY_VERSION,
        # Ray's token authentication: the dashboard (job submission), GCS and the Ray client answer
        # only to processes holding the token from the stt-ray-token Secret (KubeRay passes it to
        # every Ray container and to its own dashboard calls). Serve's HTTP port and the metrics
        # port are not behind it: the service's own keys guard the one, the other is read-only.
        "authOptions": {"mode": "token", "secretName": "stt-ray-token"},
        "enableInTreeAutoscaling": True,  # workers follow Serve's replica demand
        "autoscalerOptions": {
            "upscalingMode": "Default",
            "idleTimeoutSeconds": 300,
            # The autoscaler sidecar KubeRay adds to the head: as confined as the Ray container.
            "securityContext": _container_security(True),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
        # GCS state in its own Redis: the head can restart without losing the Serve application.
        "gcsFaultToleranceOptions": {
            "redisAddress": f"redis://stt-gcs-redis:{REDIS_PORT}",
            "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "stt-gcs-redis", "key": "password"}}},
        },
        "headGroupSpec": {
            # num-cpus 0: the head schedules no replicas, only Ray's own processes and a proxy.
            # dashboard-host 0.0.0.0: the KubeRay operator deploys the Serve config through the
            # dashboard from its own namespace; the NetworkPolicies and the token fence it.
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0", **metrics},
            "template": _pod(values, "ray-head", {"cpu": "4", "memory": "16Gi"}),
        },
        "workerGroupSpecs": [
            # Root filesystem left writable on GPU workers (kuberay/README.md: vLLM's CUDA stack).
            _worker_group(
                "gpu",
                values["gpuWorkers"],
                {"num-gpus": "1", **metrics},
                _pod(values, "ray-worker", gpu_resources, read_only=False, tolerations=[gpu_toleration]),
            ),
            # ingress replicas and proxies
            _worker_group("cpu", values["cpuWorkers"], metrics, _pod(values, "ray-worker", {"cpu": "4", "memory": "8Gi"})),
        ],
    }


def ray_service(values: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "stt", "namespace": values["namespace"], "labels": _labels("rayservice")},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(values), sort_keys=False),
            "upgradeStrategy": {"type": "NewCluster"},  # a changed cluster spec starts a new cluster, then switches
            "rayClusterConfig": _cluster(values),
        },
    }


def edge(values: dict[str, Any]) -> list[Manifest]:
    """The Service on port 7100 (pods KubeRay marks ready to serve) and the Ingress in front of it."""
    namespace, tls = values["namespace"], values["apiServer"]["tls"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "stt", "namespace": namespace, "labels": _labels("api")},
        "spec": {
            "selector": {"ray.io/serve": "true", "app.kubernetes.io/name": "stt"},
            "ports": [{"name": "http", "port": SERVE_PORT, "targetPort": SERVE_PORT}],
        },
    }
    ingress: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "stt",
            "namespace": namespace,
            "labels": _labels("api"),
            "annotations": {
                "nginx.ingress.kubernetes.io/proxy-body-size": "100m",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "900",
            },
        },
        "spec": {
            "rules": [
                {
                    "host": values["host"],
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "stt", "port": {"number": SERVE_PORT}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    if tls["enabled"]:
        ingress["spec"]["tls"] = [{"hosts": [values["host"]], "secretName": tls["certSecretName"]}]
    return [service, ingress]


def maxmemory(limit: str) -> str:
    """Redis' maxmemory for a container memory limit ("4Gi", "512Mi"): three quarters of it, the rest
    for the AOF rewrite's copy-on-write pages and client buffers, so Redis refuses a write (an error
    the service reports) before the kernel kills it."""
    units = {"Mi": 1, "Gi": 1024}
    number, unit = limit[:-2], limit[-2:]
    return f"{int(number) * units[unit] * 3 // 4}mb"


def _redis_pod(labels: dict[str, str], secret: str, memory: str) -> dict[str, Any]:
    args = [
        "--requirepass",
        "$(REDIS_PASSWORD)",
        "--maxmemory",
        maxmemory(memory),
        # Full memory refuses writes instead of evicting keys: an evicted counter is usage lost.
        "--maxmemory-policy",
        "noeviction",
        # Every write in the append-only file, flushed each second; a snapshot a minute for backups.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "60 1",
    ]
    return {
        "metadata": {"labels": labels},
        "spec": {
            "securityContext": _pod_security(REDIS_USER),
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "redis",
                    "image": "redis:7.4",
                    "args": args,
                    "env": [_secret_env("REDIS_PASSWORD", secret)],
                    "ports": [{"containerPort": REDIS_PORT, "name": "redis"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],  # Redis writes nowhere else
                    "resources": {"requests": {"cpu": "250m", "memory": memory}, "limits": {"memory": memory}},
                    "readinessProbe": {
                        "exec": {"command": ["sh", "-c", 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning ping']}
                    },
                    "securityContext": _container_security(True),
                }
            ],
        },
    }


def _redis(values: dict[str, Any], name: str, component: str, sizing: dict[str, str]) -> list[Manifest]:
    """A password-protected Redis (its password from the Secret named like it) on its own volume."""
    namespace, labels = values["namespace"], _labels(component)
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": REDIS_PORT}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "serviceName": name,
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": _redis_pod(labels, name, sizing["memory"]),
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": sizing["storage"]}}},
                    }
                ],
            },
        },
    ]


def redis(values: dict[str, Any]) -> list[Manifest]:
    """Two instances: usage, limits and callbacks (stt-redis) apart from Ray's GCS fault-tolerance
    state (stt-gcs-redis), so neither can crowd out, flush or read the other, and only the head
    holds the GCS password."""
    return [
        *_redis(values, "stt-redis", "redis", values["redis"]),
        *_redis(values, "stt-gcs-redis", "gcs-redis", values["gcsRedis"]),
    ]


def _peer(labels: dict[str, str], namespace: str | None = None, node_types: list[str] | None = None) -> dict[str, Any]:
    """Pods with these labels: in this namespace, or in the named one."""
    selector: dict[str, Any] = {"matchLabels": labels} if labels else {}  # {}: every pod
    if node_types:
        selector["matchExpressions"] = [{"key": NODE_TYPE, "operator": "In", "values": node_types}]
    peer: dict[str, Any] = {"podSelector": selector}
    if namespace:
        peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return peer


def _ports(*ports: int, protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"protocol": protocol, "port": port} for port in ports]


def _policy(values: dict[str, Any], name: str, selector: dict[str, Any], **rules: list[dict[str, Any]]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": values["namespace"], "labels": _labels("network")},
        "spec": {"podSelector": selector, "policyTypes": [t.capitalize() for t in rules], **rules},
    }


def _ray_policy(values: dict[str, Any]) -> Manifest:
    """Ray pods: each other on every port, the edge on the Serve port, Prometheus on the metrics
    port; out to DNS, each other, the two Redis and the public internet."""
    network, ray = values["network"], _peer(_labels("ray"))
    public = [{"ipBlock": {"cidr": cidr, "except": private}} for cidr, private in NOT_PUBLIC.items()]
    return _policy(
        values,
        "stt-ray",
        ray["podSelector"],
        ingress=[
            # GCS, dashboard, client, node and object managers, workers: Ray picks most of these ports
            # at random and every Ray process of the cluster may run any code anyway, so all ports.
            {"from": [ray]},
            {"from": [_peer({}, network["ingressControllerNamespace"])], "ports": _ports(SERVE_PORT)},
            {"from": [_peer(PROMETHEUS_POD, network["prometheusNamespace"])], "ports": _ports(METRICS_PORT)},
        ],
        egress=[
            {"to": [_peer(DNS_POD, "kube-system")], "ports": _ports(53, protocol="UDP") + _ports(53)},
            {"to": [ray]},
            {"to": [_peer(_labels("redis")), _peer(_labels("gcs-redis"))], "ports": _ports(REDIS_PORT)},
            {"to": public, "ports": [{"protocol": "TCP"}]},  # audio URLs, callbacks, the model hub
        ],
    )


def _head_policy(values: dict[str, Any]) -> Manifest:
    """The head alone: the KubeRay operator on the dashboard (Serve config, status) and on the Serve
    port (it checks the head's proxy before routing to it); out to the Kubernetes API (autoscaler)."""
    network = values["network"]
    head = _peer(_labels("ray"), node_types=["head"])
    operator = _peer(OPERATOR_POD, network["kuberayOperatorNamespace"])
    api = [{"ipBlock": {"cidr": cidr}} for cidr in network["kubernetesApiCidrs"]]
    return _policy(
        values,
        "stt-ray-head",
        head["podSelector"],
        ingress=[{"from": [operator], "ports": _ports(DASHBOARD_PORT, SERVE_PORT)}],
        egress=[{"to": api, "ports": _ports(443, 6443)}],
    )


def network_policies(values: dict[str, Any]) -> list[Manifest]:
    """Nothing in the namespace is reachable, nor reaches out, unless a policy below allows it."""
    ray_pods = _labels("ray")
    return [
        _policy(values, "stt-default-deny", {}, ingress=[], egress=[]),
        _ray_policy(values),
        _head_policy(values),
        _policy(
            values,
            "stt-redis",
            {"matchLabels": _labels("redis")},
            ingress=[{"from": [_peer(ray_pods)], "ports": _ports(REDIS_PORT)}],
        ),
        _policy(
            values,
            "stt-gcs-redis",
            {"matchLabels": _labels("gcs-redis")},
            ingress=[{"from": [_peer(ray_pods, node_types=["head", "redis-cleanup"])], "ports": _ports(REDIS_PORT)}],
        ),
    ]


def monitoring(values: dict[str, Any]) -> list[Manifest]:
    """Prometheus scrapes every Ray pod's metrics port (the service's own metrics are exported there)
    and evaluates the alert rules; Grafana's sidecar picks the dashboard up from the labelled ConfigMap."""
    namespace = values["namespace"]
    dashboard = json.loads((KUBERAY / "grafana" / "stt-dashboard.json").read_text())
    alerts = yaml.safe_load((KUBERAY / "prometheus" / "stt-alerts.yaml").read_text())
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": "stt-ray", "namespace": namespace, "labels": _labels("monitoring")},
            "spec": {
                "selector": {"matchLabels": _labels("ray")},
                "podMetricsEndpoints": [{"port": "metrics", "interval": "15s"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "stt", "namespace": namespace, "labels": _labels("monitoring")},
            "spec": {"groups": alerts["groups"]},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "stt-grafana-dashboard",
                "namespace": namespace,
                "labels": {**_labels("monitoring"), "grafana_dashboard": "1"},
            },
            "data": {"stt-dashboard.json": json.dumps(dashboard, indent=2)},
        },
    ]


def manifests(values: dict[str, Any]) -> list[Manifest]:
    return [ray_service(values), *edge(values), *redis(values), *network_policies(values), *monitoring(values)]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2, the dashboard) as readable `|` blocks; a value used twice
    written out twice (no &id001 anchors: each policy and pod reads on its own)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def render(values_file: Path) -> str:
    values = yaml.safe_load(values_file.read_text())
    header = (
        f"# Generated by tools/kuberay.py from configs/prod.yaml and kuberay/values/{values_file.name}: "
        "edit those, then run it again.\n"
    )
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
        sys.exit(f"out of date (run python -m tools.kuberay): {', '.join(str(p.relative_to(ROOT)) for p in stale)}")


if __name__ == "__main__":
    main()
