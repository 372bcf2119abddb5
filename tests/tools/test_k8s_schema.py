"""tools.k8s_schema against kubernetes-validate's strict schemas and the real KubeRay v1.7.0 CRDs."""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.versions import DEFAULT_EKS_VERSION, RAY_IMAGE_CPU, RAY_VERSION
from tools.k8s_schema import (
    KARPENTER_CRDS_ENV,
    KUBERAY_CRDS_ENV,
    karpenter_crd_dir,
    core_schema_version,
    format_path,
    strict_schema,
    validate_dir,
    validate_object,
)

K8S = DEFAULT_EKS_VERSION

Obj = dict[str, Any]


def deployment() -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "job-api", "namespace": "vision", "labels": {"app": "job-api"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "job-api"}},
            "template": {
                "metadata": {"labels": {"app": "job-api"}},
                "spec": {
                    "containers": [
                        {
                            "name": "api",
                            "image": "example/job-api:1.0.0",
                            "ports": [{"containerPort": 8000}],
                            "resources": {"requests": {"cpu": 1, "memory": "2Gi"}, "limits": {"cpu": "1500m"}},
                        }
                    ]
                },
            },
        },
    }


def namespace() -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vision", "labels": {"team": "vision"}}}


def resource_quota() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "vision-quota", "namespace": "vision"},
        "spec": {"hard": {"requests.cpu": 32, "requests.memory": "128Gi", "requests.nvidia.com/gpu": "4"}},
    }


def ray_container(name: str, cpu: int | str, memory: str) -> Obj:
    return {
        "name": name,
        "image": RAY_IMAGE_CPU,
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
    }


def ray_cluster_spec() -> Obj:
    return {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": True,
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0"},
            "template": {
                "metadata": {"labels": {"team": "vision"}},
                "spec": {
                    "containers": [
                        {
                            **ray_container("ray-head", 2, "8Gi"),
                            "ports": [
                                {"containerPort": 6379, "name": "gcs-server"},
                                {"containerPort": 8265, "name": "dashboard"},
                                {"containerPort": 10001, "name": "client"},
                            ],
                        }
                    ]
                },
            },
        },
        "workerGroupSpecs": [
            {
                "groupName": "cpu",
                "replicas": 1,
                "minReplicas": 0,
                "maxReplicas": 4,
                "rayStartParams": {},
                "template": {"spec": {"containers": [ray_container("ray-worker", "4", "16Gi")]}},
            }
        ],
    }


def ray_cluster() -> Obj:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "vision-dev", "namespace": "vision"},
        "spec": ray_cluster_spec(),
    }


def ray_job() -> Obj:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "train-resnet", "namespace": "vision"},
        "spec": {
            "entrypoint": "python -m jobs.train --epochs 1",
            "runtimeEnvYAML": "working_dir: /app\n",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "submissionMode": "K8sJobMode",
            "rayClusterSpec": ray_cluster_spec(),
        },
    }


def ray_service() -> Obj:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "classifier", "namespace": "vision"},
        "spec": {
            "serveConfigV2": "applications:\n- name: classifier\n  import_path: jobs.serve:app\n",
            "rayClusterConfig": ray_cluster_spec(),
        },
    }


def pod_monitor_crd() -> Obj:
    """A trimmed-down prometheus-operator PodMonitor CRD, enough to exercise extra_crds."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "podmonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": "PodMonitor", "plural": "podmonitors"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {
                                    "type": "object",
                                    "required": ["selector"],
                                    "properties": {
                                        "selector": {
                                            "type": "object",
                                            "properties": {
                                                "matchLabels": {
                                                    "type": "object",
                                                    "additionalProperties": {"type": "string"},
                                                }
                                            },
                                        },
                                        "podMetricsEndpoints": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {"port": {"type": "string"}},
                                            },
                                        },
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def pod_monitor() -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "ray-workers", "namespace": "vision"},
        "spec": {"selector": {"matchLabels": {"ray.io/is-ray-node": "yes"}}, "podMetricsEndpoints": [{"port": "metrics"}]},
    }


# ---------------------------------------------------------------- core kinds


@pytest.mark.parametrize("make", [deployment, namespace, resource_quota])
def test_valid_core_objects(make: Callable[[], Obj]) -> None:
    assert validate_object(make(), K8S) == []


def test_deployment_unknown_field_rejected_at_its_path() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert validate_object(obj, K8S) == [
        "Deployment/job-api: spec.template.spec.containers[0].imagePullPolice: unknown field"
    ]


def test_deployment_wrong_type_rejected() -> None:
    obj = deployment()
    obj["spec"]["replicas"] = "two"
    errors = validate_object(obj, K8S)
    assert len(errors) == 1
    assert errors[0].startswith("Deployment/job-api: spec.replicas: 'two' is not of type")


def test_namespace_unknown_metadata_field_rejected() -> None:
    obj = namespace()
    obj["metadata"]["label"] = {"team": "vision"}
    assert validate_object(obj, K8S) == ["Namespace/vision: metadata.label: unknown field"]


def test_resource_quota_quantity_types() -> None:
    obj = resource_quota()
    obj["spec"]["hard"]["limits.cpu"] = ["8"]
    errors = validate_object(obj, K8S)
    assert len(errors) == 1 and errors[0].startswith("ResourceQuota/vision-quota: spec.hard.limits.cpu: ")
    typo = resource_quota()
    typo["spec"]["hardLimits"] = typo["spec"].pop("hard")
    assert validate_object(typo, K8S) == ["ResourceQuota/vision-quota: spec.hardLimits: unknown field"]


def test_missing_name_and_kind_reported() -> None:
    obj = namespace()
    del obj["metadata"]["name"]
    assert validate_object(obj, K8S) == ["Namespace/<no name>: metadata.name: required, a non-empty string"]
    no_kind = deployment()
    del no_kind["kind"]
    assert validate_object(no_kind, K8S) == ["<no kind>/job-api: kind: required, a non-empty string"]


def test_schema_version_is_the_shipped_release_of_that_minor() -> None:
    assert core_schema_version("1.34") == "1.34.0"
    assert core_schema_version("v1.33.5") == "1.33.0"
    with pytest.raises(ValueError, match="no schemas for Kubernetes 1.12"):
        validate_object(namespace(), "1.12")


# ---------------------------------------------------------------- ray.io kinds


@pytest.mark.parametrize("make", [ray_cluster, ray_job, ray_service])
def test_valid_kuberay_objects(make: Callable[[], Obj]) -> None:
    assert validate_object(make(), K8S) == []


def test_ray_cluster_deep_unknown_field_rejected() -> None:
    obj = ray_cluster()
    obj["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resource"] = {"limits": {"cpu": 1}}
    assert validate_object(obj, K8S) == [
        "RayCluster/vision-dev: spec.headGroupSpec.template.spec.containers[0].resource: unknown field"
    ]


def test_unknown_field_in_ray_job_cluster_spec_and_metadata() -> None:
    obj = ray_job()
    obj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    obj["metadata"]["label"] = {"a": "b"}
    assert validate_object(obj, K8S) == [
        "RayJob/train-resnet: spec.rayClusterSpec.workerGroupSpecs[0].maxReplica: unknown field",
        "RayJob/train-resnet: metadata.label: unknown field",
    ]


def test_int_or_string_quantities() -> None:
    obj = ray_cluster()
    limits = obj["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    limits.update({"cpu": 1, "memory": "2Gi", "nvidia.com/gpu": 1})
    assert validate_object(obj, K8S) == []
    limits["cpu"] = True
    limits["memory"] = {"value": 2}
    assert validate_object(obj, K8S) == [
        "RayCluster/vision-dev: spec.headGroupSpec.template.spec.containers[0].resources.limits.cpu: "
        "True is not of type 'integer', 'string'",
        "RayCluster/vision-dev: spec.headGroupSpec.template.spec.containers[0].resources.limits.memory: "
        "{'value': 2} is not of type 'integer', 'string'",
    ]


def test_wrong_type_in_ray_cluster() -> None:
    obj = ray_cluster()
    obj["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "4"
    assert validate_object(obj, K8S) == [
        "RayCluster/vision-dev: spec.workerGroupSpecs[0].maxReplicas: '4' is not of type 'integer'"
    ]


def test_missing_required_fields_rejected() -> None:
    obj = ray_cluster()
    del obj["spec"]["headGroupSpec"]
    del obj["spec"]["workerGroupSpecs"][0]["groupName"]
    assert validate_object(obj, K8S) == [
        "RayCluster/vision-dev: spec: 'headGroupSpec' is a required property",
        "RayCluster/vision-dev: spec.workerGroupSpecs[0]: 'groupName' is a required property",
    ]
    service = ray_service()
    del service["spec"]["rayClusterConfig"]
    assert validate_object(service, K8S) == [
        "RayService/classifier: spec: 'rayClusterConfig' is a required property"
    ]


def test_duplicate_list_map_keys_rejected() -> None:
    obj = ray_cluster()
    ports = obj["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    # protocol defaults to TCP, so these two are the same map key.
    ports.append({"containerPort": 6379, "protocol": "TCP", "name": "redis"})
    errors = validate_object(obj, K8S)
    assert errors == [
        "RayCluster/vision-dev: spec.headGroupSpec.template.spec.containers[0].ports[3]: "
        'duplicate entry {"containerPort": 6379, "protocol": "TCP"} (same as item 0)'
    ]


def test_ray_name_must_be_dns_1035_label() -> None:
    for bad in ("Vision", "1vision", "vision-", "v" * 64):
        obj = ray_cluster()
        obj["metadata"]["name"] = bad
        errors = validate_object(obj, K8S)
        assert len(errors) == 1 and "is not a DNS-1035 label" in errors[0], bad
    obj = ray_cluster()
    obj["metadata"]["name"] = "v" * 63
    assert validate_object(obj, K8S) == []


def test_unserved_ray_version_rejected() -> None:
    obj = ray_cluster()
    obj["apiVersion"] = "ray.io/v2"
    assert validate_object(obj, K8S) == [
        "RayCluster/vision-dev: apiVersion: ray.io/v2 is not served for RayCluster; served: ray.io/v1, ray.io/v1alpha1"
    ]


def test_unknown_ray_kind_is_unknown() -> None:
    obj = ray_cluster()
    obj["kind"] = "RayClusterr"
    errors = validate_object(obj, K8S)
    assert len(errors) == 1 and "unknown kind RayClusterr in ray.io/v1" in errors[0]


def test_kuberay_crd_location_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(KUBERAY_CRDS_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=KUBERAY_CRDS_ENV):
        validate_object(ray_cluster(), K8S)


def test_karpenter_kinds_validate_against_the_pinned_karpenter_crds(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    assert karpenter_crd_dir().name == "v1.13.0" and (karpenter_crd_dir() / "karpenter.sh_nodepools.yaml").is_file()
    node_pool = {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpu"},
                 "spec": {"template": {"spec": {"requirements": [],
                                                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                                 "name": "gpu"}}},
                          "limits": {"nvidia.com/gpu": "4"}}}
    assert validate_object(node_pool, K8S) == []
    node_pool["spec"]["limit"] = node_pool["spec"].pop("limits")
    assert validate_object(node_pool, K8S) == ["NodePool/gpu: spec.limit: unknown field"]
    monkeypatch.setenv(KARPENTER_CRDS_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=KARPENTER_CRDS_ENV):
        validate_object(node_pool, K8S)


# ---------------------------------------------------------------- unknown kinds, extra CRDs


def test_unknown_kind_is_an_error_unless_allowed() -> None:
    assert validate_object(pod_monitor(), K8S) == [
        "PodMonitor/ray-workers: kind: unknown kind PodMonitor in monitoring.coreos.com/v1: no schema in "
        f"Kubernetes {K8S} nor in the CRDs given (pass its CRD file in extra_crds)"
    ]
    assert validate_object(pod_monitor(), K8S, allow_unknown_kinds=True) == []


def test_extra_crd_files_validate_their_kinds(tmp_path: Path) -> None:
    crd = tmp_path / "podmonitor.yaml"
    crd.write_text(yaml.safe_dump(pod_monitor_crd()))
    assert validate_object(pod_monitor(), K8S, extra_crds=[crd]) == []
    bad = pod_monitor()
    bad["spec"]["podMetricsEndpoints"][0]["path"] = "/metrics"
    del bad["spec"]["selector"]
    assert validate_object(bad, K8S, extra_crds=[tmp_path]) == [
        "PodMonitor/ray-workers: spec: 'selector' is a required property",
        "PodMonitor/ray-workers: spec.podMetricsEndpoints[0].path: unknown field",
    ]


# ---------------------------------------------------------------- structural schema conversion


def test_strict_schema_extensions() -> None:
    converted = strict_schema(
        {
            "type": "object",
            "properties": {
                "port": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
                "when": {"type": "string", "nullable": True, "enum": ["a"]},
                "free": {"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-preserve-unknown-fields": True},
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
                "embedded": {"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    )
    props = converted["properties"]
    assert converted["additionalProperties"] is False
    assert props["port"]["type"] == ["integer", "string"] and "anyOf" not in props["port"]
    assert props["when"]["type"] == ["string", "null"] and props["when"]["enum"] == ["a", None]
    assert "additionalProperties" not in props["free"]
    assert props["map"]["additionalProperties"] == {"type": "string"}
    assert props["embedded"]["required"] == ["apiVersion", "kind"]
    assert set(props["embedded"]["properties"]) == {"apiVersion", "kind", "metadata"}
    assert "additionalProperties" not in props["embedded"]


def test_format_path() -> None:
    assert format_path(["spec", "containers", 0, "image"]) == "spec.containers[0].image"
    assert format_path([]) == "<root>"


# ---------------------------------------------------------------- directories


def test_validate_dir_reports_per_file(tmp_path: Path) -> None:
    manifests = tmp_path / "platform" / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "namespace.yaml").write_text(yaml.safe_dump_all([namespace(), resource_quota()]) + "---\n")
    broken = copy.deepcopy(ray_cluster())
    broken["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    (manifests / "ray.yaml").write_text(yaml.safe_dump_all([ray_service(), broken]))
    (manifests / "junk.yml").write_text("- just\n- a list\n")
    (manifests / "notes.txt").write_text("ignored")
    assert validate_dir(tmp_path, K8S) == {
        "platform/manifests/junk.yml": ["document 0: expected a Kubernetes object, got list"],
        "platform/manifests/namespace.yaml": [],
        "platform/manifests/ray.yaml": [
            "RayCluster/vision-dev: spec.headGroupSpec.template.spec.containers[0].imagePullPolicy: "
            "3 is not of type 'string'"
        ],
    }
    with pytest.raises(NotADirectoryError):
        validate_dir(tmp_path / "nope", K8S)
