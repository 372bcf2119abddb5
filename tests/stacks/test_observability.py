"""Observability as rendered: the monitoring stack of every platform stack, and a team that opts in."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tools.render as render
from components.specs import log_shipping
from components.config.model import RayObservability
from components.config.stack_files import platform_lookup_from_dir
from components.specs.monitoring import (
    ADMIN_SECRET, DASHBOARD_LABEL, FOLDER_ANNOTATION, MONITORING_API, RAY_DASHBOARDS, dcgm_exporter_values,
)
from components.specs.raycluster import OBSERVABILITY_CONFIG_MAP, observability_config_map
from components.versions import (
    DCGM_EXPORTER_CHART_REPO, DCGM_EXPORTER_VERSION, KUBE_PROMETHEUS_STACK_CHART_REPO,
    KUBE_PROMETHEUS_STACK_VERSION,
)
from policy import rules
from tests.stacks import ids, manifests_of, of_type, rendered, stack_files, strict
from tests.specs.test_raycluster_observability import pod_specs

Obj = dict[str, Any]
PLATFORM = stack_files("platform")
STACKS = platform_lookup_from_dir(render.STACKS_DIR)
# A ConfigMap holds at most 1 MiB (etcd's object size limit, enforced by the API server).
CONFIG_MAP_LIMIT = 1024 * 1024


def releases(path: Path) -> dict[str, Obj]:
    return {x["inputs"]["chart"]: x["inputs"] for x in of_type(rendered(path), "kubernetes:helm.sh/v3:Release")}


def chart_monitors(values: Obj) -> list[Obj]:
    """The PodMonitors and the PrometheusRule the chart creates from its values, as objects."""
    namespace = "monitoring"
    monitors = [{"apiVersion": MONITORING_API, "kind": "PodMonitor",
                 "metadata": {"name": item["name"], "namespace": namespace, "labels": item["additionalLabels"]},
                 "spec": {k: v for k, v in item.items() if k not in ("name", "additionalLabels")}}
                for item in values["prometheus"]["additionalPodMonitors"]]
    rules_ = [{"apiVersion": MONITORING_API, "kind": "PrometheusRule",
               "metadata": {"name": f"kube-prometheus-stack-{name}", "namespace": namespace}, "spec": spec}
              for name, spec in values["additionalPrometheusRulesMap"].items()]
    return monitors + rules_


@pytest.mark.parametrize("path", PLATFORM, ids=ids(PLATFORM))
def test_every_platform_stack_renders_its_monitoring_strictly(path: Path) -> None:
    r = rendered(path)
    cfg = STACKS(r.stack)
    assert cfg is not None
    obs, outputs = cfg.observability, r.outputs["observability"]
    assert outputs["namespace"] == obs.namespace
    assert (outputs["prometheus"] is not None) == (obs.prometheus is not None)
    assert (outputs["logShipping"] is not None) == (obs.log_shipping is not None)
    charts = releases(path)
    monitoring = [m for m in r.manifests() if m["metadata"].get("namespace") == obs.namespace
                  or m["metadata"].get("name") == obs.namespace]
    for obj in monitoring:
        assert strict(obj) == [], obj["metadata"]
    if obs.prometheus is not None:
        stack = charts["kube-prometheus-stack"]
        assert stack["version"] == KUBE_PROMETHEUS_STACK_VERSION
        assert stack["repositoryOpts"]["repo"] == KUBE_PROMETHEUS_STACK_CHART_REPO
        spec = stack["values"]["prometheus"]["prometheusSpec"]
        assert spec["retention"] == obs.prometheus.retention
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
        assert claim["resources"]["requests"]["storage"] == obs.prometheus.storage_size
        assert not spec["podMonitorSelectorNilUsesHelmValues"] and not spec["ruleSelectorNilUsesHelmValues"]
        for obj in chart_monitors(stack["values"]):
            assert strict(obj) == [], obj["metadata"]
    if obs.grafana is not None:
        grafana = charts["kube-prometheus-stack"]["values"]["grafana"]
        assert grafana["service"]["type"] == "ClusterIP" and grafana["admin"]["existingSecret"] == ADMIN_SECRET
        assert grafana["grafana.ini"]["security"]["allow_embedding"] is True
        (secret,) = [m for m in monitoring if m["kind"] == "Secret"]
        assert secret["metadata"]["name"] == ADMIN_SECRET and set(secret["stringData"].values()) == {render.SECRET}
        boards = [m for m in monitoring if m["kind"] == "ConfigMap"]
        assert len(boards) == len(RAY_DASHBOARDS) + obs.dcgm_exporter
        for board in boards:
            assert board["metadata"]["labels"][DASHBOARD_LABEL] == "1"
            assert board["metadata"]["annotations"][FOLDER_ANNOTATION] in ("Ray", "GPUs")
            (content,) = board["data"].values()
            assert json.loads(content)["panels"] and len(content.encode()) < CONFIG_MAP_LIMIT / 2
    assert ("dcgm-exporter" in charts) == obs.dcgm_exporter
    if obs.dcgm_exporter:
        dcgm = charts["dcgm-exporter"]
        assert dcgm["version"] == DCGM_EXPORTER_VERSION and dcgm["repositoryOpts"]["repo"] == DCGM_EXPORTER_CHART_REPO
        assert dcgm["values"] == dcgm_exporter_values(service_monitor=obs.prometheus is not None)
    if obs.log_shipping is not None:
        (group,) = [x for x in of_type(r, "aws:cloudwatch/logGroup:LogGroup") if x["name"].endswith("-ray-logs")]
        assert group["inputs"]["retentionInDays"] == obs.log_shipping.retention_days
        (role,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-log-shipper-irsa")]
        assert "team-*" in role["inputs"]["assumeRolePolicy"]


def test_the_shipped_environments_enable_observability_and_local_turns_pieces_off() -> None:
    configs = {p.name: STACKS(p.name.split(".")[1]) for p in PLATFORM}
    for name in ("Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"):
        obs = configs[name].observability  # type: ignore[union-attr]
        assert obs.prometheus and obs.grafana and obs.dcgm_exporter and obs.log_shipping, name
    local = configs["Pulumi.local.yaml"].observability  # type: ignore[union-attr]
    assert local.prometheus and not local.dcgm_exporter and local.log_shipping is None


# --------------------------------------------------------------------------- a team that opts in


OPTED_IN_STACK = """
config:
  ray-platform:layer: team
  ray-platform:environment: prod
  ray-platform:platformStack: my-org/ray-platform/prod
  ray-platform:team:
    name: obs
    groups: [obs-engineers]
    quota: {cpu: "16", memory: 64Gi, gpus: 1, pods: 10}
  ray-platform:rayClusters:
    - name: watched
      head: {cpu: "1", memory: 4Gi, shmSize: 1Gi}
      workerGroups:
        - {name: cpu, cpu: "1", memory: 2Gi, shmSize: 512Mi, maxReplicas: 2}
        - {name: gpu, gpuPool: g5-serving, gpus: 1, cpu: "4", memory: 16Gi, shmSize: 2Gi, maxReplicas: 1}
  ray-platform:observability:
    metrics: true
    logShipping: true
"""


@pytest.fixture(scope="module")
def opted_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[render.Rendered, dict[str, list[str]]]:
    """The opted-in team stack rendered against prod, with every resource's dependencies."""
    path = tmp_path_factory.mktemp("obs") / "Pulumi.obs-prod.yaml"
    path.write_text(OPTED_IN_STACK)
    r = render.render_stack(path)
    return r, r.dependencies


def test_an_opted_in_team_renders_strictly_and_passes_the_policy(
        opted_in: tuple[render.Rendered, dict[str, list[str]]]) -> None:
    r, _ = opted_in
    for obj in r.manifests():
        assert strict(obj) == [], obj["metadata"]
    results = rules.check_stack([(x["type"], x["inputs"]) for x in r.resources])
    assert {k: v for k, v in results.items() if v and k not in rules.ADVISORY_STACK_RULES} == {}


def test_an_opted_in_team_gets_the_platform_values_sidecars_and_a_scrape_rule(
        opted_in: tuple[render.Rendered, dict[str, list[str]]]) -> None:
    r, dependencies = opted_in
    objects = {(m["kind"], m["metadata"]["name"]): m for m in r.manifests()}
    config_map = objects[("ConfigMap", OBSERVABILITY_CONFIG_MAP)]
    platform = rendered(render.STACKS_DIR / "Pulumi.prod.yaml").outputs["observability"]
    expected = observability_config_map("team-obs", "obs", RayObservability(metrics=True, log_shipping=True), platform)
    assert config_map["data"] == expected["data"]
    cluster = objects[("RayCluster", "watched")]
    assert all(pod["initContainers"][0]["name"] == log_shipping.CONTAINER for pod in pod_specs(cluster))
    (policy,) = manifests_of(r, "NetworkPolicy")
    scrape = policy["spec"]["ingress"][-1]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert [p["port"] for p in scrape["ports"]] == [8080, 44217, 44227]
    (resource,) = [x for x in r.resources if x["type"] == "kubernetes:ray.io/v1:RayCluster"]
    assert "obs-observability" in dependencies[resource["urn"]], "pods must not start before their ConfigMap"
