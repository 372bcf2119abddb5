"""Platform config: defaults, and table-driven bad config naming the exact key path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.config.model import ConfigError, PlatformConfig
from components.config.stack import parse
from tests.config_edits import DELETE, assert_refused_at
from tests.config_edits import with_change as edit

ROOT = Path(__file__).resolve().parents[2]

GOOD: dict[str, Any] = {
    "layer": "platform",
    "environment": "dev",
    "cluster": {"provider": "eks", "name": "ray-dev", "endpointPublicAccess": True,
                "publicAccessCidrs": ["203.0.113.0/24"]},
    "network": {"vpcCidr": "10.10.0.0/16"},
    "gpuPools": [{"name": "g5", "instanceTypes": ["g5.xlarge"], "minSize": 0, "desiredSize": 0, "maxSize": 2}],
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    return edit(path, value, GOOD)


def test_good_config_parses_with_defaults() -> None:
    cfg = parse(GOOD, "dev", "us-west-2")
    assert isinstance(cfg, PlatformConfig)
    pool = cfg.gpu_pools[0]
    assert (pool.capacity_type, pool.ami_type, pool.gpus_per_node) == ("ON_DEMAND", "AL2023_x86_64_NVIDIA", 1)
    assert cfg.addons.cluster_autoscaler and cfg.addons.nvidia_device_plugin
    assert cfg.network.az_count == 2 and cfg.cluster.system_nodes.min_size == 2


BAD_CASES = [
    ("min > max", with_change("gpuPools.0.minSize", 3), "ray-platform:gpuPools[0].minSize", "must be <= maxSize"),
    ("desired outside range", with_change("gpuPools.0.desiredSize", 5), "ray-platform:gpuPools[0].desiredSize",
     "between minSize"),
    ("unknown capacity type", with_change("gpuPools.0.capacityType", "spot"), "ray-platform:gpuPools[0].capacityType",
     "allowed: ON_DEMAND, SPOT"),
    ("pool without instance types", with_change("gpuPools.0.instanceTypes", []),
     "ray-platform:gpuPools[0].instanceTypes", "at least one instance type"),
    ("pool instance types missing", with_change("gpuPools.0.instanceTypes", DELETE),
     "ray-platform:gpuPools[0].instanceTypes", "pulumi config set --path 'ray-platform:gpuPools[0].instanceTypes'"),
    ("non-GPU instance in GPU pool", with_change("gpuPools.0.instanceTypes", ["m5.xlarge"]),
     "ray-platform:gpuPools[0].instanceTypes[0]", "not an NVIDIA GPU instance type"),
    ("bad pool name", with_change("gpuPools.0.name", "GPU_Pool"), "ray-platform:gpuPools[0].name", "DNS-1035"),
    ("duplicate pool names", {**GOOD, "gpuPools": GOOD["gpuPools"] * 2}, "ray-platform:gpuPools[1].name",
     "duplicates"),
    ("non-NVIDIA AMI", with_change("gpuPools.0.amiType", "AL2023_x86_64_STANDARD"),
     "ray-platform:gpuPools[0].amiType", "AL2023_x86_64_NVIDIA"),
    ("wrong type for maxSize", with_change("gpuPools.0.maxSize", "two"), "ray-platform:gpuPools[0].maxSize",
     "expected an integer"),
    ("bool is not an int", with_change("gpuPools.0.maxSize", True), "ray-platform:gpuPools[0].maxSize",
     "expected an integer"),
    ("bad VPC CIDR", with_change("network.vpcCidr", "10.10.0.0/33"), "ray-platform:network.vpcCidr", "CIDR"),
    ("VPC too small", with_change("network.vpcCidr", "10.10.0.0/24"), "ray-platform:network.vpcCidr", "/20"),
    ("public endpoint open to the world", with_change("cluster.publicAccessCidrs", ["0.0.0.0/0"]),
     "ray-platform:cluster.publicAccessCidrs[0]", "refused"),
    ("public endpoint without CIDRs", with_change("cluster.publicAccessCidrs", []),
     "ray-platform:cluster.publicAccessCidrs", "allow-list"),
    ("public endpoint in prod", with_change("environment", "prod"), "ray-platform:cluster.endpointPublicAccess",
     "private endpoint only"),
    ("missing cluster", with_change("cluster", DELETE), "ray-platform:cluster",
     "pulumi config set 'ray-platform:cluster'"),
    ("missing cluster name", with_change("cluster.name", DELETE), "ray-platform:cluster.name",
     "pulumi config set --path 'ray-platform:cluster.name'"),
    ("missing layer", with_change("layer", DELETE), "ray-platform:layer", "pulumi config set 'ray-platform:layer'"),
    ("unknown layer", with_change("layer", "teams"), "ray-platform:layer", "allowed: platform, team"),
    ("unknown provider", with_change("cluster.provider", "gke"), "ray-platform:cluster.provider",
     "allowed: eks, existing"),
    ("unsupported Kubernetes version", with_change("cluster.kubernetesVersion", "1.21"),
     "ray-platform:cluster.kubernetesVersion", "allowed: 1.33, 1.34"),
    ("typo in a key", with_change("gpuPools.0.maxsize", 3), "ray-platform:gpuPools[0].maxsize", "unknown key"),
    ("unknown top-level key", with_change("rayClusters", []), "ray-platform:rayClusters", "not a platform-layer key"),
    ("bad admin ARN", with_change("cluster.adminPrincipalArns", ["admins"]),
     "ray-platform:cluster.adminPrincipalArns[0]", "IAM role or user ARN"),
    ("GPU instance for system nodes", with_change("cluster.systemNodes", {"instanceTypes": ["g5.xlarge"]}),
     "ray-platform:cluster.systemNodes.instanceTypes[0]", "must not use GPU"),
    ("existing VPC with one subnet", with_change("network", {"existingVpcId": "vpc-0abc", "existingPrivateSubnetIds":
                                                             ["subnet-1"]}),
     "ray-platform:network.existingPrivateSubnetIds", ">= 2 private subnet"),
    ("GPU pools without device plugin", with_change("addons", {"nvidiaDevicePlugin": False}),
     "ray-platform:addons.nvidiaDevicePlugin", "device plugin"),
    ("existing cluster's GPU pool with a node group setting",
     with_change("cluster", {"provider": "existing", "name": "kind", "kubeconfigPath": "~/.kube/config"}),
     "ray-platform:gpuPools[0].instanceTypes", "only for EKS pools"),
    ("mirror that is not a URL", with_change("sources", {"helmRepository": "charts.internal"}),
     "ray-platform:sources.helmRepository", "http(s) URL of a Helm repository"),
    ("typo in sources", with_change("sources", {"helmRepo": "http://charts.internal"}),
     "ray-platform:sources.helmRepo", "unknown key"),
    ("existing cluster without kubeconfig", {"layer": "platform", "environment": "local",
                                             "cluster": {"provider": "existing", "name": "kind"},
                                             "addons": {"clusterAutoscaler": False}},
     "ray-platform:cluster.kubeconfigPath", "exactly one of"),
    ("labels must be strings", with_change("gpuPools.0.labels", {"tier": 1}), "ray-platform:gpuPools[0].labels.tier",
     "expected a string"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_config_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    assert_refused_at(raw, path, allowed, "dev", "us-west-2")


def test_existing_cluster_describes_the_gpu_pools_it_has() -> None:
    raw = {"layer": "platform", "environment": "local",
           "cluster": {"provider": "existing", "name": "kind", "kubeconfigPath": "~/.kube/config"},
           "addons": {"clusterAutoscaler": False, "nvidiaDevicePlugin": False},
           "gpuPools": [{"name": "a10g", "gpusPerNode": 4, "maxSize": 2}]}
    cfg = parse(raw, "local", None)
    assert isinstance(cfg, PlatformConfig)
    [pool] = cfg.gpu_pools
    assert (pool.name, pool.gpus_per_node, pool.max_size, pool.instance_types) == ("a10g", 4, 2, ())


def test_sources_default_to_upstream_and_name_a_mirror() -> None:
    base = parse(with_change("sources", {}), "dev", "us-west-2")
    assert isinstance(base, PlatformConfig)
    assert (base.sources.helm_repository, base.sources.kuberay_crds) == (None, None)
    mirror = {"helmRepository": "https://charts.internal/ray-platform", "kuberayCrds": "/srv/crds/kuberay/v1.7.0"}
    cfg = parse(with_change("sources", mirror), "dev", "us-west-2")
    assert isinstance(cfg, PlatformConfig)
    assert (cfg.sources.helm_repository, cfg.sources.kuberay_crds) == tuple(mirror.values())


def test_every_problem_is_reported_at_once() -> None:
    raw = with_change("gpuPools.0.capacityType", "spot")
    raw["network"] = {"vpcCidr": "nope"}
    raw["cluster"]["name"] = "Bad_Name"
    with pytest.raises(ConfigError) as err:
        parse(raw, "dev", "us-west-2")
    assert len(err.value.problems) == 3
    assert str(err.value).startswith("stack 'dev' has 3 config problem(s):")


def test_missing_region_for_eks() -> None:
    with pytest.raises(ConfigError) as err:
        parse(GOOD, "dev", None)
    assert any(p.startswith("aws:region: required") and "pulumi config set 'aws:region'" in p
               for p in err.value.problems)


def test_render_of_a_bad_stack_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.broken.yaml"
    bad.write_text("config:\n  ray-platform:layer: platform\n  ray-platform:environment: dev\n"
                   "  aws:region: us-west-2\n  ray-platform:cluster: {provider: eks, name: x}\n"
                   "  ray-platform:gpuPools: [{name: g5, instanceTypes: [g5.xlarge], minSize: 3, maxSize: 1}]\n")
    proc = subprocess.run([sys.executable, "-m", "tools.render", "--config", str(bad), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "ray-platform:gpuPools[0].minSize: got 3; minSize must be <= maxSize (1)" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
