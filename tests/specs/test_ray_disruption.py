"""Disruption safety of Ray pods (components/specs/ray_disruption.py) as the RayCluster builder uses it."""
from __future__ import annotations

from components.constants import DO_NOT_DISRUPT_ANNOTATION, RAY_CLUSTER_LABEL, SAFE_TO_EVICT_ANNOTATION
from components.specs.ray_disruption import (
    DRAIN_PROGRAM, RAY_GROUP_LABEL, WORKER_TERMINATION_GRACE_SECONDS, drain_command, head_annotations,
    worker_group_pdb,
)
from components.versions import DEFAULT_EKS_VERSION
from policy import rules
from tests.specs.test_raycluster import build
from tools.k8s_schema import validate_object

RAYCLUSTER = "kubernetes:ray.io/v1:RayCluster"


def test_the_head_is_never_disrupted_on_purpose() -> None:
    obj = build()
    annotations = obj["spec"]["headGroupSpec"]["template"]["metadata"]["annotations"]
    assert annotations == head_annotations() == {DO_NOT_DISRUPT_ANNOTATION: "true", SAFE_TO_EVICT_ANNOTATION: "false"}
    assert rules.ray_heads_not_disrupted(RAYCLUSTER, obj) == []
    del obj["spec"]["headGroupSpec"]["template"]["metadata"]["annotations"]
    assert "may be disrupted" in rules.ray_heads_not_disrupted(RAYCLUSTER, obj)[0]


def test_every_worker_drains_its_ray_node_before_it_stops() -> None:
    for group in build()["spec"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert container["lifecycle"] == {"preStop": {"exec": {"command": drain_command()}}}
        assert pod["terminationGracePeriodSeconds"] == WORKER_TERMINATION_GRACE_SECONDS
        # The Ray deadline is the pod's grace period: the kubelet kills the container then.
        assert drain_command()[-1] == str(WORKER_TERMINATION_GRACE_SECONDS)
    assert "DRAIN_NODE_REASON_PREEMPTION" in DRAIN_PROGRAM and "RAY_CLOUD_INSTANCE_ID" in DRAIN_PROGRAM
    compile(DRAIN_PROGRAM, "<preStop>", "exec")


def test_a_pdb_per_worker_group_selects_its_pods_by_kubernetes_own_labels() -> None:
    pdb = worker_group_pdb("train", "gpu", "team-vision", {"ray-platform.io/team": "vision"})
    assert validate_object(pdb, DEFAULT_EKS_VERSION) == []
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {RAY_CLUSTER_LABEL: "train",
                                                                             RAY_GROUP_LABEL: "gpu"}}}
