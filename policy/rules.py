"""Policy rules as plain functions over (resource type, properties); no Pulumi import.

Each resource rule returns the list of violation messages for one resource; stack rules
take every resource of the stack. The pack (policy/pack.py) wraps them for CrossGuard;
tests and `python -m tools.policy_check` run them over offline renders.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from components.constants import (
    DO_NOT_DISRUPT_ANNOTATION, EKS_TAINT_EFFECT, ENVIRONMENT_TAG, GPU_NODE_LABEL, GPU_RESOURCE, GPU_TAINT_EFFECT,
    GPU_TAINT_KEY, KUEUE_GROUP, NO_FALLBACK_ANNOTATION, NO_FALLBACK_TAG, QUEUE_NAME_LABEL, RAY_CLIENT_PORT,
    RAY_DASHBOARD_PORT, RAY_GCS_PORT, RAY_GROUP, RAY_SERVE_PORT, SAFE_TO_EVICT_ANNOTATION, TEAM_LABEL,
)

Props = Mapping[str, Any]
Resource = tuple[str, Props]

# The program's own values (components.constants imports nothing), so the rules cannot drift from them.
RAY_PORTS = {RAY_GCS_PORT, RAY_DASHBOARD_PORT, RAY_SERVE_PORT, RAY_CLIENT_PORT}
INTERNAL_LB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
}
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
SPOT_SHARE_MIN = 0.25
MAX_GPU_NODES = 32


def _walk(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def pod_specs(props: Props) -> Iterator[Mapping[str, Any]]:
    """Every pod spec inside a Kubernetes object (Deployments, RayCluster groups, RayJob submitters...)."""
    for node in _walk(props):
        if isinstance(node.get("containers"), list):
            yield node


def containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def ray_cluster_specs(type_: str, props: Props) -> list[Mapping[str, Any]]:
    spec = props.get("spec") or {}
    if type_ == "kubernetes:ray.io/v1:RayCluster":
        return [spec]
    if type_ == "kubernetes:ray.io/v1:RayJob":
        return [spec["rayClusterSpec"]] if "rayClusterSpec" in spec else []
    if type_ == "kubernetes:ray.io/v1:RayService":
        return [spec["rayClusterConfig"]] if "rayClusterConfig" in spec else []
    return []


def _name(props: Props) -> str:
    return str((props.get("metadata") or {}).get("name", "?"))


# --------------------------------------------------------------------------- mandatory


def gpu_pool_tainted(type_: str, props: Props) -> list[str]:
    """Every GPU node group carries the nvidia.com/gpu NoSchedule taint, so CPU pods stay off GPUs."""
    if type_ != NODE_GROUP:
        return []
    is_gpu = "NVIDIA" in str(props.get("amiType", "")) or (props.get("labels") or {}).get(GPU_NODE_LABEL)
    if not is_gpu:
        return []
    taints = props.get("taints") or []
    if not any(t.get("key") == GPU_TAINT_KEY and t.get("effect") == EKS_TAINT_EFFECT for t in taints):
        return [f"GPU node group without the {GPU_TAINT_KEY}:NoSchedule taint"]
    return []


def _template(props: Props) -> Mapping[str, Any]:
    return ((props.get("spec") or {}).get("template") or {})


def _is_gpu_node_pool(props: Props) -> bool:
    return ((_template(props).get("metadata") or {}).get("labels") or {}).get(GPU_NODE_LABEL) == "true"


def _capacity_types(props: Props) -> list[str]:
    for req in (_template(props).get("spec") or {}).get("requirements") or []:
        if req.get("key") == CAPACITY_TYPE_LABEL and req.get("operator") == "In":
            return list(req.get("values") or [])
    return ["spot", "on-demand"]  # Karpenter's default when a NodePool does not say


def gpu_node_pools_tainted_and_limited(type_: str, props: Props) -> list[str]:
    """Every GPU Karpenter NodePool taints its nodes nvidia.com/gpu:NoSchedule and limits nvidia.com/gpu."""
    if type_ != NODE_POOL or not _is_gpu_node_pool(props):
        return []
    problems = []
    taints = (_template(props).get("spec") or {}).get("taints") or []
    if not any(t.get("key") == GPU_TAINT_KEY and t.get("effect") == GPU_TAINT_EFFECT for t in taints):
        problems.append(f"GPU NodePool {_name(props)} without the {GPU_TAINT_KEY}:NoSchedule taint")
    if not ((props.get("spec") or {}).get("limits") or {}).get(GPU_RESOURCE):
        problems.append(f"GPU NodePool {_name(props)} has no {GPU_RESOURCE} limit: it could grow without bound")
    return problems


def spot_gpu_pools_fall_back(type_: str, props: Props) -> list[str]:
    """A spot GPU pool falls back to on-demand, or says why not (NodePool annotation, node group tag)."""
    if type_ == NODE_POOL and _is_gpu_node_pool(props):
        reason = ((props.get("metadata") or {}).get("annotations") or {}).get(NO_FALLBACK_ANNOTATION)
        if _capacity_types(props) == ["spot"] and not reason:
            return [f"spot-only GPU NodePool {_name(props)}: allow on-demand as fallback or give the reason in "
                    f"the annotation {NO_FALLBACK_ANNOTATION}"]
    if type_ == NODE_GROUP and props.get("capacityType") == "SPOT" and (props.get("taints") or []):
        if not (props.get("tags") or {}).get(NO_FALLBACK_TAG):
            return [f"spot GPU node group without an on-demand fallback and no reason in the tag {NO_FALLBACK_TAG}"]
    return []


def ray_heads_not_disrupted(type_: str, props: Props) -> list[str]:
    """Ray heads carry karpenter.sh/do-not-disrupt and the Cluster Autoscaler's safe-to-evict: "false"."""
    problems = []
    wanted = {DO_NOT_DISRUPT_ANNOTATION: "true", SAFE_TO_EVICT_ANNOTATION: "false"}
    for spec in ray_cluster_specs(type_, props):
        template = (spec.get("headGroupSpec") or {}).get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        missing = {k: v for k, v in wanted.items() if annotations.get(k) != v}
        if missing:
            problems.append(f"{_name(props)}: head pod may be disrupted voluntarily; annotate it {missing}")
    return problems


def ray_gpu_groups_tolerate_and_request(type_: str, props: Props) -> list[str]:
    """GPU worker groups tolerate the GPU taint and ask for GPUs in requests and limits; heads ask for none."""
    problems: list[str] = []
    for spec in ray_cluster_specs(type_, props):
        head = (spec.get("headGroupSpec") or {}).get("template", {}).get("spec", {})
        for c in containers(head):
            res = c.get("resources") or {}
            if GPU_RESOURCE in (res.get("requests") or {}) or GPU_RESOURCE in (res.get("limits") or {}):
                problems.append(f"{_name(props)}: head container {c.get('name')} requests GPUs")
        for group in spec.get("workerGroupSpecs") or []:
            pod = (group.get("template") or {}).get("spec") or {}
            gpu_containers = [c for c in pod.get("containers", [])
                              if GPU_RESOURCE in ((c.get("resources") or {}).get("limits") or {})
                              or GPU_RESOURCE in ((c.get("resources") or {}).get("requests") or {})
                              or str(c.get("image", "")).endswith("-gpu")]
            if not gpu_containers:
                continue
            label = f"{_name(props)}: worker group {group.get('groupName')}"
            if not any(t.get("key") == GPU_TAINT_KEY for t in pod.get("tolerations") or []):
                problems.append(f"{label} does not tolerate the {GPU_TAINT_KEY} taint")
            for c in gpu_containers:
                res = c.get("resources") or {}
                req, lim = (res.get("requests") or {}).get(GPU_RESOURCE), (res.get("limits") or {}).get(GPU_RESOURCE)
                if req is None or lim is None or str(req) != str(lim):
                    problems.append(f"{label}: {GPU_RESOURCE} must be set equally in requests and limits "
                                    f"(requests={req}, limits={lim})")
    return problems


def _is_internal(annotations: Mapping[str, str]) -> bool:
    return any(annotations.get(k) == v for k, v in INTERNAL_LB_ANNOTATIONS.items())


def no_public_ray_endpoints(type_: str, props: Props) -> list[str]:
    """No Ray dashboard, GCS, client or Serve port behind a public load balancer."""
    if type_ == "kubernetes:core/v1:Service":
        spec = props.get("spec") or {}
        ports = {p.get("port") for p in spec.get("ports") or []} | {p.get("targetPort") for p in spec.get("ports") or []}
        annotations = (props.get("metadata") or {}).get("annotations") or {}
        if spec.get("type") == "LoadBalancer" and ports & RAY_PORTS and not _is_internal(annotations):
            return [f"Service {_name(props)} exposes Ray ports {sorted(ports & RAY_PORTS)} on a public load balancer"]
        return []
    problems = []
    for spec in ray_cluster_specs(type_, props):
        head = spec.get("headGroupSpec") or {}
        svc = head.get("headService") or {}
        annotations = (svc.get("metadata") or {}).get("annotations") or {}
        lb_template = (svc.get("spec") or {}).get("type") == "LoadBalancer"
        if (head.get("serviceType") == "LoadBalancer" or lb_template) and not _is_internal(annotations):
            problems.append(f"{_name(props)}: head service is a public LoadBalancer")
        elif head.get("serviceType") == "LoadBalancer":
            # KubeRay copies `serviceType`, not the template's annotations, to `<name>-serve-svc`.
            problems.append(f"{_name(props)}: headGroupSpec.serviceType LoadBalancer makes the Serve service a "
                            "public LoadBalancer; set the type on headService.spec with its internal annotations")
    if type_ == "kubernetes:ray.io/v1:RayService":
        svc = (props.get("spec") or {}).get("serveService") or {}
        if (svc.get("spec") or {}).get("type") == "LoadBalancer" and not _is_internal(
                (svc.get("metadata") or {}).get("annotations") or {}):
            problems.append(f"{_name(props)}: Serve service is a public LoadBalancer")
    return problems


IMAGE_TAG = re.compile(r"^[^@]+:(?P<tag>[\w][\w.-]*)$|@sha256:[0-9a-f]{64}$")


def images_pinned(type_: str, props: Props) -> list[str]:
    """Container images carry an explicit version tag or digest, never `latest`."""
    if not type_.startswith("kubernetes:"):
        return []
    problems = []
    for spec in pod_specs(props):
        for c in containers(spec):
            image = str(c.get("image", ""))
            m = IMAGE_TAG.search(image.rsplit("/", 1)[-1]) if image else None
            if not m or (m.group("tag") or "") == "latest":
                problems.append(f"{_name(props)}: container {c.get('name')} image {image!r} is not pinned to a version")
    if type_ == "kubernetes:helm.sh/v3:Release":
        if not props.get("version"):
            problems.append(f"Helm release {props.get('chart')} has no pinned chart version")
        for node in _walk(props.get("values") or {}):
            if node.get("tag") == "latest":
                problems.append(f"Helm release {props.get('chart')} sets an image tag 'latest'")
    return problems


def eks_endpoint_restricted(type_: str, props: Props) -> list[str]:
    """The EKS public endpoint is off in prod and restricted to listed CIDRs elsewhere."""
    if type_ != "aws:eks/cluster:Cluster":
        return []
    vpc = props.get("vpcConfig") or {}
    if not vpc.get("endpointPublicAccess", True):
        return []
    environment = (props.get("tags") or {}).get(ENVIRONMENT_TAG)
    if environment == "prod":
        return ["prod EKS clusters must not have a public API endpoint"]
    cidrs = vpc.get("publicAccessCidrs") or []
    if not cidrs or "0.0.0.0/0" in cidrs:
        return [f"public API endpoint open to {cidrs or 'everyone (no CIDRs)'}; list specific CIDRs"]
    return []


def imdsv2_required(type_: str, props: Props) -> list[str]:
    """Nodes require IMDSv2: launch templates demand tokens, node groups use a launch template."""
    if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        if (props.get("metadataOptions") or {}).get("httpTokens") != "required":
            return ["launch template does not require IMDSv2 (metadataOptions.httpTokens must be 'required')"]
    if type_ == NODE_GROUP and not props.get("launchTemplate"):
        return ["node group without a launch template cannot enforce IMDSv2"]
    return []


RAY_IMAGE = re.compile(r"(^|/)ray(-ml)?:(?P<version>\d+\.\d+\.\d+)")


def ray_image_matches_version(type_: str, props: Props) -> list[str]:
    """Every Ray container image runs the Ray version the CR declares in rayVersion."""
    problems = []
    for spec in ray_cluster_specs(type_, props):
        declared = spec.get("rayVersion")
        for pod in pod_specs(spec):
            for c in containers(pod):
                m = RAY_IMAGE.search(str(c.get("image", "")))
                if m and m.group("version") != declared:
                    problems.append(f"{_name(props)}: image {c.get('image')} runs Ray {m.group('version')} "
                                    f"but rayVersion is {declared}")
    return problems


def team_namespaces_have_quota(resources: list[Resource]) -> list[str]:
    """Every team namespace comes with a ResourceQuota in the same stack."""
    teams = {_name(p) for t, p in resources if t == "kubernetes:core/v1:Namespace"
             and TEAM_LABEL in ((p.get("metadata") or {}).get("labels") or {})}
    quotas = {(p.get("metadata") or {}).get("namespace") for t, p in resources
              if t == "kubernetes:core/v1:ResourceQuota"}
    return [f"team namespace {ns} has no ResourceQuota" for ns in sorted(teams - quotas)]


def _kind(type_: str, group: str, kind: str) -> bool:
    """`kubernetes:<group>/<version>:<kind>` of any served version."""
    return type_.startswith(f"kubernetes:{group}/") and type_.endswith(f":{kind}")


def queued_namespaces_name_queues(resources: list[Resource]) -> list[str]:
    """In a namespace with a Kueue LocalQueue, every RayJob and RayCluster names one of its queues."""
    queues: dict[str, set[str]] = {}
    for t, p in resources:
        if _kind(t, KUEUE_GROUP, "LocalQueue"):
            queues.setdefault(str((p.get("metadata") or {}).get("namespace")), set()).add(_name(p))
    problems = []
    for t, p in resources:
        if not (_kind(t, RAY_GROUP, "RayJob") or _kind(t, RAY_GROUP, "RayCluster")):
            continue
        meta = p.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        if namespace not in queues:
            continue
        named = (meta.get("labels") or {}).get(QUEUE_NAME_LABEL)
        if named not in queues[namespace]:
            problems.append(f"{t.rsplit(':', 1)[-1]} {_name(p)} in queued namespace {namespace} names "
                            f"{'no queue' if named is None else f'queue {named!r}'}; its LocalQueues: "
                            f"{', '.join(sorted(queues[namespace]))} (label {QUEUE_NAME_LABEL})")
    return problems


# --------------------------------------------------------------------------- advisory (cost)


def _gpu_pools(resources: list[Resource]) -> list[tuple[int, bool]]:
    """(max nodes, may run spot) of every GPU pool, node group or NodePool."""
    pools = [((p.get("scalingConfig") or {}).get("maxSize", 0), p.get("capacityType") == "SPOT")
             for t, p in resources if t == NODE_GROUP and (p.get("taints") or [])]
    pools += [(int(((p.get("spec") or {}).get("limits") or {}).get("nodes", 0)), "spot" in _capacity_types(p))
              for t, p in resources if t == NODE_POOL and _is_gpu_node_pool(p)]
    return pools


def spot_share(resources: list[Resource]) -> list[str]:
    pools = _gpu_pools(resources)
    total = sum(size for size, _ in pools)
    spot = sum(size for size, may_spot in pools if may_spot)
    if total and spot / total < SPOT_SHARE_MIN:
        return [f"only {spot}/{total} GPU nodes can be spot; consider a spot pool for interruptible work"]
    return []


def max_gpu_nodes(resources: list[Resource]) -> list[str]:
    total = sum(size for size, _ in _gpu_pools(resources))
    if total > MAX_GPU_NODES:
        return [f"GPU pools can grow to {total} nodes (> {MAX_GPU_NODES}); check the budget"]
    return []


RESOURCE_RULES = {
    "gpu-node-pools-tainted": gpu_pool_tainted,
    "gpu-karpenter-node-pools-tainted-and-limited": gpu_node_pools_tainted_and_limited,
    "spot-gpu-pools-fall-back-to-on-demand": spot_gpu_pools_fall_back,
    "ray-heads-not-disrupted": ray_heads_not_disrupted,
    "ray-gpu-groups-tolerate-and-request-gpus": ray_gpu_groups_tolerate_and_request,
    "no-public-ray-endpoints": no_public_ray_endpoints,
    "container-images-pinned": images_pinned,
    "eks-endpoint-restricted": eks_endpoint_restricted,
    "imdsv2-required": imdsv2_required,
    "ray-image-matches-ray-version": ray_image_matches_version,
}
STACK_RULES = {"team-namespaces-have-quota": team_namespaces_have_quota,
               "queued-namespaces-name-queues": queued_namespaces_name_queues}
ADVISORY_STACK_RULES = {"cost-spot-share": spot_share, "cost-max-gpu-nodes": max_gpu_nodes}


def check_stack(resources: list[Resource]) -> dict[str, list[str]]:
    """Run every rule over a stack's resources: {rule name: violations}, mandatory and advisory."""
    results: dict[str, list[str]] = {}
    for name, rule in RESOURCE_RULES.items():
        results[name] = [msg for t, p in resources for msg in rule(t, p)]
    for name, stack_rule in {**STACK_RULES, **ADVISORY_STACK_RULES}.items():
        results[name] = stack_rule(resources)
    return results
