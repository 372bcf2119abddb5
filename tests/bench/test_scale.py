"""bench/scale.py and bench/kube.py on fixed inputs; the measurements run in `make bench`."""
from __future__ import annotations

import pytest
import yaml

from bench import kube
from bench.scale import StackSample, bracket_figures, growth_figures
from components import constants as C
from tools.e2e import stacks


def samples(times: list[float]) -> list[StackSample]:
    return [StackSample(i, t, t * 0.9, 0.1, 18, {"engine": 170.0 + i}) for i, t in enumerate(times, start=1)]


def test_brackets_take_the_stacks_up_to_each_size() -> None:
    figures = bracket_figures(samples([3.0] * 10), (1, 3, 10))
    deploy = [f for f in figures if f.name.startswith("team `pulumi up`")]
    assert [len(f.ours) for f in deploy] == [1, 2, 7]
    assert [f.name.split(", ")[-1] for f in deploy] == ["N=1 (stacks 1-1)", "N=3 (stacks 2-3)", "N=10 (stacks 4-10)"]
    memory = [f for f in figures if f.name.startswith("peak memory of the engine")]
    assert memory[-1].ours == [174.0, 175.0, 176.0, 177.0, 178.0, 179.0, 180.0]


@pytest.mark.parametrize(("times", "status"), [
    ([3.0] * 50, "pass"),                                  # flat: a linear total
    ([3.0 + 0.2 * i for i in range(50)], "miss"),           # each team slower than the last
])
def test_growth_says_whether_a_team_deploy_stays_flat(times: list[float], status: str) -> None:
    slope, flat = growth_figures(samples(times), (1, 10, 50))
    assert flat.status == status
    assert slope.ours[0] == pytest.approx(0.0 if status == "pass" else 0.2, abs=1e-9)


def test_bench_team_stack_is_the_shipped_one_renamed_without_jobs() -> None:
    doc = yaml.safe_load(kube.team_file("scale07").read_text())
    shipped = stacks.shipped(stacks.TEAM_STACK)
    assert doc["encryptionsalt"] == shipped["encryptionsalt"]
    assert doc["config"][stacks.key("team")]["name"] == "scale07"
    assert doc["config"][stacks.key("jobs")] == []
    assert doc["config"][stacks.key("rayClusters")] == shipped["config"][stacks.key("rayClusters")]


def test_floor_objects_are_the_render_namespace_first() -> None:
    objects = list(yaml.safe_load_all(kube.rendered_yaml("floor9")))
    assert objects[0]["kind"] == "Namespace" and objects[0]["metadata"]["name"] == kube.namespace("floor9")
    assert {"RayCluster", "ResourceQuota"} <= {o["kind"] for o in objects}
    assert all(o["metadata"].get("namespace") in (None, kube.namespace("floor9")) for o in objects)


def test_extra_nodes_are_the_cpu_pool_with_more_capacity() -> None:
    nodes = kube.cpu_capacity_nodes(2, "48", "192Gi")
    assert [n["metadata"]["name"] for n in nodes] == ["kwok-bench-cpu-0", "kwok-bench-cpu-1"]
    for node in nodes:
        assert node["metadata"]["labels"][C.NODE_POOL_LABEL] == "cpu"
        assert node["status"]["allocatable"]["cpu"] == "48" and "taints" not in node["spec"]
