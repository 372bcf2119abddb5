"""Pure spec builders of the platform layer, tested without Pulumi."""
from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest

from components.specs import iam_policies
from components.config.model import GpuPoolConfig
from components.platform.eks_cluster import kubeconfig_document
from components.specs.gpu_nodes import CA_TEMPLATE_PREFIX, autoscaler_node_template_tags, pool_labels
from components.platform.kuberay_operator import crd_urls
from components.platform.network import subnet_cidrs
from components.versions import EKS_VERSIONS, KUBERAY_VERSION, RAY_IMAGE_CPU, RAY_IMAGE_GPU, RAY_VERSION
from tools.k8s_schema import kuberay_crd_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("cidr", "azs"), [("10.0.0.0/16", 2), ("10.0.0.0/16", 6), ("172.16.0.0/20", 3)])
def test_subnets_are_disjoint_and_inside_the_vpc(cidr: str, azs: int) -> None:
    private, public = subnet_cidrs(cidr, azs)
    nets = [ipaddress.ip_network(c) for c in private + public]
    assert len(private) == len(public) == azs
    vpc = ipaddress.ip_network(cidr)
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    assert all(ipaddress.ip_network(p).num_addresses > ipaddress.ip_network(q).num_addresses
               for p, q in zip(private, public)), "pods take private addresses: private subnets are larger"


def test_irsa_trust_pins_subject_and_audience() -> None:
    doc = iam_policies.irsa_trust_policy("arn:aws:iam::1:oidc-provider/oidc.eks/id/X", "https://oidc.eks/id/X",
                                         "kube-system", "cluster-autoscaler")
    (stmt,) = doc["Statement"]
    assert stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert stmt["Condition"]["StringEquals"] == {
        "oidc.eks/id/X:sub": "system:serviceaccount:kube-system:cluster-autoscaler",
        "oidc.eks/id/X:aud": "sts.amazonaws.com",
    }


def test_autoscaler_may_only_scale_groups_of_its_own_cluster() -> None:
    doc = iam_policies.cluster_autoscaler_policy("ray-prod")
    writes = [s for s in doc["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"]]
    assert writes[0]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/ray-prod": "owned"}}
    reads = [s for s in doc["Statement"] if s not in writes]
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for s in reads for a in s["Action"])
    assert json.loads(iam_policies.to_json(doc)) == doc


def test_scale_from_zero_tags_cover_labels_taint_and_gpu_count() -> None:
    pool = GpuPoolConfig(name="p5", instance_types=("p5.48xlarge",), gpus_per_node=8, labels={"workload": "training"})
    tags = autoscaler_node_template_tags(pool)
    assert tags[f"{CA_TEMPLATE_PREFIX}/resources/nvidia.com/gpu"] == "8"
    assert tags[f"{CA_TEMPLATE_PREFIX}/taint/nvidia.com/gpu"] == "true:NoSchedule"
    for key, value in pool_labels(pool).items():
        assert tags[f"{CA_TEMPLATE_PREFIX}/label/{key}"] == value
    assert pool_labels(pool)["workload"] == "training"


def test_kubeconfig_uses_short_lived_tokens() -> None:
    doc = json.loads(kubeconfig_document("ray-dev", "https://x", "Q0E=", "us-west-2"))
    user = doc["users"][0]["user"]
    assert "token" not in user and user["exec"]["command"] == "aws"
    assert user["exec"]["args"][:4] == ["eks", "get-token", "--cluster-name", "ray-dev"]


def test_kuberay_crds_come_from_the_pinned_tag() -> None:
    assert all(f"/v{KUBERAY_VERSION}/" in url for url in crd_urls())
    names = sorted(p.name for p in kuberay_crd_dir().glob("*.yaml"))
    assert sorted(u.rsplit("/", 1)[1] for u in crd_urls()) == names


def test_ray_versions_agree_everywhere() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\],]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert pins["ray[default]"] == RAY_VERSION, "client ray must equal the cluster's Ray"
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.startswith("ray["):
            assert line.endswith(f"=={RAY_VERSION}")
    assert RAY_IMAGE_CPU.split(":")[1].startswith(RAY_VERSION + "-")
    assert RAY_IMAGE_GPU.split(":")[1].startswith(RAY_VERSION + "-") and RAY_IMAGE_GPU.endswith("-gpu")


def test_every_supported_eks_version_has_a_matching_autoscaler() -> None:
    for k8s_version, image_tag in EKS_VERSIONS.items():
        assert image_tag.startswith(f"v{k8s_version}.")
