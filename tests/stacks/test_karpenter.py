"""Karpenter-provisioned platform stacks (`capacity.provisioner: karpenter`) under the SDK's mocks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.config.stack_files import parse_stack_file
from components.constants import (
    GPU_NODE_LABEL, GPU_RESOURCE, KARPENTER_DISCOVERY_TAG, NODE_POOL_LABEL, NODE_ROLE_LABEL, ROLE_CPU,
)
from components.platform.karpenter import NAMESPACE, SERVICE_ACCOUNT
from components.specs.gpu_nodes import gpu_taint, pool_labels
from components.specs.karpenter import CAPACITY_TYPE_LABEL, INSTANCE_TYPE_LABEL
from components.specs.karpenter_iam import INTERRUPTION_EVENTS
from components.versions import KARPENTER_CHART_REPO, KARPENTER_VERSION
from policy import rules
from tests.stacks import ids, manifests_of, of_type, rendered, stack_files
from tools.k8s_schema import validate_object

KARPENTER = [p for p in stack_files("platform") if rendered(p).outputs.get("provisioner") == "karpenter"]
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def test_a_shipped_platform_runs_karpenter() -> None:
    assert [p.name for p in KARPENTER] == ["Pulumi.staging.yaml"]


@pytest.mark.parametrize("path", KARPENTER, ids=ids(KARPENTER))
def test_node_pools_replace_node_groups_and_the_cluster_autoscaler(path: Path) -> None:
    r = rendered(path)
    groups = of_type(r, "aws:eks/nodeGroup:NodeGroup")
    assert [g["inputs"]["labels"] for g in groups] == [{"ray-platform.io/role": "system"}], "only the system group"
    assert not [x for x in of_type(r, "kubernetes:helm.sh/v3:Release") if x["inputs"]["chart"] == "cluster-autoscaler"]
    assert not of_type(r, "aws:autoscaling/tag:Tag")


@pytest.mark.parametrize("path", KARPENTER, ids=ids(KARPENTER))
def test_each_gpu_pool_is_a_tainted_limited_node_pool_with_the_pools_labels(path: Path) -> None:
    r = rendered(path)
    cfg = parse_stack_file(path)
    pools = {m["metadata"]["name"]: m for m in manifests_of(r, "NodePool")}
    assert set(pools) == {p.name for p in cfg.gpu_pools} | {cfg.capacity.cpu_pool.name}
    for pool in cfg.gpu_pools:
        spec = pools[pool.name]["spec"]
        template = spec["template"]
        assert template["metadata"]["labels"] == pool_labels(pool)
        assert template["spec"]["taints"] == [gpu_taint()]
        assert spec["limits"] == {GPU_RESOURCE: str(pool.max_size * pool.gpus_per_node), "nodes": str(pool.max_size)}
        requirements = {q["key"]: q for q in template["spec"]["requirements"]}
        assert requirements[INSTANCE_TYPE_LABEL]["values"] == list(pool.instance_types)
        capacity = requirements[CAPACITY_TYPE_LABEL]["values"]
        assert capacity == (["spot", "on-demand"] if pool.capacity_type == "SPOT" else ["on-demand"]), pool.name
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty" and spec["disruption"]["budgets"]
        assert template["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                    "name": pool.name}
    gpu_pools = {p["name"]: p for p in r.outputs["gpuPools"]}
    assert all(gpu_pools[p.name]["gpuLimit"] == int(pools[p.name]["spec"]["limits"][GPU_RESOURCE])
               for p in cfg.gpu_pools), "team stacks read the same limit the NodePool enforces"
    cpu = pools[cfg.capacity.cpu_pool.name]["spec"]
    assert cpu["template"]["metadata"]["labels"] == r.outputs["cpuPool"]["labels"] == {
        NODE_POOL_LABEL: cfg.capacity.cpu_pool.name, NODE_ROLE_LABEL: ROLE_CPU}
    assert "taints" not in cpu["template"]["spec"] and GPU_NODE_LABEL not in cpu["template"]["metadata"]["labels"]
    assert cpu["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"


@pytest.mark.parametrize("path", KARPENTER, ids=ids(KARPENTER))
def test_node_classes_select_the_platforms_tags_on_imdsv2_and_encrypted_gp3(path: Path) -> None:
    r = rendered(path)
    cluster = r.outputs["clusterName"]
    classes = manifests_of(r, "EC2NodeClass")
    assert len(classes) == len(manifests_of(r, "NodePool"))
    (node_role,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-karpenter-node-role")]
    for node_class in classes:
        spec = node_class["spec"]
        assert spec["role"] == node_role["inputs"]["name"] == f"{cluster}-karpenter-node"
        assert spec["amiSelectorTerms"] == [{"alias": "al2023@latest"}]
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
        (root,) = spec["blockDeviceMappings"]
        assert root["rootVolume"] and root["ebs"]["encrypted"] and root["ebs"]["volumeType"] == "gp3"
        assert spec["subnetSelectorTerms"] == spec["securityGroupSelectorTerms"] == [
            {"tags": {KARPENTER_DISCOVERY_TAG: cluster}}]
    private = [s for s in of_type(r, "aws:ec2/subnet:Subnet") if "-private-" in s["name"]]
    assert private and all(s["inputs"]["tags"][KARPENTER_DISCOVERY_TAG] == cluster for s in private)
    public = [s for s in of_type(r, "aws:ec2/subnet:Subnet") if "-public-" in s["name"]]
    assert not any(KARPENTER_DISCOVERY_TAG in s["inputs"]["tags"] for s in public), "nodes never in public subnets"
    (sg_tag,) = of_type(r, "aws:ec2/tag:Tag")
    (eks,) = of_type(r, "aws:eks/cluster:Cluster")
    assert (sg_tag["inputs"]["key"], sg_tag["inputs"]["value"]) == (KARPENTER_DISCOVERY_TAG, cluster)
    assert sg_tag["inputs"]["resourceId"] == f"sg-{eks['name']}", "the cluster security group EKS created"


@pytest.mark.parametrize("path", KARPENTER, ids=ids(KARPENTER))
def test_nodes_join_through_an_ec2_linux_access_entry_of_the_node_role(path: Path) -> None:
    r = rendered(path)
    (entry,) = [x for x in of_type(r, "aws:eks/accessEntry:AccessEntry") if x["inputs"]["type"] == "EC2_LINUX"]
    (role,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-karpenter-node-role")]
    assert entry["inputs"]["principalArn"].endswith(role["name"])
    assert "ec2.amazonaws.com" in role["inputs"]["assumeRolePolicy"]
    attached = {x["inputs"]["policyArn"].rsplit("/", 1)[-1] for x in of_type(r, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if x["name"].startswith(f"{role['name']}-")}
    assert attached == {"AmazonEKS_CNI_Policy", "AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly",
                        "AmazonSSMManagedInstanceCore"}
    pool_deps = {d for m in of_type(r, NODE_POOL) for d in r.dependencies[m["urn"]]}
    assert entry["name"] in pool_deps, "NodePools launch nodes only once those may join"


@pytest.mark.parametrize("path", KARPENTER, ids=ids(KARPENTER))
def test_controller_is_the_pinned_chart_with_irsa_and_the_interruption_queue(path: Path) -> None:
    r = rendered(path)
    cluster = r.outputs["clusterName"]
    releases = {x["inputs"]["name"]: x for x in of_type(r, "kubernetes:helm.sh/v3:Release")}
    crds, controller = releases["karpenter-crd"]["inputs"], releases["karpenter"]
    assert crds["chart"] == f"{KARPENTER_CHART_REPO}/karpenter-crd" and crds["version"] == KARPENTER_VERSION
    values = controller["inputs"]
    assert values["chart"] == f"{KARPENTER_CHART_REPO}/karpenter" and values["version"] == KARPENTER_VERSION
    assert values["skipCrds"] is True and values["namespace"] == NAMESPACE
    assert releases["karpenter-crd"]["name"] in r.dependencies[controller["urn"]]
    (queue,) = of_type(r, "aws:sqs/queue:Queue")
    settings = values["values"]["settings"]
    assert settings == {"clusterName": cluster, "interruptionQueue": queue["inputs"]["name"]}
    assert queue["inputs"]["sqsManagedSseEnabled"] is True and queue["inputs"]["messageRetentionSeconds"] == 300
    assert values["values"]["nodeSelector"]["ray-platform.io/role"] == "system"
    (irsa,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-karpenter-irsa")]
    assert values["values"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(irsa["name"])
    trust = json.loads(irsa["inputs"]["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"]["StringEquals"][
        next(k for k in trust["Statement"][0]["Condition"]["StringEquals"] if k.endswith(":sub"))
    ] == f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
    rules_ = of_type(r, "aws:cloudwatch/eventRule:EventRule")
    targets = of_type(r, "aws:cloudwatch/eventTarget:EventTarget")
    assert sorted(json.loads(x["inputs"]["eventPattern"])["detail-type"][0] for x in rules_) == sorted(
        p["detail-type"][0] for p in INTERRUPTION_EVENTS.values())
    assert len(targets) == len(rules_)
    assert {t["name"] for t in targets} == {x["name"] for x in rules_}
    for target in targets:
        assert queue["name"] in r.dependencies[target["urn"]], target["name"]
        assert target["inputs"]["targetId"] == "KarpenterInterruptionQueueTarget"
    (queue_policy,) = of_type(r, "aws:sqs/queuePolicy:QueuePolicy")
    assert "events.amazonaws.com" in queue_policy["inputs"]["policy"]


@pytest.mark.parametrize("path", KARPENTER, ids=ids(KARPENTER))
def test_controller_policies_are_scoped_and_attached_to_its_role(path: Path) -> None:
    r = rendered(path)
    cluster = r.outputs["clusterName"]
    policies = {x["name"].rsplit("-karpenter-", 1)[-1]: json.loads(x["inputs"]["policy"])
                for x in of_type(r, "aws:iam/policy:Policy")}
    assert set(policies) == {"node-lifecycle", "iam-integration", "eks-integration", "interruption",
                             "resource-discovery"}
    for name, policy in policies.items():
        assert len(json.dumps(policy, separators=(",", ":"))) < 6144, f"{name}: over IAM's managed-policy size"
    (node_role,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-karpenter-node-role")]
    (pass_role,) = [s for s in policies["iam-integration"]["Statement"] if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"].endswith(node_role["name"]), "PassRole for the node role only"
    deletes = [s for s in policies["node-lifecycle"]["Statement"] if "ec2:TerminateInstances" in s["Action"]]
    assert deletes and all(s["Condition"]["StringEquals"] == {f"aws:ResourceTag/kubernetes.io/cluster/{cluster}": "owned"}
                           for s in deletes)
    (irsa,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-karpenter-irsa")]
    policy_names = {x["name"] for x in of_type(r, "aws:iam/policy:Policy")}
    attached = {name for x in of_type(r, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if irsa["name"] in r.dependencies[x["urn"]] for name in r.dependencies[x["urn"]]}
    assert policy_names <= attached, "every controller policy is attached to the controller's role"


@pytest.mark.parametrize("path", KARPENTER, ids=ids(KARPENTER))
def test_node_pools_and_classes_validate_and_pass_the_policy_pack(path: Path) -> None:
    r = rendered(path)
    for obj in [*manifests_of(r, "NodePool"), *manifests_of(r, "EC2NodeClass")]:
        assert validate_object(obj, r.outputs["kubernetesVersion"]) == [], obj["metadata"]["name"]
    results = rules.check_stack([(x["type"], x["inputs"]) for x in r.resources])
    assert results["gpu-karpenter-node-pools-tainted-and-limited"] == []
    assert results["spot-gpu-pools-fall-back-to-on-demand"] == []
