"""Every team stack, rendered offline through the real program with the platform StackReference
mocked from that platform stack's own render; properties hold for every team stack file found."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tools.render as render
from components.config.model import DNS1035, RAYCLUSTER_NAME_MAX
from components.constants import (
    GPU_NODE_LABEL, GPU_RESOURCE, GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, NODE_POOL_LABEL,
)
from components.specs.raycluster import TEAM_LABEL, auth_secret_name, gcs_volume_claim_name, redis_secret_name
from components.versions import KUBERAY_VERSION, RAY_IMAGE_REPOSITORY
from tests.stacks import config_of, ids, manifests_of, quantity, rendered, stack_files
from tools.k8s_schema import validate_object

Obj = dict[str, Any]
TEAM = stack_files("team")
STACKS_DIR = render.STACKS_DIR
RAY_CLUSTER_TYPE = "kubernetes:ray.io/v1:RayCluster"
# Kinds a team stack may create; anything cluster-scoped besides its Namespace would reach
# beyond the team.
TEAM_KINDS = {"Namespace", "ResourceQuota", "LimitRange", "Role", "RoleBinding", "NetworkPolicy", "Secret", "ConfigMap",
              "PersistentVolumeClaim", "RayCluster", "RayJob", "RayService", "LocalQueue", "PodDisruptionBudget"}


def platform_outputs(path: Path) -> dict[str, Any]:
    short = config_of(path).platform_stack.rsplit("/", 1)[-1]
    return rendered(STACKS_DIR / f"Pulumi.{short}.yaml").outputs


def manifests(path: Path, kind: str | None = None) -> list[Obj]:
    return manifests_of(rendered(path), kind) if kind else rendered(path).manifests()


def ray_clusters(path: Path) -> list[Obj]:
    return manifests(path, "RayCluster")


def pods(cluster: Obj) -> list[tuple[str, Obj, int]]:
    """(group, pod spec, max pods) for the head and every worker group."""
    spec = cluster["spec"]
    return [("head", spec["headGroupSpec"]["template"]["spec"], 1)] + [
        (g["groupName"], g["template"]["spec"], g["maxReplicas"]) for g in spec.get("workerGroupSpecs", [])]


# --------------------------------------------------------------------------- the shipped stacks


def test_at_least_two_teams_over_two_environments_with_a_gpu_heavy_and_a_cpu_only_shape() -> None:
    assert {p.name for p in TEAM} >= {"Pulumi.vision-dev.yaml", "Pulumi.vision-prod.yaml", "Pulumi.nlp-prod.yaml"}
    configs = [config_of(p) for p in TEAM]
    assert len({c.team.name for c in configs}) >= 2 and len({c.environment for c in configs}) >= 2
    gpus = {c.stack: sum(g.gpus * g.max_replicas for rc in c.ray_clusters for g in rc.worker_groups) for c in configs}
    assert max(gpus.values()) >= 16, "a GPU-heavy team"
    assert min(gpus.values()) == 0, "a CPU-only team"
    vision_prod = config_of(STACKS_DIR / "Pulumi.vision-prod.yaml")
    assert any(c.gcs_fault_tolerance and c.gcs_fault_tolerance.backend == "redis" for c in vision_prod.ray_clusters)
    assert any(rc.auth for cfg in configs for rc in cfg.ray_clusters)


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_every_object_validates_strictly(path: Path) -> None:
    version = platform_outputs(path)["kubernetesVersion"]
    objects = manifests(path)
    assert {o["kind"] for o in objects} >= {"Namespace", "ResourceQuota", "LimitRange", "Role", "RoleBinding",
                                            "RayCluster"}
    for obj in objects:
        assert validate_object(obj, version) == [], obj["metadata"]


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_the_stack_touches_only_its_own_namespace(path: Path) -> None:
    namespace = config_of(path).team.namespace
    for obj in manifests(path):
        if obj["kind"] == "ClusterQueue":
            # Cluster-scoped, but the team's own: named after its namespace and usable from it only.
            assert obj["metadata"]["name"] == namespace
            assert obj["spec"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            continue
        assert obj["kind"] in TEAM_KINDS, obj["kind"]
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == namespace
            assert obj["metadata"]["labels"][TEAM_LABEL] == config_of(path).team.name
        else:
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]
    provider = next(r for r in rendered(path).resources if r["type"] == "pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == render.SECRET
    assert provider["inputs"]["namespace"] == namespace


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_every_urn_belongs_to_the_team_stack_not_the_platform_it_references(path: Path) -> None:
    r = rendered(path)
    prefix = f"urn:pulumi:{r.stack}::ray-platform::"
    assert r.resources
    for res in r.resources:
        assert res["urn"].startswith(prefix), res["urn"]
        assert res["parent"] is None or res["parent"].startswith(prefix), res["urn"]


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_outputs_name_each_clusters_services(path: Path) -> None:
    cfg, outputs = config_of(path), rendered(path).outputs
    assert outputs["namespace"] == cfg.team.namespace
    assert outputs["platform"]["kuberayVersion"] == KUBERAY_VERSION
    assert [c["name"] for c in outputs["rayClusters"]] == [c.name for c in cfg.ray_clusters]
    for entry in outputs["rayClusters"]:
        ns = cfg.team.namespace
        assert entry["headService"] == f"{entry['name']}-head-svc.{ns}.svc"
        assert entry["dashboardService"] == f"{entry['name']}-head-svc.{ns}.svc:8265"
        assert entry["serveService"] == f"{entry['name']}-serve-svc.{ns}.svc:8000"


# --------------------------------------------------------------------------- RayCluster properties


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_gpu_groups_tolerate_the_taint_and_request_gpus_in_requests_and_limits(path: Path) -> None:
    pools = {p["name"] for p in platform_outputs(path)["gpuPools"]}
    taint = platform_outputs(path)["gpuTaint"]
    assert taint == {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}
    for cluster in ray_clusters(path):
        for group, pod, _ in pods(cluster)[1:]:
            (container,) = pod["containers"]
            gpus = container["resources"]["limits"].get(GPU_RESOURCE)
            if gpus is None:
                assert "tolerations" not in pod, group
                continue
            assert container["resources"]["requests"][GPU_RESOURCE] == gpus and int(gpus) > 0, group
            assert {"key": taint["key"], "operator": "Equal", "value": taint["value"],
                    "effect": taint["effect"]} in pod["tolerations"], group
            selected = pod["nodeSelector"].get(NODE_POOL_LABEL)
            assert selected in pools if selected else pod["nodeSelector"] == {GPU_NODE_LABEL: "true"}, group


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_heads_request_no_gpu_cannot_see_one_and_stay_off_gpu_nodes(path: Path) -> None:
    for cluster in ray_clusters(path):
        head_group = cluster["spec"]["headGroupSpec"]
        pod = head_group["template"]["spec"]
        (container,) = pod["containers"]
        for side in ("requests", "limits"):
            assert GPU_RESOURCE not in container["resources"][side]
        assert container["resources"]["requests"] == container["resources"]["limits"]
        assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in container["env"]
        assert head_group["rayStartParams"]["num-gpus"] == "0"
        assert not any(t.get("key") == GPU_TAINT_KEY for t in pod.get("tolerations", []))
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert all({"key": GPU_NODE_LABEL, "operator": "NotIn", "values": ["true"]} in t["matchExpressions"]
                   for t in terms)
        # KubeRay gives `<name>-serve-svc` this type: never a load balancer (they would be public).
        assert head_group["serviceType"] == "ClusterIP"
        if (head_group.get("headService") or {}).get("spec", {}).get("type") == "LoadBalancer":
            annotations = head_group["headService"]["metadata"]["annotations"]
            assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_ray_version_matches_every_image_tag_and_names_are_valid(path: Path) -> None:
    for cluster in ray_clusters(path):
        name = cluster["metadata"]["name"]
        assert DNS1035.match(name) and len(name) <= RAYCLUSTER_NAME_MAX, name
        version = cluster["spec"]["rayVersion"]
        for group, pod, _ in pods(cluster):
            image = pod["containers"][0]["image"]
            repository, tag = image.rsplit(":", 1)
            assert tag.split("-")[0] == version, (group, image)
            if repository == RAY_IMAGE_REPOSITORY:
                assert tag.endswith("-gpu") == (GPU_RESOURCE in pod["containers"][0]["resources"]["limits"]), group
            else:
                # A team's image (rayClusters[].image): pulled with the team's secret.
                assert pod["imagePullSecrets"], (group, image)
            assert DNS1035.match(group) or group == "head"


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_max_demand_of_all_clusters_fits_the_namespace_quota(path: Path) -> None:
    (quota,) = manifests(path, "ResourceQuota")
    hard = quota["spec"]["hard"]
    need = {"cpu": 0.0, "memory": 0.0, "gpus": 0.0, "pods": 0}
    for cluster in ray_clusters(path):
        autoscaler = cluster["spec"]["autoscalerOptions"]["resources"]["limits"]
        need["cpu"] += quantity(autoscaler["cpu"])
        need["memory"] += quantity(autoscaler["memory"])
        for _, pod, count in pods(cluster):
            limits = pod["containers"][0]["resources"]["limits"]
            need["cpu"] += quantity(limits["cpu"]) * count
            need["memory"] += quantity(limits["memory"]) * count
            need["gpus"] += float(limits.get(GPU_RESOURCE, 0)) * count
            need["pods"] += count
    assert need["gpus"] <= quantity(hard[f"requests.{GPU_RESOURCE}"])
    assert need["cpu"] <= quantity(hard["limits.cpu"]) == quantity(hard["requests.cpu"])
    assert need["memory"] <= quantity(hard["limits.memory"]) == quantity(hard["requests.memory"])
    assert need["pods"] <= int(hard["pods"])


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_every_container_fits_the_limit_range(path: Path) -> None:
    (limit_range,) = manifests(path, "LimitRange")
    (limits,) = limit_range["spec"]["limits"]
    for cluster in ray_clusters(path):
        for group, pod, _ in pods(cluster):
            requested = pod["containers"][0]["resources"]["limits"]
            for resource in ("cpu", "memory"):
                assert quantity(requested[resource]) <= quantity(limits["max"][resource]), (group, resource)


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_secrets_exist_for_what_the_clusters_reference_and_stay_secret(path: Path) -> None:
    secrets = {s["metadata"]["name"]: s for s in manifests(path, "Secret")}
    for cluster in ray_clusters(path):
        name, spec = cluster["metadata"]["name"], cluster["spec"]
        ft = spec.get("gcsFaultToleranceOptions")
        if ft and ft["backend"] == "redis":
            ref = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == redis_secret_name(name)
            assert secrets[ref["name"]]["stringData"] == {ref["key"]: render.SECRET}
        if "authOptions" in spec:
            assert spec["authOptions"] == {"mode": "token", "secretName": auth_secret_name(name)}
            assert set(secrets[auth_secret_name(name)]["stringData"].values()) == {render.SECRET}


# --------------------------------------------------------------------------- namespace guard rails


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_the_team_role_manages_ray_and_reads_pods_in_its_namespace_only(path: Path) -> None:
    cfg = config_of(path)
    (role,) = manifests(path, "Role")
    (binding,) = manifests(path, "RoleBinding")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    for resource in ("rayclusters", "rayjobs", "rayservices"):
        assert {("ray.io", resource, v) for v in ("create", "delete", "get", "list", "patch", "update")} <= granted
    assert {("", "pods", "get"), ("", "pods", "list"), ("", "pods/log", "get"), ("", "services", "get"),
            ("", "events", "list")} <= granted
    core_writes = {(g, r, v) for g, r, v in granted if g == "" and v not in ("get", "list", "watch")}
    assert core_writes == {("", "pods/portforward", "create")}, "no write access outside ray.io"
    assert not any("*" in item for triple in granted for item in triple)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "Group", "name": g, "apiGroup": "rbac.authorization.k8s.io"}
                                   for g in cfg.team.groups]


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_quota_caps_gpus_and_network_policy_keeps_other_namespaces_away(path: Path) -> None:
    cfg = config_of(path)
    (quota,) = manifests(path, "ResourceQuota")
    assert quota["spec"]["hard"][f"requests.{GPU_RESOURCE}"] == str(cfg.team.quota.gpus)
    policies = {p["metadata"]["name"]: p["spec"] for p in manifests(path, "NetworkPolicy")}
    if not cfg.team.network_policy:
        assert policies == {}
        return
    main = policies[f"{cfg.team.name}-ray-ingress"]
    assert main["podSelector"] == {} and main["policyTypes"] == ["Ingress"]
    own, operator, *monitoring = main["ingress"]
    assert own == {"from": [{"podSelector": {}}]}
    if cfg.observability.metrics:
        (scrape,) = monitoring
        assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": platform_outputs(path)["observability"]["namespace"]}}}]
        assert 8080 in [p["port"] for p in scrape["ports"]], "Prometheus reaches the Ray metrics port only"
    else:
        assert monitoring == []
    assert operator["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": platform_outputs(path)["kuberayNamespace"]}}}]
    assert [p["port"] for p in operator["ports"]] == [8265]
    load_balanced = {c.name for c in cfg.ray_clusters if c.head.service_type == "LoadBalancer-internal"}
    assert set(policies) - {f"{cfg.team.name}-ray-ingress"} == {f"{c}-internal-lb" for c in load_balanced}


def test_ray_objects_wait_for_namespace_quota_and_limits() -> None:
    r = rendered(STACKS_DIR / "Pulumi.vision-prod.yaml")
    dependencies = r.dependencies
    # RayCluster train, the RayJob of train-digits, the RayService owning `serve`, and its two Secrets.
    ray_types = (RAY_CLUSTER_TYPE, "kubernetes:ray.io/v1:RayJob", "kubernetes:ray.io/v1:RayService")
    ray_objects = [res for res in r.resources if res["type"] in (*ray_types, "kubernetes:core/v1:Secret")]
    assert len(ray_objects) == 5
    for res in ray_objects:
        assert {"vision-ns", "vision-quota", "vision-limits"} <= set(dependencies[res["urn"]]), res["name"]
    serve = next(res for res in ray_objects if res["type"] in ray_types and res["name"] == "vision-serve")
    assert {"vision-serve-redis", "vision-serve-auth"} <= set(dependencies[serve["urn"]])


# --------------------------------------------------------------------------- paths no shipped stack takes


ROCKSDB_STACK = """
config:
  ray-platform:layer: team
  ray-platform:environment: local
  ray-platform:platformStack: local
  ray-platform:team:
    name: sandbox
    groups: [sandbox-devs]
    networkPolicy: false
    quota: {cpu: "8", memory: 32Gi, gpus: 0}
  ray-platform:rayClusters:
    - name: ft
      head: {cpu: "1", memory: 4Gi, shmSize: 1Gi}
      gcsFaultTolerance: {backend: rocksdb, storageSize: 5Gi}
      auth: true
      workerGroups: [{name: cpu, cpu: "1", memory: 2Gi, shmSize: 512Mi, maxReplicas: 2}]
  ray-platform:dashboardToken:
    secure: v1:placeholder
"""


def test_rocksdb_backend_renders_its_claim_on_a_cluster_with_storage(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.sandbox-local.yaml"
    path.write_text(ROCKSDB_STACK)
    r = render.render_stack(path)
    objects = {(m["kind"], m["metadata"]["name"]): m for m in r.manifests()}
    claim = objects[("PersistentVolumeClaim", gcs_volume_claim_name("ft"))]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    cluster = objects[("RayCluster", "ft")]
    assert cluster["spec"]["gcsFaultToleranceOptions"]["storage"] == {"claimName": gcs_volume_claim_name("ft")}
    assert not any(kind == "NetworkPolicy" for kind, _ in objects)
    for obj in objects.values():
        assert validate_object(obj, "1.34") == [], obj["metadata"]
