"""The pure RayCluster spec builder: scheduling, GPU isolation, autoscaling, GCS FT, auth, schema."""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
import yaml

from components.specs import raycluster as spec_module
from components.config.fit import (
    AUTOSCALER_CONTAINER, ContainerSize, head_pod_containers, max_demand, quantity_value, worker_pod_containers,
)
from components.config.model import (
    GcsFaultToleranceConfig, HeadConfig, RayClusterConfig, RayObservability, WorkerGroupConfig,
)
from components.constants import (
    GPU_NODE_LABEL, GPU_RESOURCE, GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, NODE_POOL_LABEL, PROJECT,
    RAY_DASHBOARD_PORT, RAY_METRICS_PORT, NODE_ROLE_LABEL, ROLE_CPU, ROLE_SYSTEM,
)
from components.specs.raycluster import (
    AUTH_TOKEN_KEY, INTERNAL_LB_ANNOTATIONS, PART_OF_LABEL, REDIS_PASSWORD_KEY, TEAM_LABEL, auth_secret_name,
    gcs_volume_claim, gcs_volume_claim_name, ray_cluster, redis_secret_name,
)
from components.versions import DEFAULT_EKS_VERSION, RAY_IMAGE_CPU, RAY_IMAGE_GPU, RAY_VERSION
from policy import rules
from tests.stacks import quantity
from tools.k8s_schema import validate_object

Obj = dict[str, Any]
NS, TEAM = "team-vision", "vision"

CPU_GROUP = WorkerGroupConfig(name="cpu", cpu="4", memory="16Gi", max_replicas=3)
GPU_GROUP = WorkerGroupConfig(name="a10g", cpu="6", memory="24Gi", gpus=1, replicas=1, min_replicas=1,
                              max_replicas=4, shm_size="4Gi", gpu_pool="g5-serving")
ANY_GPU_GROUP = WorkerGroupConfig(name="any-gpu", cpu="8", memory="64Gi", gpus=4, max_replicas=2)
BASE = RayClusterConfig(name="train", head=HeadConfig(cpu="2", memory="8Gi", shm_size="3Gi"),
                        worker_groups=(CPU_GROUP, GPU_GROUP, ANY_GPU_GROUP), idle_timeout_seconds=240,
                        upscaling_mode="Conservative")
REDIS = replace(BASE, gcs_fault_tolerance=GcsFaultToleranceConfig(backend="redis", redis_address="redis:6379"))
ROCKSDB = replace(BASE, gcs_fault_tolerance=GcsFaultToleranceConfig(backend="rocksdb", storage_size="20Gi"))
AUTH = replace(BASE, auth=True)
INTERNAL_LB = replace(BASE, head=replace(BASE.head, service_type="LoadBalancer-internal"))
HEAD_ONLY = RayClusterConfig(name="tiny")
VARIANTS = {"base": BASE, "redis": REDIS, "rocksdb": ROCKSDB, "auth": AUTH, "internal-lb": INTERNAL_LB,
            "head-only": HEAD_ONLY}


def build(cfg: RayClusterConfig = BASE) -> Obj:
    return ray_cluster(cfg, NS, TEAM)


def head_pod(obj: Obj) -> Obj:
    return obj["spec"]["headGroupSpec"]["template"]["spec"]


def group(obj: Obj, name: str) -> Obj:
    return next(g for g in obj["spec"]["workerGroupSpecs"] if g["groupName"] == name)


def all_pods(obj: Obj) -> list[Obj]:
    return [head_pod(obj)] + [g["template"]["spec"] for g in obj["spec"]["workerGroupSpecs"]]


def env(container: Obj) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


# --------------------------------------------------------------------------- schema and purity


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_variant_validates_strictly_against_the_kuberay_crd(variant: RayClusterConfig) -> None:
    assert validate_object(build(variant), DEFAULT_EKS_VERSION) == []


def test_a_misspelled_field_would_be_caught_by_the_same_validation() -> None:
    obj = build()
    obj["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    assert any("securityContex: unknown field" in e for e in validate_object(obj, DEFAULT_EKS_VERSION))


def scribble(node: Any) -> None:
    """Empty every dict and list in `node`, in place."""
    children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        scribble(child)
    if isinstance(node, (dict, list)):
        node.clear()


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_build_is_a_new_object_the_caller_may_change(variant: RayClusterConfig) -> None:
    # No Pulumi here is tests/test_layers.py's; this is the other half of pure: nothing shared
    # between calls (a module-level dict handed out as is), so what one caller edits no other sees.
    expected = copy.deepcopy(build(variant))
    scribble(build(variant))
    assert build(variant) == expected


def test_no_object_is_shared_between_parts_of_the_manifest() -> None:
    # Shared dicts would come out of yaml.safe_dump as &id001 anchors in the rendered manifests.
    assert "&id" not in yaml.safe_dump(build(REDIS)) + yaml.safe_dump(build(INTERNAL_LB))


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
@pytest.mark.parametrize("ship_logs", [False, True], ids=["", "shipping-logs"])
def test_the_quota_math_sums_the_pods_the_builder_builds(variant: RayClusterConfig, ship_logs: bool) -> None:
    # Both read the pod sizing in config/fit.py (Ray container, the head's autoscaler sidecar, a log
    # shipper per pod); summed from the built object, the requests must be what the quota math counts.
    cfg = replace(variant, observability=RayObservability(log_shipping=ship_logs))
    obj = build(cfg)
    spec = obj["spec"]
    pods = [(head_pod(obj), 1, [spec["autoscalerOptions"]])]
    pods += [(g["template"]["spec"], g["maxReplicas"], []) for g in spec["workerGroupSpecs"]]
    cpu = memory = gpus = count = 0.0
    for pod, replicas, injected in pods:
        for container in [*pod["containers"], *pod.get("initContainers", []), *injected]:
            requests = container["resources"]["requests"]
            cpu += quantity(requests["cpu"]) * replicas
            memory += quantity(requests["memory"]) * replicas
            gpus += quantity(requests.get(GPU_RESOURCE, "0")) * replicas
        count += replicas
    need = max_demand((cfg,))
    assert (need.cpu, need.memory, need.gpus, need.pods) == (pytest.approx(cpu), pytest.approx(memory), gpus, count)


def sizes_of(containers: list[Obj]) -> dict[str, tuple[str, str, int]]:
    # autoscalerOptions has no name: KubeRay's container built from it is "autoscaler".
    sizes = {}
    for c in containers:
        requests = c["resources"]["requests"]
        sizes[c.get("name", AUTOSCALER_CONTAINER)] = (requests["cpu"], requests["memory"],
                                                      int(requests.get(GPU_RESOURCE, "0")))
    return sizes


def described(containers: tuple[ContainerSize, ...]) -> dict[str, tuple[str, str, int]]:
    return {c.name: (c.cpu, c.memory, c.gpus) for c in containers}


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
@pytest.mark.parametrize("ship_logs", [False, True], ids=["", "shipping-logs"])
def test_every_pod_runs_exactly_the_containers_of_its_sizing(variant: RayClusterConfig, ship_logs: bool) -> None:
    # Container by container (name and size), not only in sum: KubeRay names the autoscaler it
    # builds from autoscalerOptions "autoscaler"; every requests == limits.
    cfg = replace(variant, observability=RayObservability(log_shipping=ship_logs))
    obj = build(cfg)
    head = head_pod(obj)
    built = [*head["containers"], *head.get("initContainers", []), obj["spec"]["autoscalerOptions"]]
    assert sizes_of(built) == described(head_pod_containers(cfg))
    for g_cfg in cfg.worker_groups:
        pod = group(obj, g_cfg.name)["template"]["spec"]
        assert sizes_of([*pod["containers"], *pod.get("initContainers", [])]) == \
            described(worker_pod_containers(cfg, g_cfg))
    assert all(c["resources"]["requests"] == c["resources"]["limits"] for c in built)


# --------------------------------------------------------------------------- versions and images


def test_ray_version_and_images_come_from_the_one_pin() -> None:
    obj = build()
    assert obj["apiVersion"] == "ray.io/v1" and obj["kind"] == "RayCluster"
    assert obj["spec"]["rayVersion"] == RAY_VERSION
    assert head_pod(obj)["containers"][0]["image"] == RAY_IMAGE_CPU
    assert group(obj, "cpu")["template"]["spec"]["containers"][0]["image"] == RAY_IMAGE_CPU
    assert group(obj, "a10g")["template"]["spec"]["containers"][0]["image"] == RAY_IMAGE_GPU
    assert RAY_IMAGE_GPU.split(":")[1].startswith(f"{RAY_VERSION}-") and RAY_IMAGE_GPU.endswith("-gpu")
    assert rules.ray_image_matches_version("kubernetes:ray.io/v1:RayCluster", obj) == []


# --------------------------------------------------------------------------- head


def test_head_requests_no_gpu_and_cannot_see_or_reach_one() -> None:
    obj = build()
    pod = head_pod(obj)
    (container,) = pod["containers"]
    for side in ("requests", "limits"):
        assert GPU_RESOURCE not in container["resources"][side]
    assert env(container)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "tolerations" not in pod and "nodeSelector" not in pod
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": GPU_NODE_LABEL, "operator": "NotIn", "values": ["true"]},
                                        {"key": NODE_ROLE_LABEL, "operator": "NotIn", "values": [ROLE_SYSTEM]}]
    (preferred,) = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["preference"]["matchExpressions"] == [{"key": NODE_ROLE_LABEL, "operator": "In",
                                                            "values": [ROLE_CPU]}]
    params = obj["spec"]["headGroupSpec"]["rayStartParams"]
    assert params["num-gpus"] == "0" and params["num-cpus"] == "0"
    assert params["dashboard-host"] == "0.0.0.0" and params["metrics-export-port"] == str(RAY_METRICS_PORT)


def test_object_store_is_sized_from_shm_so_ray_never_spills_to_disk() -> None:
    obj = build()
    groups = [obj["spec"]["headGroupSpec"], *obj["spec"]["workerGroupSpecs"]]
    for group in groups:
        (shm,) = [v for v in group["template"]["spec"]["volumes"] if v["name"] == "dshm"]
        store = int(group["rayStartParams"]["object-store-memory"])
        assert 0 < store <= quantity_value(shm["emptyDir"]["sizeLimit"])


def test_head_resources_are_guaranteed_and_shm_is_memory_backed_at_the_configured_size() -> None:
    pod = head_pod(build())
    container = pod["containers"][0]
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "3Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["dashboard"] == RAY_DASHBOARD_PORT


def test_dashboard_is_cluster_internal_by_default() -> None:
    head_group = build()["spec"]["headGroupSpec"]
    assert head_group["serviceType"] == "ClusterIP" and "headService" not in head_group


def test_load_balancer_head_is_always_internal() -> None:
    obj = build(INTERNAL_LB)
    head_group = obj["spec"]["headGroupSpec"]
    assert head_group["headService"]["spec"]["type"] == "LoadBalancer"
    assert head_group["headService"]["metadata"]["annotations"] == INTERNAL_LB_ANNOTATIONS
    # KubeRay gives `<name>-serve-svc` this type without the annotations: it must stay cluster-internal.
    assert head_group["serviceType"] == "ClusterIP"
    assert INTERNAL_LB_ANNOTATIONS["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert rules.no_public_ray_endpoints("kubernetes:ray.io/v1:RayCluster", obj) == []


# --------------------------------------------------------------------------- workers


def test_gpu_group_requests_gpus_in_requests_and_limits_tolerates_the_taint_and_selects_its_pool() -> None:
    g = group(build(), "a10g")
    pod = g["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "6", "memory": "24Gi", GPU_RESOURCE: "1"}
    assert pod["tolerations"] == [{"key": GPU_TAINT_KEY, "operator": "Equal", "value": GPU_TAINT_VALUE,
                                   "effect": GPU_TAINT_EFFECT}]
    assert pod["nodeSelector"] == {NODE_POOL_LABEL: "g5-serving"}
    assert "affinity" not in pod and "NVIDIA_VISIBLE_DEVICES" not in env(pod["containers"][0])
    assert g["rayStartParams"]["num-gpus"] == "1"
    assert (g["replicas"], g["minReplicas"], g["maxReplicas"]) == (1, 1, 4)
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod["volumes"]


def test_gpu_group_without_a_pool_selects_any_gpu_node() -> None:
    pod = group(build(), "any-gpu")["template"]["spec"]
    assert pod["nodeSelector"] == {GPU_NODE_LABEL: "true"}
    assert pod["containers"][0]["resources"]["limits"][GPU_RESOURCE] == "4"


def test_cpu_group_stays_off_gpu_nodes_like_the_head() -> None:
    obj = build()
    g = group(obj, "cpu")
    pod = g["template"]["spec"]
    assert "tolerations" not in pod and "nodeSelector" not in pod
    assert pod["affinity"] == head_pod(obj)["affinity"]
    assert env(pod["containers"][0])["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert GPU_RESOURCE not in pod["containers"][0]["resources"]["limits"]
    assert g["rayStartParams"]["num-gpus"] == "0"


def test_policy_rules_agree_with_the_builder() -> None:
    assert rules.ray_gpu_groups_tolerate_and_request("kubernetes:ray.io/v1:RayCluster", build()) == []
    assert rules.images_pinned("kubernetes:ray.io/v1:RayCluster", build()) == []


# --------------------------------------------------------------------------- security and labels


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_ray_container_runs_unprivileged(variant: RayClusterConfig) -> None:
    obj = build(variant)
    for pod in all_pods(obj):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == spec_module.RAY_UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]}}
    assert obj["spec"]["autoscalerOptions"]["securityContext"]["allowPrivilegeEscalation"] is False


def test_workers_get_no_service_account_token_but_the_head_keeps_it_for_the_autoscaler() -> None:
    obj = build()
    assert all(g["template"]["spec"]["automountServiceAccountToken"] is False
               for g in obj["spec"]["workerGroupSpecs"])
    assert "automountServiceAccountToken" not in head_pod(obj)


def test_labels_name_the_team_on_the_object_and_every_pod() -> None:
    obj = build()
    expected = {TEAM_LABEL: TEAM, PART_OF_LABEL: PROJECT}
    assert obj["metadata"]["labels"] == expected
    assert obj["metadata"] == {"name": "train", "namespace": NS, "labels": expected,
                               "annotations": {"ray.io/enable-serve-service": "true"}}
    templates = [obj["spec"]["headGroupSpec"]["template"]] + [g["template"] for g in obj["spec"]["workerGroupSpecs"]]
    assert all(t["metadata"]["labels"] == expected for t in templates)


# --------------------------------------------------------------------------- autoscaling, GCS FT, auth


def test_autoscaling_is_on_with_idle_timeout_mode_and_sized_sidecar() -> None:
    spec = build()["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    options = spec["autoscalerOptions"]
    assert options["idleTimeoutSeconds"] == 240 and options["upscalingMode"] == "Conservative"
    assert options["resources"]["requests"] == options["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert options["version"] == spec_module.AUTOSCALER_VERSION


def test_no_fault_tolerance_or_auth_unless_configured() -> None:
    spec = build()["spec"]
    assert "gcsFaultToleranceOptions" not in spec and "authOptions" not in spec
    assert gcs_volume_claim(BASE, NS, TEAM) is None


def test_redis_fault_tolerance_reads_the_password_from_the_secret() -> None:
    options = build(REDIS)["spec"]["gcsFaultToleranceOptions"]
    assert options == {
        "backend": "redis",
        "redisAddress": "redis:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": redis_secret_name("train"),
                                                         "key": REDIS_PASSWORD_KEY}}},
    }
    assert gcs_volume_claim(REDIS, NS, TEAM) is None


def test_rocksdb_fault_tolerance_uses_the_claim_the_component_creates() -> None:
    options = build(ROCKSDB)["spec"]["gcsFaultToleranceOptions"]
    assert options == {"backend": "rocksdb", "storage": {"claimName": gcs_volume_claim_name("train")}}
    claim = gcs_volume_claim(ROCKSDB, NS, TEAM)
    assert claim is not None
    assert claim["metadata"]["name"] == gcs_volume_claim_name("train") and claim["metadata"]["namespace"] == NS
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert validate_object(claim, DEFAULT_EKS_VERSION) == []


def test_token_auth_points_at_the_platform_created_secret() -> None:
    assert build(AUTH)["spec"]["authOptions"] == {"mode": "token", "secretName": auth_secret_name("train")}
    assert AUTH_TOKEN_KEY == "auth_token"
    assert auth_secret_name("train") != "train", "must not collide with the Secret KubeRay generates itself"


def test_a_cluster_without_worker_groups_is_still_a_valid_head_only_cluster() -> None:
    obj = build(HEAD_ONLY)
    assert obj["spec"]["workerGroupSpecs"] == []
    assert head_pod(obj)["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
