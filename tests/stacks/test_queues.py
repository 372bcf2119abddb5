"""Kueue in the shipped stacks, as the mock engine evaluates them: the platform installs the pinned
chart and a flavor per pool, a team's ClusterQueue joins the cohort the platform names, and queued
RayJobs and RayClusters wait for their LocalQueue."""
from __future__ import annotations

import yaml

from components.config.model import PlatformConfig
from components.config.stack_files import parse_stack_file
from components.constants import NODE_POOL_LABEL, QUEUE_NAME_LABEL
from components.specs.kueue import AGGREGATED_ROLES
from components.versions import KUEUE_CHART_REPO, KUEUE_CHART_VERSION, KUEUE_VERSION
from tests.stacks import manifests_of, of_type, rendered
from tools.render import STACKS_DIR

PROD = STACKS_DIR / "Pulumi.prod.yaml"
VISION = STACKS_DIR / "Pulumi.vision-prod.yaml"


def test_the_platform_installs_the_pinned_kueue_chart_and_a_flavor_per_pool() -> None:
    r = rendered(PROD)
    (release,) = [x for x in of_type(r, "kubernetes:helm.sh/v3:Release") if x["inputs"]["name"] == "kueue"]
    assert release["inputs"]["chart"] == f"{KUEUE_CHART_REPO}/kueue"
    assert release["inputs"]["version"] == KUEUE_CHART_VERSION and "repositoryOpts" not in release["inputs"]
    assert release["inputs"]["values"]["controllerManager"]["manager"]["image"]["tag"] == KUEUE_VERSION
    config = yaml.safe_load(release["inputs"]["values"]["managerConfig"]["controllerManagerConfigYaml"])
    assert "ray.io/rayservice" not in config["integrations"]["frameworks"]
    platform = parse_stack_file(PROD)
    assert isinstance(platform, PlatformConfig)
    flavors = {f["metadata"]["name"]: f["spec"] for f in manifests_of(r, "ResourceFlavor")}
    assert set(flavors) == {"cpu", *(p.name for p in platform.gpu_pools)}
    for pool in platform.gpu_pools:
        assert flavors[pool.name]["nodeLabels"] == {NODE_POOL_LABEL: pool.name}
    assert [c["metadata"]["name"] for c in manifests_of(r, "Cohort")] == ["prod-ml"]
    # Kueue's webhooks admit these objects, so they wait for the release.
    urns = {x["urn"]: x for x in r.resources}
    for urn in urns:
        if "kueue.x-k8s.io" in urn:
            assert "ray-prod-kueue-release" in r.dependencies[urn], urn
    assert r.outputs["queues"]["cohorts"] == {"vision": "prod-ml", "nlp": "prod-ml"}


def test_the_chart_s_aggregated_roles_go_before_its_uninstall() -> None:
    r = rendered(PROD)
    claims = {x["inputs"]["metadata"]["name"]: x for x in of_type(r, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
              if x["inputs"]["metadata"]["name"] in AGGREGATED_ROLES}
    assert set(claims) == set(AGGREGATED_ROLES)
    for claim in claims.values():
        # Pulumi deletes a resource before what it depends on: the role goes before Helm's uninstall.
        assert "ray-prod-kueue-release" in r.dependencies[claim["urn"]]
        assert "rules" not in claim["inputs"] and "aggregationRule" not in claim["inputs"]


def test_a_platform_without_queues_installs_no_kueue() -> None:
    r = rendered(STACKS_DIR / "Pulumi.dev.yaml")
    assert r.outputs["queues"] is None
    assert not [x for x in of_type(r, "kubernetes:helm.sh/v3:Release") if x["inputs"]["name"] == "kueue"]


def test_the_team_queue_joins_the_platform_cohort_and_comes_before_its_ray_objects() -> None:
    r = rendered(VISION)
    (cq,) = manifests_of(r, "ClusterQueue")
    (lq,) = manifests_of(r, "LocalQueue")
    assert cq["spec"]["cohortName"] == "prod-ml" and lq["spec"]["clusterQueue"] == cq["metadata"]["name"]
    queued = [*manifests_of(r, "RayCluster"), *manifests_of(r, "RayJob")]
    assert queued and all(o["metadata"]["labels"][QUEUE_NAME_LABEL] == lq["metadata"]["name"] for o in queued)
    assert all(QUEUE_NAME_LABEL not in o["metadata"]["labels"] for o in manifests_of(r, "RayService"))
    for res in r.resources:
        if res["type"] in ("kubernetes:ray.io/v1:RayCluster", "kubernetes:ray.io/v1:RayJob"):
            assert "vision-queue-localqueue" in r.dependencies[res["urn"]], res["urn"]
