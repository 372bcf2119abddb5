"""Karpenter as the platform's node provisioner (`capacity.provisioner: karpenter`).

The controller from its pinned chart, with its CRDs from the matching CRD chart (both mirrorable
through `sources.helmRepository`), on the system nodes; its IAM through IRSA with the policies
Karpenter v1.13.0 ships (components/specs/karpenter_iam.py); the node role with its EKS access
entry; the SQS interruption queue fed by EventBridge, so Karpenter drains a node ahead of a spot
reclaim, a scheduled maintenance or a rebalance recommendation; then an EC2NodeClass and a NodePool
per GPU pool and for the CPU pool.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config.pools import NODE_ROLE_SUFFIX, CapacityConfig, GpuPoolConfig
from components.constants import KARPENTER_DISCOVERY_TAG
from components.platform.eks_cluster import SYSTEM_NODE_SELECTOR, EksAccess, irsa_role
from components.platform.helm import pinned_release
from components.specs import iam_policies, karpenter_iam
from components.specs.karpenter import cpu_node_pool, ec2_node_class, gpu_node_pool
from components.versions import KARPENTER_CHART, KARPENTER_CHART_REPO, KARPENTER_CRD_CHART, KARPENTER_VERSION

# Where upstream installs it: beside the other cluster-critical controllers.
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"


@dataclass(frozen=True)
class KarpenterArgs:
    # A plain string: the IAM policies, queue name and chart values are built from it.
    cluster_name: str
    eks: EksAccess
    cluster_security_group_id: pulumi.Input[str]
    capacity: CapacityConfig
    gpu_pools: tuple[GpuPoolConfig, ...]
    helm_repository: str | None = None


def node_role_name(cluster_name: str) -> str:
    return f"{cluster_name}{NODE_ROLE_SUFFIX}"


def controller_values(cluster_name: str, queue_name: str, role_arn: str) -> dict[str, Any]:
    return {
        "settings": {"clusterName": cluster_name, "interruptionQueue": queue_name},
        "serviceAccount": {"name": SERVICE_ACCOUNT, "annotations": {"eks.amazonaws.com/role-arn": role_arn}},
        # Never on a node Karpenter manages (the chart's affinity says so too): the system nodes.
        "nodeSelector": {"kubernetes.io/os": "linux", **SYSTEM_NODE_SELECTOR},
        "controller": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                                     "limits": {"cpu": "1", "memory": "1Gi"}}},
    }


class Karpenter(pulumi.ComponentResource):
    node_role_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    node_pools: list[k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:Karpenter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster, region = args.cluster_name, args.eks.region

        # Named: the node classes refer to it by name, and so does anyone reading the EC2 console.
        node_role = aws.iam.Role(
            f"{name}-node-role", name=node_role_name(cluster),
            assume_role_policy=iam_policies.to_json(iam_policies.service_assume_role_policy("ec2.amazonaws.com")),
            opts=child)
        for policy_arn in karpenter_iam.node_policy_arns(region):
            aws.iam.RolePolicyAttachment(f"{name}-node-role-{policy_arn.rsplit('/', 1)[-1]}", role=node_role.name,
                                         policy_arn=policy_arn, opts=child)
        # Nodes authenticate with the node role; EC2_LINUX maps it to the node groups EKS expects.
        access = aws.eks.AccessEntry(f"{name}-node-access", cluster_name=args.eks.cluster_name,
                                     principal_arn=node_role.arn, type="EC2_LINUX", opts=child)
        aws.ec2.Tag(f"{name}-sg-discovery", resource_id=args.cluster_security_group_id,
                    key=KARPENTER_DISCOVERY_TAG, value=cluster, opts=child)

        queue = aws.sqs.Queue(f"{name}-interruptions", name=f"{cluster}-karpenter",
                              message_retention_seconds=karpenter_iam.INTERRUPTION_QUEUE_RETENTION_SECONDS,
                              sqs_managed_sse_enabled=True, opts=child)
        aws.sqs.QueuePolicy(f"{name}-interruptions", queue_url=queue.id,
                            policy=queue.arn.apply(lambda arn: iam_policies.to_json(
                                karpenter_iam.interruption_queue_policy(arn))), opts=child)
        for rule_name, pattern in karpenter_iam.INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(f"{name}-{rule_name}", event_pattern=json.dumps(pattern, sort_keys=True),
                                            description=f"Karpenter interruption events of {cluster}: {rule_name}",
                                            opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{rule_name}", rule=rule.name, arn=queue.arn,
                                       target_id="KarpenterInterruptionQueueTarget", opts=child)

        role = irsa_role(f"{name}-irsa", args.eks, NAMESPACE, SERVICE_ACCOUNT, child)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        policies = pulumi.Output.all(account, node_role.arn, queue.arn).apply(
            lambda v: karpenter_iam.controller_policies(cluster, region, v[0], v[1], v[2]))
        for policy_name in ("node-lifecycle", "iam-integration", "eks-integration", "interruption",
                            "resource-discovery"):
            policy = aws.iam.Policy(f"{name}-{policy_name}",
                                    policy=policies.apply(lambda ps, n=policy_name: iam_policies.to_json(ps[n])),
                                    description=f"Karpenter controller of {cluster}: {policy_name}", opts=child)
            aws.iam.RolePolicyAttachment(f"{name}-{policy_name}", role=role.id, policy_arn=policy.arn, opts=child)

        crds = pinned_release(f"{name}-crds", chart=KARPENTER_CRD_CHART, version=KARPENTER_VERSION,
                              repo=KARPENTER_CHART_REPO, mirror=args.helm_repository, namespace=NAMESPACE,
                              values={}, parent=self)
        controller = pinned_release(
            f"{name}-release", chart=KARPENTER_CHART, version=KARPENTER_VERSION, repo=KARPENTER_CHART_REPO,
            mirror=args.helm_repository, namespace=NAMESPACE, skip_crds=True, parent=self, depends_on=[crds],
            values=pulumi.Output.all(queue.name, role.arn).apply(lambda v: controller_values(cluster, v[0], v[1])))

        # Deleted before the controller (which terminates their nodes) and created once nodes may join.
        pools_opts = pulumi.ResourceOptions(parent=self, depends_on=[crds, controller, access])
        capacity = args.capacity
        self.node_pools = []
        pools = [(p.name, p.disk_size_gib, gpu_node_pool(p, p.name, capacity.karpenter)) for p in args.gpu_pools]
        cpu = capacity.cpu_pool
        pools.append((cpu.name, cpu.disk_size_gib, cpu_node_pool(cpu, cpu.name, capacity.karpenter)))
        for pool_name, disk, node_pool in pools:
            # The node role's name is known once IAM has created it; nothing else of the class waits on it.
            node_class = ec2_node_class(pool_name, cluster, "", disk, capacity.karpenter)
            k8s.apiextensions.CustomResource(
                f"{name}-{pool_name}-class", api_version=node_class["apiVersion"], kind=node_class["kind"],
                metadata=node_class["metadata"], opts=pools_opts,
                spec=node_role.name.apply(lambda role_name, n=pool_name, d=disk: ec2_node_class(
                    n, cluster, role_name, d, capacity.karpenter)["spec"]))
            self.node_pools.append(k8s.apiextensions.CustomResource(
                f"{name}-{pool_name}", api_version=node_pool["apiVersion"], kind=node_pool["kind"],
                metadata=node_pool["metadata"], spec=node_pool["spec"], opts=pools_opts))
        self.node_role_arn = node_role.arn
        self.queue_name = queue.name
        self.register_outputs({"nodeRoleArn": self.node_role_arn, "interruptionQueue": self.queue_name,
                               "version": KARPENTER_VERSION})
