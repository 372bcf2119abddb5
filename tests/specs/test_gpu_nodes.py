"""GPU node labels, taint and the Cluster Autoscaler's node template (components/specs/gpu_nodes.py)."""
from __future__ import annotations

from components.config.model import GpuPoolConfig
from components.specs.gpu_nodes import CA_TEMPLATE_PREFIX, autoscaler_node_template_tags, pool_labels


def test_scale_from_zero_tags_cover_labels_taint_and_gpu_count() -> None:
    pool = GpuPoolConfig(name="p5", instance_types=("p5.48xlarge",), gpus_per_node=8, labels={"workload": "training"})
    tags = autoscaler_node_template_tags(pool)
    assert tags[f"{CA_TEMPLATE_PREFIX}/resources/nvidia.com/gpu"] == "8"
    assert tags[f"{CA_TEMPLATE_PREFIX}/taint/nvidia.com/gpu"] == "true:NoSchedule"
    for key, value in pool_labels(pool).items():
        assert tags[f"{CA_TEMPLATE_PREFIX}/label/{key}"] == value
    assert pool_labels(pool)["workload"] == "training"
