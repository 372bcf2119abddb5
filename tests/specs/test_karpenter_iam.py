"""Karpenter's IAM documents (components/specs/karpenter_iam.py): scoped as upstream v1.13.0 scopes them."""
from __future__ import annotations

import json

from components.specs.karpenter_iam import (
    INTERRUPTION_EVENTS, controller_policies, interruption_queue_policy, node_policy_arns, partition_of,
)

CLUSTER, REGION, ACCOUNT = "ray-dev", "us-west-2", "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ray-dev-karpenter-node"
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:ray-dev-karpenter"
POLICIES = controller_policies(CLUSTER, REGION, ACCOUNT, ROLE, QUEUE)


def statements() -> list[dict]:
    return [s for p in POLICIES.values() for s in p["Statement"]]


def test_every_write_is_scoped_by_this_clusters_tags() -> None:
    owned = f"kubernetes.io/cluster/{CLUSTER}"
    # EC2 and IAM writes; the queue's DeleteMessage is scoped by naming the queue (below).
    writes = [s for s in statements() if any(a.startswith(("ec2:", "iam:")) and a.split(":")[1].startswith(
        ("Create", "Terminate", "Delete", "Tag", "Add", "Remove", "Run"))
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))]
    assert writes
    # Upstream's one exception: launching may use any image, snapshot, subnet and security group of
    # the region; the instance, volumes and launch template it creates are scoped by the next statements.
    for s in (s for s in writes if s["Sid"] != "AllowScopedEC2InstanceAccessActions"):
        assert owned in json.dumps(s["Condition"]), s["Sid"]


def test_pass_role_and_queue_access_name_one_resource_each() -> None:
    by_sid = {s["Sid"]: s for s in statements()}
    assert by_sid["AllowPassingInstanceRole"]["Resource"] == ROLE
    assert by_sid["AllowInterruptionQueueActions"]["Resource"] == QUEUE
    assert by_sid["AllowAPIServerEndpointDiscovery"]["Resource"] == f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
    assert by_sid["AllowRegionalReadActions"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": REGION}}
    unscoped = {s["Sid"] for s in statements() if s["Resource"] == "*" and "Condition" not in s}
    assert unscoped == {"AllowPricingReadActions", "AllowUnscopedInstanceProfileListAction"}, "as upstream"


def test_policies_fit_iams_managed_policy_size() -> None:
    for name, policy in POLICIES.items():
        assert len(json.dumps(policy, separators=(",", ":"))) < 6144, name


def test_partitions_and_node_role_policies() -> None:
    assert (partition_of("us-east-1"), partition_of("cn-north-1"), partition_of("us-gov-west-1")) == (
        "aws", "aws-cn", "aws-us-gov")
    assert node_policy_arns("cn-north-1")[0].startswith("arn:aws-cn:iam::aws:policy/")


def test_the_queue_takes_eventbridge_messages_over_tls_only() -> None:
    policy = interruption_queue_policy(QUEUE)
    allow, deny = policy["Statement"]
    assert allow["Principal"]["Service"] == ["events.amazonaws.com", "sqs.amazonaws.com"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {p["source"][0] for p in INTERRUPTION_EVENTS.values()} == {"aws.ec2", "aws.health"}
    assert len(INTERRUPTION_EVENTS) == 5
