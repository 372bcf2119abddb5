"""Every shipped team stack: heads protected from voluntary disruption, a PDB per worker group."""
from __future__ import annotations

from pathlib import Path

import pytest

from components.specs.ray_disruption import head_annotations
from tests.stacks import ids, manifests_of, rendered, stack_files

TEAM = stack_files("team")


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_heads_carry_the_annotations_and_worker_groups_their_pdbs(path: Path) -> None:
    r = rendered(path)
    pdbs = {(p["spec"]["selector"]["matchLabels"]["ray.io/cluster"], p["spec"]["selector"]["matchLabels"]["ray.io/group"])
            for p in manifests_of(r, "PodDisruptionBudget")}
    clusters = manifests_of(r, "RayCluster")
    for cluster in clusters:
        spec = cluster["spec"]
        assert spec["headGroupSpec"]["template"]["metadata"]["annotations"] == head_annotations()
        for group in spec.get("workerGroupSpecs", []):
            assert (cluster["metadata"]["name"], group["groupName"]) in pdbs
            assert "preStop" in group["template"]["spec"]["containers"][0]["lifecycle"]
    assert len(pdbs) == sum(len(c["spec"].get("workerGroupSpecs", [])) for c in clusters)
