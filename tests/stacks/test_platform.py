"""Every platform stack, evaluated by the real program under the Pulumi SDK's mocks."""
from __future__ import annotations

import contextvars
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.platform.block_storage import EBS_CSI_ADDON, EBS_CSI_SERVICE_ACCOUNT, STORAGE_CLASS
from components.platform.kuberay_operator import CRD_KINDS
from components.constants import (
    EKS_TAINT_EFFECT, GPU_NODE_LABEL, GPU_TAINT_KEY, GPU_TAINT_VALUE, NO_FALLBACK_TAG, NODE_POOL_LABEL, NODE_ROLE_LABEL,
    ROLE_CPU, ROLE_SYSTEM,
)
from components.specs.gpu_nodes import CA_TEMPLATE_PREFIX
from components.specs.iam_policies import EBS_CSI_DRIVER_POLICY
from components.versions import (
    CLUSTER_AUTOSCALER_CHART_VERSION, KUBERAY_VERSION, NVIDIA_DEVICE_PLUGIN_VERSION,
)
from tests.stacks import ids, manifests_of, of_type, rendered, stack_files
from tools.k8s_schema import validate_object
from tools.plan_diff import DEFAULT_RENDER_CMD, render_trees
from tools.render import ROOT, STACKS_DIR, render_stack

PLATFORM = stack_files("platform")
EKS = [p for p in PLATFORM if rendered(p).outputs["clusterProvider"] == "eks"]
# Node groups and the Cluster Autoscaler; Karpenter's stacks are tests/stacks/test_karpenter.py's.
MNG = [p for p in EKS if rendered(p).outputs["provisioner"] == "managedNodeGroups"]


def test_the_shipped_environments_exist() -> None:
    assert {p.name for p in PLATFORM} >= {f"Pulumi.{s}.yaml" for s in ("dev", "staging", "prod", "local")}


@pytest.mark.parametrize("path", MNG, ids=ids(MNG))
def test_gpu_pools_are_tainted_on_nvidia_amis_and_may_idle_at_zero(path: Path) -> None:
    r = rendered(path)
    pools = [g for g in of_type(r, "aws:eks/nodeGroup:NodeGroup") if "ray-platform.io/gpu" in g["inputs"]["labels"]]
    assert len(pools) == len(r.outputs["gpuPools"]) > 0
    for pool in pools:
        inputs, urn = pool["inputs"], pool["urn"]
        assert inputs["taints"] == [{"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": EKS_TAINT_EFFECT}], urn
        assert "NVIDIA" in inputs["amiType"], urn
        assert inputs["labels"][GPU_NODE_LABEL] == "true" and NODE_POOL_LABEL in inputs["labels"], urn
        scaling = inputs["scalingConfig"]
        assert 0 <= scaling["minSize"] <= scaling["desiredSize"] <= scaling["maxSize"], urn
    assert any(p["inputs"]["scalingConfig"]["minSize"] == 0 for p in pools), "some pool must scale to zero"


@pytest.mark.parametrize("path", MNG, ids=ids(MNG))
def test_scale_from_zero_tags_describe_each_pool(path: Path) -> None:
    r = rendered(path)
    tags = [t["inputs"]["tag"] for t in of_type(r, "aws:autoscaling/tag:Tag")]
    keys = {t["key"] for t in tags}
    for pool in r.outputs["gpuPools"]:
        assert f"{CA_TEMPLATE_PREFIX}/label/{NODE_POOL_LABEL}" in keys
        assert {"key": f"{CA_TEMPLATE_PREFIX}/resources/nvidia.com/gpu", "value": str(pool["gpusPerNode"]),
                "propagateAtLaunch": False} in tags
    assert {"key": f"{CA_TEMPLATE_PREFIX}/taint/{GPU_TAINT_KEY}", "value": "true:NoSchedule",
            "propagateAtLaunch": False} in tags


@pytest.mark.parametrize("path", EKS, ids=ids(EKS))
def test_every_node_requires_imdsv2(path: Path) -> None:
    r = rendered(path)
    templates = of_type(r, "aws:ec2/launchTemplate:LaunchTemplate")
    groups = of_type(r, "aws:eks/nodeGroup:NodeGroup")
    assert len(templates) == len(groups)
    for lt in templates:
        assert lt["inputs"]["metadataOptions"]["httpTokens"] == "required", lt["urn"]
        assert lt["inputs"]["metadataOptions"]["httpPutResponseHopLimit"] == 1, lt["urn"]
    for group in groups:
        assert "launchTemplate" in group["inputs"], group["urn"]
        assert "diskSize" not in group["inputs"], f"{group['urn']}: disk size belongs in the launch template"


@pytest.mark.parametrize("path", EKS, ids=ids(EKS))
def test_system_node_group_is_on_demand_without_gpus(path: Path) -> None:
    system = [g for g in of_type(rendered(path), "aws:eks/nodeGroup:NodeGroup")
              if g["inputs"]["labels"].get(NODE_ROLE_LABEL) == ROLE_SYSTEM]
    assert len(system) == 1
    inputs = system[0]["inputs"]
    assert inputs["capacityType"] == "ON_DEMAND" and "NVIDIA" not in inputs["amiType"], system[0]["urn"]
    assert "taints" not in inputs, system[0]["urn"]


@pytest.mark.parametrize("path", MNG, ids=ids(MNG))
def test_ray_heads_and_cpu_workers_get_a_cpu_node_group_of_their_own(path: Path) -> None:
    r = rendered(path)
    cpu = [g for g in of_type(r, "aws:eks/nodeGroup:NodeGroup") if g["inputs"]["labels"].get(NODE_ROLE_LABEL) == ROLE_CPU]
    assert len(cpu) == 1
    inputs = cpu[0]["inputs"]
    assert inputs["labels"] == r.outputs["cpuPool"]["labels"] == {
        NODE_POOL_LABEL: r.outputs["cpuPool"]["name"], NODE_ROLE_LABEL: ROLE_CPU}
    assert "taints" not in inputs and "NVIDIA" not in inputs["amiType"] and inputs["capacityType"] == "ON_DEMAND"
    assert inputs["scalingConfig"]["maxSize"] == r.outputs["cpuPool"]["maxSize"]
    (autoscaler,) = of_type(r, "ray-platform:index:ClusterAutoscaler")
    assert cpu[0]["name"] in r.dependencies[autoscaler["urn"]], "the autoscaler waits for the CPU group too"


def test_a_spot_node_group_without_fallback_says_why() -> None:
    r = rendered(STACKS_DIR / "Pulumi.prod.yaml")
    spot = [g for g in of_type(r, "aws:eks/nodeGroup:NodeGroup") if g["inputs"]["capacityType"] == "SPOT"]
    assert spot and all(g["inputs"]["tags"][NO_FALLBACK_TAG] for g in spot)
    assert [p["onDemandFallback"] for p in r.outputs["gpuPools"]] == [False, False, False]


@pytest.mark.parametrize("path", EKS, ids=ids(EKS))
def test_control_plane_is_encrypted_logged_and_access_controlled(path: Path) -> None:
    r = rendered(path)
    (cluster,) = of_type(r, "aws:eks/cluster:Cluster")
    inputs = cluster["inputs"]
    assert inputs["encryptionConfig"]["resources"] == ["secrets"], cluster["urn"]
    assert inputs["enabledClusterLogTypes"], cluster["urn"]
    assert inputs["accessConfig"]["authenticationMode"] == "API", cluster["urn"]
    vpc = inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    if vpc["endpointPublicAccess"]:
        assert vpc["publicAccessCidrs"] and "0.0.0.0/0" not in vpc["publicAccessCidrs"], cluster["urn"]
    (key,) = of_type(r, "aws:kms/key:Key")
    assert key["inputs"]["enableKeyRotation"] is True
    assert of_type(r, "aws:eks/accessEntry:AccessEntry"), "admins get access entries"


def test_prod_uses_the_private_endpoint_and_mixes_spot_with_on_demand() -> None:
    r = rendered(STACKS_DIR / "Pulumi.prod.yaml")
    (cluster,) = of_type(r, "aws:eks/cluster:Cluster")
    assert cluster["inputs"]["vpcConfig"]["endpointPublicAccess"] is False
    capacity = {p["capacityType"] for p in r.outputs["gpuPools"]}
    assert capacity == {"SPOT", "ON_DEMAND"}
    nats = of_type(r, "aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3, "prod keeps one NAT per AZ"


@pytest.mark.parametrize("path", MNG, ids=ids(MNG))
def test_cluster_autoscaler_uses_irsa_scoped_to_its_service_account(path: Path) -> None:
    r = rendered(path)
    (release,) = [x for x in of_type(r, "kubernetes:helm.sh/v3:Release") if x["inputs"]["chart"] == "cluster-autoscaler"]
    assert release["inputs"]["version"] == CLUSTER_AUTOSCALER_CHART_VERSION
    values = release["inputs"]["values"]
    (role,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-autoscaler-irsa")]
    assert values["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(role["name"])
    trust = role["inputs"]["assumeRolePolicy"]
    assert "system:serviceaccount:kube-system:cluster-autoscaler" in trust and "sts.amazonaws.com" in trust
    assert "oidc" in trust, "the trust policy federates the cluster's OIDC provider"
    assert values["image"]["tag"].startswith("v" + r.outputs["kubernetesVersion"]), "autoscaler minor = k8s minor"


@pytest.mark.parametrize("path", EKS, ids=ids(EKS))
def test_block_storage_is_the_ebs_csi_add_on_with_irsa_and_a_default_encrypted_class(path: Path) -> None:
    """Every EKS platform, Prometheus or not: a team's rocksdb GCS volume needs it too."""
    r = rendered(path)
    (addon,) = of_type(r, "aws:eks/addon:Addon")
    assert addon["inputs"]["addonName"] == EBS_CSI_ADDON, addon["urn"]
    (role,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-ebs-csi-irsa")]
    assert addon["inputs"]["serviceAccountRoleArn"].endswith(role["name"]), addon["urn"]
    trust = role["inputs"]["assumeRolePolicy"]
    assert f"system:serviceaccount:kube-system:{EBS_CSI_SERVICE_ACCOUNT}" in trust and "sts.amazonaws.com" in trust
    (attachment,) = [x for x in of_type(r, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                     if x["name"].endswith("-ebs-csi-policy")]
    assert attachment["inputs"]["policyArn"] == EBS_CSI_DRIVER_POLICY
    (storage_class,) = manifests_of(r, "StorageClass")
    assert storage_class["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert (storage_class["provisioner"], storage_class["parameters"]) == ("ebs.csi.aws.com",
                                                                          {"type": "gp3", "encrypted": "true"})
    assert validate_object(storage_class, r.outputs["kubernetesVersion"]) == []
    assert r.outputs["storageClass"] == storage_class["metadata"]["name"] == STORAGE_CLASS
    # They were the Observability component's: aliased, `pulumi up` moves them rather than
    # creating a second add-on and class of the same names.
    former = f"{r.outputs['clusterName']}-observability"
    (gp3,) = of_type(r, "kubernetes:storage.k8s.io/v1:StorageClass")
    for res in (addon, role, attachment, gp3):
        suffix = res["name"].removeprefix(f"{r.outputs['clusterName']}-storage-")
        assert {"name": f"{former}-{suffix}", "parentUrn": f"urn:pulumi:{r.stack}::ray-platform::"
                f"ray-platform:index:Observability::{former}"} in res["aliases"], res["urn"]
    prometheus = [x for x in of_type(r, "kubernetes:helm.sh/v3:Release")
                  if x["inputs"]["chart"] == "kube-prometheus-stack"]
    for release in prometheus:
        claim = release["inputs"]["values"]["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]
        assert claim["spec"]["storageClassName"] == STORAGE_CLASS, release["urn"]
        assert addon["name"] in r.dependencies[release["urn"]], f"{release['urn']} must wait for the CSI driver"


def test_an_existing_cluster_keeps_its_own_storage() -> None:
    r = rendered(next(p for p in PLATFORM if p.name == "Pulumi.local.yaml"))
    assert not of_type(r, "aws:eks/addon:Addon") and r.outputs["storageClass"] is None


@pytest.mark.parametrize("path", PLATFORM, ids=ids(PLATFORM))
def test_addon_charts_are_pinned_and_the_operator_owns_no_crds(path: Path) -> None:
    r = rendered(path)
    releases = {x["inputs"]["name"]: x for x in of_type(r, "kubernetes:helm.sh/v3:Release")}
    for release in releases.values():
        assert release["inputs"]["version"], f"{release['urn']}: unpinned chart"
        # An OCI registry is addressed in the chart reference itself (Kueue and Karpenter publish there).
        repo = release["inputs"].get("repositoryOpts", {}).get("repo") or release["inputs"]["chart"]
        assert repo.startswith(("https://", "oci://")), release["urn"]
    kuberay = releases["kuberay-operator"]["inputs"]
    assert kuberay["version"] == KUBERAY_VERSION and kuberay["skipCrds"] is True
    assert kuberay["values"]["image"]["tag"] == f"v{KUBERAY_VERSION}"
    crd_files = sorted(x["inputs"]["file"] for x in of_type(r, "kubernetes:yaml/v2:ConfigFile"))
    assert len(crd_files) == len(CRD_KINDS) and all(f"/v{KUBERAY_VERSION}/" in f for f in crd_files)
    if "nvidia-device-plugin" in releases:
        plugin = releases["nvidia-device-plugin"]["inputs"]
        assert plugin["version"] == NVIDIA_DEVICE_PLUGIN_VERSION
        assert {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in plugin["values"]["tolerations"]
        assert plugin["values"]["nodeSelector"] == {GPU_NODE_LABEL: "true"}


@pytest.mark.parametrize("path", PLATFORM, ids=ids(PLATFORM))
def test_kubernetes_objects_go_through_the_stack_provider(path: Path) -> None:
    r = rendered(path)
    providers = {x["urn"] for x in of_type(r, "pulumi:providers:kubernetes")}
    assert len(providers) == 1
    for res in r.resources:
        if res["type"] == "pulumi:providers:kubernetes":
            assert res["inputs"]["kubeconfig"] == "[secret]", res["urn"]


@pytest.mark.parametrize("path", PLATFORM, ids=ids(PLATFORM))
def test_outputs_team_stacks_need(path: Path) -> None:
    outputs = rendered(path).outputs
    for key in ("kubeconfig", "clusterName", "endpoint", "oidcProviderArn", "gpuPools", "gpuTaint",
                "kuberayVersion", "rayVersion"):
        assert key in outputs, f"{path.name}: missing output {key}"
    assert outputs["kubeconfig"] == "[secret]"
    assert outputs["gpuTaint"] == {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": "NoSchedule"}


@pytest.mark.parametrize("path", PLATFORM, ids=ids(PLATFORM))
def test_rendered_kubernetes_objects_validate_strictly(path: Path) -> None:
    r = rendered(path)
    version = r.outputs["kubernetesVersion"]
    for obj in r.manifests():
        assert validate_object(obj, version) == [], obj.get("metadata")


IN_APPLY: contextvars.ContextVar[bool] = contextvars.ContextVar("in_apply", default=False)


@pytest.mark.parametrize("path", PLATFORM, ids=ids(PLATFORM))
def test_no_resource_is_created_inside_apply(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created_in_apply: list[str] = []
    original_apply = pulumi.Output.apply
    original_init = pulumi.Resource.__init__

    def apply(self: pulumi.Output[Any], func: Any, run_with_unknowns: bool = False) -> Any:
        def wrapped(value: Any) -> Any:
            token = IN_APPLY.set(True)
            try:
                return func(value)
            finally:
                IN_APPLY.reset(token)
        return original_apply(self, wrapped, run_with_unknowns)

    def init(self: pulumi.Resource, t: str, name: str, *args: Any, **kwargs: Any) -> None:
        if IN_APPLY.get():
            created_in_apply.append(f"{t} {name}")
        original_init(self, t, name, *args, **kwargs)

    monkeypatch.setattr(pulumi.Output, "apply", apply)
    monkeypatch.setattr(pulumi.Resource, "__init__", init)
    render_stack(path)
    assert created_in_apply == []


@pytest.mark.parametrize("path", PLATFORM, ids=ids(PLATFORM))
def test_every_urn_and_parent_belongs_to_the_stack(path: Path) -> None:
    r = rendered(path)
    prefix = f"urn:pulumi:{r.stack}::ray-platform::"
    for res in r.resources:
        assert res["urn"].startswith(prefix), res["urn"]
        assert res["parent"] is None or res["parent"].startswith(prefix), f"{res['urn']}: parent {res['parent']}"


def test_renders_do_not_depend_on_the_checkout_location(tmp_path: Path) -> None:
    """Every stack renders the same from a copy of this checkout elsewhere.

    The renderer writes this checkout's path as <project>, so a path it rewrites cannot differ;
    what else would (a path hashed into a name, a file outside the checkout) shows here.
    """
    elsewhere = tmp_path / "elsewhere"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, text=True).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (elsewhere / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, elsewhere / name)
    trees = render_trees({"here": ROOT, "elsewhere": elsewhere}, DEFAULT_RENDER_CMD, tmp_path)
    assert trees["here"] and trees["elsewhere"] == trees["here"]
