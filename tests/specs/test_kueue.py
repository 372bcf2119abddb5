"""The Kueue objects (components/specs/kueue.py) and what queueing does to RayClusters and RayJobs:
pure builders, validated strictly against the Kueue v0.19.2 and KubeRay CRDs."""
from __future__ import annotations

import re
import tarfile
from dataclasses import replace

import pytest
import yaml

from components.config.model import (
    GpuPoolConfig, JobConfig, KubeRayJobConfig, QuotaConfig, RayClusterConfig, TeamConfig, WorkerGroupConfig,
)
from components.config.queue_model import CohortConfig, QueueQuota, Queueing, QueuesConfig, TeamQueueConfig
from components.constants import (
    GPU_RESOURCE, GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, NODE_POOL_LABEL, PRIORITY_CLASS_LABEL,
    QUEUE_NAME_LABEL,
)
from components.specs import kueue as K
from components.specs.gpu_nodes import gpu_toleration
from components.specs.queueing import ELASTIC_JOB_ANNOTATION
from components.specs.raycluster import ray_cluster
from components.specs.rayjob import ray_job
from components.versions import DEFAULT_EKS_VERSION, KUEUE_CHART, KUEUE_CHART_VERSION, KUEUE_VERSION
from tools.k8s_schema import kueue_crd_dir, validate_object

POOLS = (GpuPoolConfig(name="a10g", instance_types=("g5.xlarge",), max_size=4),
         GpuPoolConfig(name="h100", instance_types=("p5.48xlarge",), max_size=1, gpus_per_node=8,
                       labels={"workload": "training"}))
QUEUES = QueuesConfig(cohorts=(CohortConfig("ml", ("vision", "nlp")),))
TEAM = TeamConfig(name="vision", groups=("g",), quota=QuotaConfig(cpu="64", memory="256Gi", gpus=12))
QUEUE = TeamQueueConfig(cpu=QueueQuota("32"), memory=QueueQuota("128Gi", lending_limit="64Gi"),
                        gpus={"a10g": QueueQuota("2"), "h100": QueueQuota("8", borrowing_limit="0")})
QUEUED = Queueing(local_queue="vision", priority_class="batch")
CLUSTER = RayClusterConfig(name="train", worker_groups=(
    WorkerGroupConfig("gpu", "6", "24Gi", gpus=1, replicas=1, min_replicas=0, max_replicas=3, gpu_pool="a10g"),),
    queue=QUEUED)


def test_every_object_validates_strictly_against_the_pinned_crds() -> None:
    objects = [*K.platform_queue_objects(QUEUES, POOLS), K.cluster_queue(TEAM, QUEUE, "ml"),
               K.cluster_queue(TEAM, QUEUE, None), K.local_queue(TEAM, "vision")]
    assert {o["kind"] for o in objects} == {"ResourceFlavor", "Cohort", "WorkloadPriorityClass", "ClusterQueue",
                                            "LocalQueue"}
    for obj in objects:
        assert validate_object(obj, DEFAULT_EKS_VERSION) == [], obj["metadata"]["name"]


def test_a_gpu_flavor_is_its_pool_label_taint_and_toleration() -> None:
    flavor = K.gpu_flavor(POOLS[1])
    assert flavor["metadata"]["name"] == "h100"
    assert flavor["spec"] == {
        "nodeLabels": {NODE_POOL_LABEL: "h100"},
        "nodeTaints": [{"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}],
        "tolerations": [gpu_toleration()],
    }
    # The Ray GPU groups select and tolerate exactly the same.
    worker = ray_cluster(replace(CLUSTER, queue=None), "team-vision", "vision")["spec"]["workerGroupSpecs"][0]
    assert worker["template"]["spec"]["nodeSelector"] == {NODE_POOL_LABEL: "a10g"}
    assert worker["template"]["spec"]["tolerations"] == [gpu_toleration()]
    assert K.cpu_flavor()["spec"] == {}


def test_the_platform_declares_flavors_cohorts_and_priorities() -> None:
    names = [(o["kind"], o["metadata"]["name"]) for o in K.platform_queue_objects(QUEUES, POOLS)]
    assert names == [("ResourceFlavor", "cpu"), ("ResourceFlavor", "a10g"), ("ResourceFlavor", "h100"),
                     ("Cohort", "ml"), ("WorkloadPriorityClass", "production"), ("WorkloadPriorityClass", "batch"),
                     ("WorkloadPriorityClass", "experiments")]
    assert K.platform_outputs(QUEUES, POOLS) == {
        "namespace": "kueue-system", "kueueVersion": KUEUE_VERSION, "cohorts": {"vision": "ml", "nlp": "ml"},
        "flavors": ["cpu", "a10g", "h100"], "priorityClasses": {"production": 1000, "batch": 100, "experiments": 10}}
    assert K.platform_outputs(None, POOLS) is None


def test_the_chart_runs_the_release_image_with_only_the_ray_integrations() -> None:
    values = K.chart_values(QUEUES, {"role": "system"})
    assert values["controllerManager"]["manager"]["image"] == {
        "repository": "registry.k8s.io/kueue/kueue", "tag": KUEUE_VERSION, "pullPolicy": "IfNotPresent"}
    assert values["controllerManager"]["nodeSelector"] == {"role": "system"}
    config = yaml.safe_load(values["managerConfig"]["controllerManagerConfigYaml"])
    assert config["integrations"]["frameworks"] == ["ray.io/rayjob", "ray.io/raycluster"]
    assert config["manageJobsWithoutQueueName"] is False and config["namespace"] == "kueue-system"
    assert config["waitForPodsReady"]["timeout"] == K.PODS_READY_TIMEOUT


def _resources(cq: dict, flavor: str) -> dict:
    for group in cq["spec"]["resourceGroups"]:
        for f in group["flavors"]:
            if f["name"] == flavor:
                return {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in f["resources"]}
    raise AssertionError(flavor)


def test_the_aggregated_roles_claimed_are_exactly_the_chart_s() -> None:
    # Read from the pinned chart in the mirror beside the repo: a chart that adds or renames one would
    # otherwise bring back the uninstall that waits for a role the controller keeps re-creating.
    chart = kueue_crd_dir().parents[1] / "helm-repo" / f"{KUEUE_CHART}-{KUEUE_CHART_VERSION}.tgz"
    with tarfile.open(chart) as tgz:
        templates = [tgz.extractfile(m).read().decode() for m in tgz.getmembers()  # type: ignore[union-attr]
                     if m.name.startswith(f"{KUEUE_CHART}/templates/") and m.isfile()]
    aggregating = [t for t in templates if re.search(r"^aggregationRule:", t, re.M)]
    names = {re.search(r"^  name: '\{\{ include \"kueue.fullname\" \. \}\}(-[\w-]+)'", t, re.M).group(1)
             for t in aggregating}  # type: ignore[union-attr]
    assert K.AGGREGATED_ROLES == tuple(sorted(K.RELEASE_NAME + n for n in names))
    for name in K.AGGREGATED_ROLES:
        claim = K.aggregated_role(name)
        assert claim["metadata"] == {"name": name} and set(claim) == {"apiVersion", "kind", "metadata"}


def test_the_cluster_queue_borrows_at_most_what_the_resource_quota_leaves() -> None:
    cq = K.cluster_queue(TEAM, QUEUE, "ml")
    spec = cq["spec"]
    assert cq["metadata"]["name"] == "team-vision" and spec["cohortName"] == "ml"
    assert spec["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "team-vision"}}
    assert spec["preemption"] == {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority",
                                  "borrowWithinCohort": {"policy": "Never"}}
    assert [g["coveredResources"] for g in spec["resourceGroups"]] == [["cpu", "memory"], [GPU_RESOURCE]]
    assert _resources(cq, "cpu") == {"cpu": {"nominalQuota": "32", "borrowingLimit": "32"},
                                     "memory": {"nominalQuota": "128Gi", "borrowingLimit": "128Gi",
                                                "lendingLimit": "64Gi"}}
    # GPUs: team.quota 12 - 10 nominal = 2 to borrow, unless the team sets its own limit.
    assert _resources(cq, "a10g") == {GPU_RESOURCE: {"nominalQuota": "2", "borrowingLimit": "2"}}
    assert _resources(cq, "h100") == {GPU_RESOURCE: {"nominalQuota": "8", "borrowingLimit": "0"}}


def test_outside_a_cohort_the_cluster_queue_has_its_nominal_only() -> None:
    cq = K.cluster_queue(TEAM, QUEUE, None)
    assert "cohortName" not in cq["spec"]
    assert _resources(cq, "a10g") == {GPU_RESOURCE: {"nominalQuota": "2"}}
    assert K.local_queue(TEAM, "vision")["spec"] == {"clusterQueue": "team-vision"}


def test_a_queued_long_lived_cluster_is_elastic_and_keeps_its_autoscaler() -> None:
    obj = ray_cluster(CLUSTER, "team-vision", "vision")
    labels, spec = obj["metadata"]["labels"], obj["spec"]
    assert labels[QUEUE_NAME_LABEL] == "vision" and labels[PRIORITY_CLASS_LABEL] == "batch"
    assert obj["metadata"]["annotations"][ELASTIC_JOB_ANNOTATION] == "true"
    # Kueue's webhook suspends it at creation; the spec must not, or every update would re-suspend it.
    assert "suspend" not in spec and spec["enableInTreeAutoscaling"] is True and "autoscalerOptions" in spec
    assert spec["workerGroupSpecs"][0]["replicas"] == 1
    assert validate_object(obj, DEFAULT_EKS_VERSION) == []


def test_an_unqueued_cluster_is_unchanged() -> None:
    obj = ray_cluster(replace(CLUSTER, queue=None), "team-vision", "vision")
    assert QUEUE_NAME_LABEL not in obj["metadata"]["labels"] and "suspend" not in obj["spec"]
    assert ELASTIC_JOB_ANNOTATION not in obj["metadata"]["annotations"]


def test_a_queued_ephemeral_rayjob_is_suspended_and_its_cluster_admitted_whole() -> None:
    job = JobConfig(name="tune", kind="train", cluster="train", submission="kuberay",
                    kuberay=KubeRayJobConfig(code_uri="s3://b/jobs.zip", ephemeral=True))
    obj = ray_job(job, CLUSTER, "team-vision", "vision", "python -m jobs.train")
    spec, cluster = obj["spec"], obj["spec"]["rayClusterSpec"]
    assert obj["metadata"]["labels"][QUEUE_NAME_LABEL] == "vision"
    assert spec["suspend"] is True and spec["shutdownAfterJobFinishes"] is True
    # Kueue refuses autoscaling here: every worker group at maxReplicas, and the cluster itself not suspended.
    assert "suspend" not in cluster and cluster["enableInTreeAutoscaling"] is False and "autoscalerOptions" not in cluster
    assert [(g["replicas"], g["minReplicas"], g["maxReplicas"]) for g in cluster["workerGroupSpecs"]] == [(3, 3, 3)]
    assert [c["name"] for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]] == ["ray-head"]
    assert validate_object(obj, DEFAULT_EKS_VERSION) == []


def test_a_job_s_own_priority_class_replaces_the_queue_s_on_its_rayjob_only() -> None:
    kr = KubeRayJobConfig(code_uri="s3://b/jobs.zip", ephemeral=True)
    job = JobConfig(name="tune", kind="train", cluster="train", submission="kuberay", kuberay=kr)
    urgent = replace(job, kuberay=replace(kr, priority_class="production"))
    labels = [ray_job(j, CLUSTER, "team-vision", "vision", "python -m jobs.train")["metadata"]["labels"]
              for j in (job, urgent)]
    assert [lab[PRIORITY_CLASS_LABEL] for lab in labels] == ["batch", "production"]
    assert labels[1][QUEUE_NAME_LABEL] == "vision"


@pytest.mark.parametrize("ephemeral", [False, True])
def test_an_unqueued_rayjob_carries_no_queue(ephemeral: bool) -> None:
    job = JobConfig(name="tune", kind="train", cluster="train", submission="kuberay",
                    kuberay=KubeRayJobConfig(code_uri="s3://b/jobs.zip", ephemeral=ephemeral))
    obj = ray_job(job, replace(CLUSTER, queue=None), "team-vision", "vision", "python -m jobs.train")
    assert QUEUE_NAME_LABEL not in obj["metadata"]["labels"] and "suspend" not in obj["spec"]
