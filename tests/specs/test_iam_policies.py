"""IAM policy documents (components/specs/iam_policies.py)."""
from __future__ import annotations

import json

from components.platform.observability import TEAM_NAMESPACES
from components.specs import iam_policies


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


def test_log_shipping_iam_appends_to_one_group_and_trusts_only_team_namespaces() -> None:
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/ray-platform/ray-prod/ray"
    (statement,) = iam_policies.log_shipping_policy(arn)["Statement"]
    assert set(statement["Action"]) == {"logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"}
    assert statement["Resource"] == [arn, f"{arn}:log-stream:*"]
    trust = iam_policies.irsa_trust_policy("arn:aws:iam::1:oidc-provider/o/id/X", "https://o/id/X",
                                           TEAM_NAMESPACES, "*")
    condition = trust["Statement"][0]["Condition"]
    assert condition == {"StringLike": {"o/id/X:sub": "system:serviceaccount:team-*:*"},
                         "StringEquals": {"o/id/X:aud": "sts.amazonaws.com"}}
