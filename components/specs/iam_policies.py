"""IAM policy documents as pure functions (plain dicts), unit-tested without Pulumi."""
from __future__ import annotations

import json
from typing import Any

Policy = dict[str, Any]

EKS_CLUSTER_POLICY = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    # Session Manager instead of SSH keys for node debugging.
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
)
EKS_ADMIN_ACCESS_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# What the EBS CSI driver add-on needs to create, attach and delete volumes (AWS-managed).
EBS_CSI_DRIVER_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"


def service_assume_role_policy(service: str) -> Policy:
    """Trust policy letting an AWS service (eks.amazonaws.com, ec2.amazonaws.com) assume a role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
        }],
    }


def irsa_trust_policy(oidc_provider_arn: str, oidc_issuer_url: str, namespace: str,
                      service_account: str) -> Policy:
    """Trust policy for IRSA: only one ServiceAccount of one namespace may assume the role.

    Both `sub` and `aud` are pinned; without `aud` any token minted by the cluster for
    another audience would be accepted. A `*` in `namespace` or `service_account` (e.g. every
    team namespace, `team-*`) turns the subject into a StringLike match; the audience stays exact.
    """
    issuer = oidc_issuer_url.removeprefix("https://")
    subject = f"system:serviceaccount:{namespace}:{service_account}"
    audience = {f"{issuer}:aud": "sts.amazonaws.com"}
    condition: dict[str, dict[str, str]] = (
        {"StringLike": {f"{issuer}:sub": subject}, "StringEquals": audience} if "*" in subject
        else {"StringEquals": {f"{issuer}:sub": subject, **audience}})
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": oidc_provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }],
    }


def cluster_autoscaler_policy(cluster_name: str) -> Policy:
    """Least privilege for the Cluster Autoscaler on EKS managed node groups.

    Reads are account-wide (the APIs do not support resource scoping); writes are limited
    to Auto Scaling groups tagged as owned by this cluster, which EKS adds to the ASGs of
    managed node groups.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Discover",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "autoscaling:DescribeTags",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements",
                    "eks:DescribeNodegroup",
                ],
                "Resource": "*",
            },
            {
                "Sid": "ScaleOwnGroups",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:SetDesiredCapacity",
                    "autoscaling:TerminateInstanceInAutoScalingGroup",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned",
                    },
                },
            },
        ],
    }


def log_shipping_policy(log_group_arn: str) -> Policy:
    """Fluent Bit's cloudwatch_logs output into one existing log group, nothing else.

    No CreateLogGroup (the platform creates the group with its retention) and no reads:
    a Ray pod can append its logs but cannot read another team's.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AppendRayLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
        }],
    }


def to_json(policy: Policy) -> str:
    return json.dumps(policy, sort_keys=True)
