"""Observability config of both layers: defaults, switches, and bad values named by their key path."""
from __future__ import annotations

from typing import Any

import pytest

import tools.render as render
from components.config.fit import max_demand
from components.config.model import (
    LOG_SHIPPER_CPU, LOG_SHIPPER_MEMORY, ConfigError, PlatformConfig, RayObservability, TeamStackConfig,
)
from components.config.stack import parse
from components.config.stack_files import platform_lookup_from_dir
from tests.config_edits import DELETE, assert_problem_at, with_change

Obj = dict[str, Any]
STACKS = platform_lookup_from_dir(render.STACKS_DIR)


# --------------------------------------------------------------------------- platform config


PLATFORM_GOOD: dict[str, Any] = {
    "layer": "platform",
    "environment": "dev",
    "cluster": {"provider": "eks", "name": "ray-dev"},
    "observability": {
        "prometheus": {"retention": "7d", "storageSize": "20Gi"},
        "grafana": {},
        "dcgmExporter": {},
        "logShipping": {"retentionDays": 14},
    },
    "grafanaAdminPassword": "[secret]",
}


EXISTING: dict[str, Any] = {
    "layer": "platform",
    "environment": "local",
    "cluster": {"provider": "existing", "name": "kind", "kubeconfigPath": "~/.kube/config"},
    "addons": {"clusterAutoscaler": False, "nvidiaDevicePlugin": False},
}


def platform_with(path: str, value: Any, base: dict[str, Any] = PLATFORM_GOOD) -> dict[str, Any]:
    """`base` with one value set at a dotted path (observability.prometheus.retention); None deletes it."""
    return with_change(path, DELETE if value is None else value, base)


def test_platform_observability_defaults_and_switches() -> None:
    cfg = parse(PLATFORM_GOOD, "dev", "us-west-2")
    assert isinstance(cfg, PlatformConfig)
    obs = cfg.observability
    assert obs.namespace == "monitoring" and obs.dcgm_exporter
    assert obs.prometheus is not None and (obs.prometheus.retention, obs.prometheus.storage_size) == ("7d", "20Gi")
    assert obs.grafana is not None and obs.grafana.iframe_host == "http://localhost:3000"
    assert obs.log_shipping is not None and (obs.log_shipping.destination, obs.log_shipping.retention_days) == (
        "cloudwatch", 14)
    # No key: nothing installed, and no Grafana password needed.
    bare = parse(platform_with("observability", None, platform_with("grafanaAdminPassword", None)), "dev", "us-west-2")
    assert isinstance(bare, PlatformConfig) and not bare.observability.installs_anything
    # An existing cluster switches pieces off and may keep their settings in the file.
    off = {"prometheus": {"retention": "2d"}, "dcgmExporter": {"enabled": False},
           "logShipping": {"enabled": False, "retentionDays": 30}}
    local = parse({**EXISTING, "observability": off}, "local")
    assert isinstance(local, PlatformConfig)
    assert local.observability.prometheus is not None and local.observability.grafana is None
    assert not local.observability.dcgm_exporter and local.observability.log_shipping is None


PLATFORM_BAD = [
    ("Grafana without Prometheus", platform_with("observability.prometheus", None),
     "ray-platform:observability.grafana.enabled", "enable observability.prometheus too"),
    ("Grafana without its password", platform_with("grafanaAdminPassword", None),
     "ray-platform:grafanaAdminPassword", "pulumi config set 'ray-platform:grafanaAdminPassword' --secret"),
    ("password without Grafana", platform_with("observability.grafana", None),
     "ray-platform:grafanaAdminPassword", "only used with observability.grafana"),
    ("retention in words", platform_with("observability.prometheus.retention", "15 days"),
     "ray-platform:observability.prometheus.retention", "expected a Prometheus duration"),
    ("storage size not a quantity", platform_with("observability.prometheus.storageSize", "lots"),
     "ray-platform:observability.prometheus.storageSize", "Kubernetes quantity"),
    ("retention CloudWatch refuses", platform_with("observability.logShipping.retentionDays", 10),
     "ray-platform:observability.logShipping.retentionDays", "CloudWatch Logs accepts: 1, 3, 5, 7, 14"),
    ("unknown log destination", platform_with("observability.logShipping.destination", "s3"),
     "ray-platform:observability.logShipping.destination", "allowed: cloudwatch, none"),
    ("enabled but nowhere to ship", platform_with("observability.logShipping.destination", "none"),
     "ray-platform:observability.logShipping.destination", "contradicts enabled: true"),
    ("CloudWatch from an existing cluster", {**EXISTING, "observability": {"logShipping": {}}},
     "ray-platform:observability.logShipping.enabled", "only EKS platform stacks create"),
    ("enabled is not a boolean", platform_with("observability.dcgmExporter", {"enabled": "yes"}),
     "ray-platform:observability.dcgmExporter.enabled", "expected true or false"),
    ("typo in a piece", platform_with("observability.prometheus.retension", "7d"),
     "ray-platform:observability.prometheus.retension", "unknown key; known keys here:"),
    ("typo in a piece's name", platform_with("observability.grafanna", {}),
     "ray-platform:observability.grafanna", "unknown key; known keys here:"),
    ("namespace not a DNS label", platform_with("observability.namespace", "Monitoring"),
     "ray-platform:observability.namespace", "DNS-1123"),
    ("iframe host without scheme", platform_with("observability.grafana.iframeHost", "localhost:3000"),
     "ray-platform:observability.grafana.iframeHost", "expected the URL a browser reaches Grafana at"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in PLATFORM_BAD], ids=[c[0] for c in PLATFORM_BAD])
def test_bad_platform_observability_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(raw, "dev", "us-west-2")
    assert_problem_at(err.value, path, allowed)


# --------------------------------------------------------------------------- team config


TEAM_GOOD: dict[str, Any] = {
    "layer": "team",
    "environment": "prod",
    "platformStack": "my-org/ray-platform/prod",
    "team": {"name": "obs", "groups": ["obs-engineers"], "quota": {"cpu": "16", "memory": "64Gi", "gpus": 1}},
    "rayClusters": [{"name": "watched", "head": {"cpu": "1", "memory": "4Gi", "shmSize": "1Gi"},
                     "workerGroups": [{"name": "cpu", "cpu": "1", "memory": "2Gi", "shmSize": "512Mi",
                                       "maxReplicas": 2}]}],
    "observability": {"metrics": True, "logShipping": True},
}


# A platform stack that offers nothing (no observability key), for the checks against it.
BARE = parse({**EXISTING}, "bare")


def team_lookup(name: str) -> PlatformConfig | None:
    return BARE if name == "bare" else STACKS(name)


def test_team_opt_in_reaches_every_cluster_and_the_quota_counts_the_sidecars() -> None:
    cfg = parse(TEAM_GOOD, "obs-prod", None, team_lookup)
    assert isinstance(cfg, TeamStackConfig) and cfg.observability == RayObservability(metrics=True, log_shipping=True)
    assert all(c.observability == cfg.observability for c in cfg.ray_clusters)
    off = parse({k: v for k, v in TEAM_GOOD.items() if k != "observability"}, "obs-prod", None, team_lookup)
    assert isinstance(off, TeamStackConfig) and off.observability == RayObservability()
    shipping, silent = max_demand(cfg.ray_clusters), max_demand(off.ray_clusters)
    pods = shipping.pods  # head + 2 workers, each with one sidecar
    assert shipping.cpu == pytest.approx(silent.cpu + pods * 0.1)
    assert shipping.memory == pytest.approx(silent.memory + pods * 128 * 2**20)
    assert (LOG_SHIPPER_CPU, LOG_SHIPPER_MEMORY) == ("100m", "128Mi")


TEAM_BAD = [
    ("metrics on a platform without Prometheus", {**TEAM_GOOD, "platformStack": "org/ray-platform/bare"},
     "ray-platform:observability.metrics", "platform stack 'bare' installs no Prometheus"),
    ("log shipping on a platform that ships none", {**TEAM_GOOD, "platformStack": "org/ray-platform/bare"},
     "ray-platform:observability.logShipping", "platform stack 'bare' ships no logs"),
    ("typo", {**TEAM_GOOD, "observability": {"logs": True}}, "ray-platform:observability.logs", "unknown key"),
    ("sidecars do not fit the quota", {**TEAM_GOOD, "team": {**TEAM_GOOD["team"], "quota": {
        "cpu": "3.6", "memory": "64Gi", "gpus": 1}}}, "ray-platform:team.quota.cpu", "can request 3.8 CPUs"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in TEAM_BAD], ids=[c[0] for c in TEAM_BAD])
def test_bad_team_observability_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(raw, "obs-prod", None, team_lookup)
    assert_problem_at(err.value, path, allowed)
