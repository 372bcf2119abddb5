"""Policy rules: each with passing and violating resources; the whole pack over every shipped stack."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import ResourceValidationArgs

from policy import rules
from policy.pack import POLICIES
from tests.stacks import ids, rendered
from tools.policy_check import check
from tools.render import all_stack_files

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
RAYCLUSTER = "kubernetes:ray.io/v1:RayCluster"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}


def ray_cluster(worker_pod: dict[str, Any], head_resources: dict[str, Any] | None = None,
                version: str = "2.60.0", service_type: str = "ClusterIP") -> dict[str, Any]:
    head = {"name": "ray-head", "image": f"rayproject/ray:{version}-py311-cpu",
            "resources": head_resources or {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}}
    return {"metadata": {"name": "rc"}, "spec": {
        "rayVersion": "2.60.0",
        "headGroupSpec": {"serviceType": service_type, "template": {"spec": {"containers": [head]}}},
        "workerGroupSpecs": [{"groupName": "gpu", "template": {"spec": worker_pod}}]}}


INTERNAL = {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}


def with_head_service(cluster: dict[str, Any], type_: str | None, annotations: dict[str, str]) -> dict[str, Any]:
    cluster["spec"]["headGroupSpec"]["headService"] = {"metadata": {"annotations": annotations},
                                                       **({"spec": {"type": type_}} if type_ else {})}
    return cluster


GPU_CONTAINER = {"name": "ray-worker", "image": "rayproject/ray:2.60.0-py311-gpu",
                 "resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}}
GOOD_GPU_POD = {"containers": [GPU_CONTAINER], "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}

Case = tuple[str, Callable[[str, Any], list[str]], str, dict[str, Any], bool]
CASES: list[Case] = [
    ("tainted GPU pool", rules.gpu_pool_tainted, NODE_GROUP, {"amiType": "AL2023_x86_64_NVIDIA", "taints": [GPU_TAINT]}, True),
    ("untainted GPU pool", rules.gpu_pool_tainted, NODE_GROUP, {"amiType": "AL2023_x86_64_NVIDIA", "taints": []}, False),
    ("CPU pool needs no taint", rules.gpu_pool_tainted, NODE_GROUP, {"amiType": "AL2023_x86_64_STANDARD"}, True),
    ("GPU group ok", rules.ray_gpu_groups_tolerate_and_request, RAYCLUSTER, ray_cluster(GOOD_GPU_POD), True),
    ("GPU group without toleration", rules.ray_gpu_groups_tolerate_and_request, RAYCLUSTER,
     ray_cluster({"containers": [GPU_CONTAINER]}), False),
    ("GPU only in limits", rules.ray_gpu_groups_tolerate_and_request, RAYCLUSTER,
     ray_cluster({**GOOD_GPU_POD, "containers": [{**GPU_CONTAINER, "resources": {"limits": {"nvidia.com/gpu": 1}}}]}),
     False),
    ("GPU image without GPU request", rules.ray_gpu_groups_tolerate_and_request, RAYCLUSTER,
     ray_cluster({**GOOD_GPU_POD, "containers": [{**GPU_CONTAINER, "resources": {}}]}), False),
    ("head asks for a GPU", rules.ray_gpu_groups_tolerate_and_request, RAYCLUSTER,
     ray_cluster(GOOD_GPU_POD, head_resources={"limits": {"nvidia.com/gpu": 1}}), False),
    ("internal LB service", rules.no_public_ray_endpoints, "kubernetes:core/v1:Service",
     {"metadata": {"name": "s", "annotations": {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}},
      "spec": {"type": "LoadBalancer", "ports": [{"port": 8265}]}}, True),
    ("public dashboard LB", rules.no_public_ray_endpoints, "kubernetes:core/v1:Service",
     {"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 8265}]}}, False),
    ("public head service type", rules.no_public_ray_endpoints, RAYCLUSTER,
     ray_cluster(GOOD_GPU_POD, service_type="LoadBalancer"), False),
    ("ClusterIP head", rules.no_public_ray_endpoints, RAYCLUSTER, ray_cluster(GOOD_GPU_POD), True),
    ("internal LB head, type on its template", rules.no_public_ray_endpoints, RAYCLUSTER,
     with_head_service(ray_cluster(GOOD_GPU_POD), "LoadBalancer", INTERNAL), True),
    ("LB head template without the internal annotations", rules.no_public_ray_endpoints, RAYCLUSTER,
     with_head_service(ray_cluster(GOOD_GPU_POD), "LoadBalancer", {}), False),
    # KubeRay copies serviceType, not the annotations, to `<name>-serve-svc`: a public Serve LB.
    ("LB serviceType with an internal head template", rules.no_public_ray_endpoints, RAYCLUSTER,
     with_head_service(ray_cluster(GOOD_GPU_POD, service_type="LoadBalancer"), None, INTERNAL), False),
    ("pinned images", rules.images_pinned, RAYCLUSTER, ray_cluster(GOOD_GPU_POD), True),
    ("latest image", rules.images_pinned, "kubernetes:apps/v1:Deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}}}}, False),
    ("untagged image", rules.images_pinned, "kubernetes:apps/v1:Deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry:5000/team/app"}]}}}}, False),
    ("digest image", rules.images_pinned, "kubernetes:apps/v1:Deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "app@sha256:" + "a" * 64}]}}}}, True),
    ("helm latest tag", rules.images_pinned, "kubernetes:helm.sh/v3:Release",
     {"chart": "x", "version": "1.0.0", "values": {"image": {"tag": "latest"}}}, False),
    ("private endpoint", rules.eks_endpoint_restricted, "aws:eks/cluster:Cluster",
     {"vpcConfig": {"endpointPublicAccess": False}, "tags": {"ray-platform/environment": "prod"}}, True),
    ("restricted public endpoint", rules.eks_endpoint_restricted, "aws:eks/cluster:Cluster",
     {"vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}}, True),
    ("open public endpoint", rules.eks_endpoint_restricted, "aws:eks/cluster:Cluster",
     {"vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}}, False),
    ("public endpoint in prod", rules.eks_endpoint_restricted, "aws:eks/cluster:Cluster",
     {"vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]},
      "tags": {"ray-platform/environment": "prod"}}, False),
    ("IMDSv2 template", rules.imdsv2_required, "aws:ec2/launchTemplate:LaunchTemplate",
     {"metadataOptions": {"httpTokens": "required"}}, True),
    ("IMDSv1 allowed", rules.imdsv2_required, "aws:ec2/launchTemplate:LaunchTemplate",
     {"metadataOptions": {"httpTokens": "optional"}}, False),
    ("node group without template", rules.imdsv2_required, NODE_GROUP, {"amiType": "AL2023_x86_64_STANDARD"}, False),
    ("Ray image matches", rules.ray_image_matches_version, RAYCLUSTER, ray_cluster(GOOD_GPU_POD), True),
    ("Ray image mismatch", rules.ray_image_matches_version, RAYCLUSTER, ray_cluster(GOOD_GPU_POD, version="2.59.0"),
     False),
]


@pytest.mark.parametrize(("rule", "type_", "props", "passes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(rule: Callable[[str, Any], list[str]], type_: str, props: dict[str, Any], passes: bool) -> None:
    assert (rule(type_, props) == []) is passes, rule(type_, props)


def test_team_namespace_without_quota_is_refused() -> None:
    ns = ("kubernetes:core/v1:Namespace", {"metadata": {"name": "team-a", "labels": {"ray-platform.io/team": "a"}}})
    quota = ("kubernetes:core/v1:ResourceQuota", {"metadata": {"name": "q", "namespace": "team-a"}})
    assert rules.team_namespaces_have_quota([ns]) == ["team namespace team-a has no ResourceQuota"]
    assert rules.team_namespaces_have_quota([ns, quota]) == []


def test_in_a_queued_namespace_every_rayjob_and_raycluster_names_a_queue() -> None:
    local_queue = ("kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue", {"metadata": {"name": "a", "namespace": "team-a"}})

    def ray(kind: str, namespace: str, queue: str | None) -> rules.Resource:
        labels = {} if queue is None else {"kueue.x-k8s.io/queue-name": queue}
        return f"kubernetes:ray.io/v1:{kind}", {"metadata": {"name": "x", "namespace": namespace, "labels": labels}}

    named = [ray("RayJob", "team-a", "a"), ray("RayCluster", "team-a", "a")]
    assert rules.queued_namespaces_name_queues([local_queue, *named]) == []
    assert rules.queued_namespaces_name_queues([local_queue, ray("RayJob", "team-a", None)]) == [
        "RayJob x in queued namespace team-a names no queue; its LocalQueues: a (label kueue.x-k8s.io/queue-name)"]
    assert rules.queued_namespaces_name_queues([local_queue, ray("RayCluster", "team-a", "b")])
    # A namespace without a LocalQueue is not queued; a RayService is never queued.
    assert rules.queued_namespaces_name_queues([local_queue, ray("RayCluster", "team-b", None),
                                                ray("RayService", "team-a", None)]) == []


def test_cost_advisories() -> None:
    def pool(capacity: str, max_size: int) -> rules.Resource:
        return NODE_GROUP, {"taints": [GPU_TAINT], "capacityType": capacity, "scalingConfig": {"maxSize": max_size}}

    assert rules.spot_share([pool("ON_DEMAND", 4)]) and not rules.spot_share([pool("ON_DEMAND", 4), pool("SPOT", 4)])
    assert rules.max_gpu_nodes([pool("SPOT", 40)]) and not rules.max_gpu_nodes([pool("SPOT", 8)])


def test_crossguard_wrappers_report_through_the_sdk() -> None:
    reported: list[tuple[str, str | None]] = []
    (taint_policy,) = [p for p in POLICIES if p.name == "gpu-node-pools-tainted"]
    args = ResourceValidationArgs(resource_type=NODE_GROUP, props={"amiType": "AL2023_x86_64_NVIDIA"},
                                  urn="urn:pulumi:dev::ray-platform::aws:eks/nodeGroup:NodeGroup::g5", name="g5",
                                  opts=None, provider=None)
    taint_policy.validate(args, lambda message, urn=None: reported.append((message, urn)))
    assert reported and reported[0][1].endswith("::g5")
    assert {p.name for p in POLICIES} == {*rules.RESOURCE_RULES, *rules.STACK_RULES, *rules.ADVISORY_STACK_RULES}


STACKS = all_stack_files()


@pytest.mark.parametrize("path", STACKS, ids=ids(STACKS))
def test_every_shipped_stack_passes_the_mandatory_rules(path: Path) -> None:
    mandatory, _ = check(rendered(path))
    assert mandatory == {}
