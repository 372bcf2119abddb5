"""EKS control plane with its IAM, OIDC provider for IRSA, access entries, KMS secrets
encryption, control-plane logging, a small on-demand system node group, and the
kubeconfig (a secret) feeding a Kubernetes provider."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.specs import iam_policies
from components.config.model import ClusterConfig
from components.constants import ENVIRONMENT_TAG, NODE_ROLE_LABEL, ROLE_SYSTEM

# The name the system node group carries in its labels, used by platform add-ons' nodeSelectors.
SYSTEM_NODE_SELECTOR = {NODE_ROLE_LABEL: ROLE_SYSTEM}


@dataclass(frozen=True)
class EksAccess:
    """What the AWS side needs of an EKS platform: IRSA for its add-ons and the log shippers."""

    region: str
    cluster_name: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]


def irsa_role(name: str, eks: EksAccess, namespace: str, service_account: str,
              opts: pulumi.ResourceOptions) -> aws.iam.Role:
    """An IAM role that only `service_account` in `namespace` may assume, through the cluster's OIDC provider."""
    trust = pulumi.Output.all(eks.oidc_provider_arn, eks.oidc_issuer_url).apply(
        lambda v: iam_policies.to_json(iam_policies.irsa_trust_policy(v[0], v[1], namespace, service_account)))
    return aws.iam.Role(name, assume_role_policy=trust, opts=opts)


@dataclass(frozen=True)
class EksClusterArgs:
    config: ClusterConfig
    region: str
    environment: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    public_subnet_ids: pulumi.Input[list[str]]
    log_retention_days: int = 90


def kubeconfig_document(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token`: no long-lived credential in state."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
            "interactiveMode": "Never",
        },
    }
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "users": [{"name": cluster_name, "user": user}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
    }
    return json.dumps(doc)


def imdsv2_launch_template(name: str, disk_size_gib: int, parent: pulumi.Resource,
                           tags: dict[str, str]) -> aws.ec2.LaunchTemplate:
    """Launch template shared by every node group: IMDSv2 only, hop limit 1, encrypted gp3 root disk.

    Hop limit 1 keeps pods off the node's instance credentials: pods use IRSA instead.
    """
    return aws.ec2.LaunchTemplate(
        name,
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
        block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
            device_name="/dev/xvda",
            ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                volume_size=disk_size_gib, volume_type="gp3", encrypted="true", delete_on_termination="true"),
        )],
        tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="instance", tags=tags)],
        update_default_version=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def managed_node_group(name: str, parent: pulumi.Resource, *, disk_size_gib: int, sizes: tuple[int, int, int],
                       depends_on: list[pulumi.Resource] | None = None,
                       replace_on_changes: list[str] | None = None, **node_group_args: Any) -> aws.eks.NodeGroup:
    """A managed node group launched from the IMDSv2 template, sized (min, desired, max)."""
    launch_template = imdsv2_launch_template(f"{name}-lt", disk_size_gib, parent, {"Name": name})
    low, desired, high = sizes
    return aws.eks.NodeGroup(
        name,
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=low, desired_size=desired, max_size=high),
        launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=launch_template.id,
                                                            version=launch_template.latest_version),
        **node_group_args,
        opts=pulumi.ResourceOptions(
            parent=parent, depends_on=depends_on or [], replace_on_changes=replace_on_changes or [],
            # The autoscaler owns desiredSize after creation; a later `up` must not reset it.
            ignore_changes=["scalingConfig.desiredSize"]),
    )


@dataclass(frozen=True)
class NodeGroupPlacement:
    """Where a pool's managed node group goes: the cluster, its node role, the private subnets."""

    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    kubernetes_version: str


def pool_node_group(name: str, parent: pulumi.Resource, placement: NodeGroupPlacement, *, pool_name: str,
                    disk_size_gib: int, sizes: tuple[int, int, int], replace_on_changes: list[str],
                    **node_group_args: Any) -> aws.eks.NodeGroup:
    """A pool's node group, named `<pool>-<random>` so a replacement is created before the old one goes."""
    return managed_node_group(
        name, parent, disk_size_gib=disk_size_gib, sizes=sizes, replace_on_changes=replace_on_changes,
        cluster_name=placement.cluster_name, node_group_name_prefix=f"{pool_name}-",
        node_role_arn=placement.node_role_arn, subnet_ids=placement.subnet_ids, version=placement.kubernetes_version,
        tags={"ray-platform/pool": pool_name, **node_group_args.pop("tags", {})}, **node_group_args)


class EksCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    # The security group EKS creates for the control plane and managed nodes.
    cluster_security_group_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    system_node_group: aws.eks.NodeGroup

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:EksCluster", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)

        cluster_role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=iam_policies.to_json(iam_policies.service_assume_role_policy("eks.amazonaws.com")),
            opts=child)
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy", role=cluster_role.name, policy_arn=iam_policies.EKS_CLUSTER_POLICY, opts=child)

        secrets_key = aws.kms.Key(
            f"{name}-secrets-key", description=f"EKS secrets envelope encryption for {cfg.name}",
            enable_key_rotation=True, deletion_window_in_days=cfg.kms_deletion_window_days, opts=child)
        aws.kms.Alias(f"{name}-secrets-key-alias", name=f"alias/eks/{cfg.name}", target_key_id=secrets_key.key_id,
                      opts=child)

        # Created before the cluster so EKS does not create it with infinite retention.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs", name=f"/aws/eks/{cfg.name}/cluster",
            retention_in_days=args.log_retention_days, opts=child)

        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=cfg.name,
            version=cfg.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=pulumi.Output.all(args.private_subnet_ids, args.public_subnet_ids).apply(
                    lambda ids: [*ids[0], *ids[1]]),
                endpoint_private_access=True,
                endpoint_public_access=cfg.endpoint_public_access,
                public_access_cidrs=list(cfg.public_access_cidrs) if cfg.endpoint_public_access else None,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # The identity running `pulumi up` needs API access to install the add-ons.
                bootstrap_cluster_creator_admin_permissions=True,
            ),
            enabled_cluster_log_types=list(cfg.log_types),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"],
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn)),
            tags={"ray-platform/cluster": cfg.name, ENVIRONMENT_TAG: args.environment},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_policy, log_group]),
        )

        issuer = cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        oidc = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"], opts=child)

        for i, arn in enumerate(cfg.admin_principal_arns):
            entry = aws.eks.AccessEntry(f"{name}-admin-{i}", cluster_name=cluster.name, principal_arn=arn,
                                        type="STANDARD", opts=child)
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{i}", cluster_name=cluster.name, principal_arn=arn,
                policy_arn=iam_policies.EKS_ADMIN_ACCESS_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]))

        node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=iam_policies.to_json(iam_policies.service_assume_role_policy("ec2.amazonaws.com")),
            opts=child)
        node_policies = [
            aws.iam.RolePolicyAttachment(f"{name}-node-policy-{i}", role=node_role.name, policy_arn=arn, opts=child)
            for i, arn in enumerate(iam_policies.NODE_POLICIES)
        ]

        sys_cfg = cfg.system_nodes
        self.system_node_group = managed_node_group(
            f"{name}-system", self, disk_size_gib=sys_cfg.disk_size_gib,
            sizes=(sys_cfg.min_size, sys_cfg.desired_size, sys_cfg.max_size), depends_on=node_policies,
            cluster_name=cluster.name,
            node_group_name=f"{cfg.name}-system",
            node_role_arn=node_role.arn,
            subnet_ids=args.private_subnet_ids,
            instance_types=list(sys_cfg.instance_types),
            capacity_type="ON_DEMAND",
            ami_type="AL2023_x86_64_STANDARD",
            version=cfg.kubernetes_version,
            labels=SYSTEM_NODE_SELECTOR,
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
        )

        self.cluster_name = cluster.name
        self.endpoint = cluster.endpoint
        self.oidc_provider_arn = oidc.arn
        self.oidc_issuer_url = issuer
        self.node_role_arn = node_role.arn
        self.cluster_security_group_id = cluster.vpc_config.cluster_security_group_id
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(
            cluster.name, cluster.endpoint, cluster.certificate_authority.apply(lambda ca: ca.data),
        ).apply(lambda v: kubeconfig_document(v[0], v[1], v[2], args.region)))
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.system_node_group]))
        self.register_outputs({
            "clusterName": self.cluster_name,
            "endpoint": self.endpoint,
            "oidcProviderArn": self.oidc_provider_arn,
            "kubeconfig": self.kubeconfig,
        })
