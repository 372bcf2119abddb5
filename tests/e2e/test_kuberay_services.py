"""The Services the real KubeRay operator makes for a RayCluster whose head is `LoadBalancer-internal`
(components/specs/raycluster.py): the head Service is a load balancer with the internal-LB
annotations, and `<name>-serve-svc`, which the operator types after the head group's
`serviceType` without those annotations, stays ClusterIP (a LoadBalancer there would be public).
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from components.config.model import LB_SERVICE_TYPE, HeadConfig, RayClusterConfig
from components.specs.raycluster import (
    INTERNAL_LB_ANNOTATIONS, head_service_name, ray_cluster, serve_service_name,
)
from tests.e2e import wait
from tools.e2e import controlplane as cp

pytestmark = pytest.mark.e2e

NS = "e2e-lb-internal"
CLUSTER = RayClusterConfig(name="lb", head=HeadConfig(service_type=LB_SERVICE_TYPE))
OPERATOR_S = 180.0


def service(name: str) -> dict[str, Any] | None:
    found = [s for s in cp.api("GET", f"/api/v1/namespaces/{NS}/services")["items"] if s["metadata"]["name"] == name]
    return found[0] if found else None


@pytest.fixture
def applied(operator: dict[str, Any]) -> Any:
    cp.kubectl("create", "namespace", NS, check=False)
    cp.kubectl("apply", "-f", "-", input=json.dumps(ray_cluster(CLUSTER, NS, "e2e")))
    yield
    cp.kubectl("delete", "namespace", NS, "--wait=false")


def test_an_internal_lb_head_gets_an_internal_lb_and_a_cluster_internal_serve_service(applied: None) -> None:
    head = wait("the head Service", lambda: service(head_service_name(CLUSTER.name)), OPERATOR_S)
    assert head["spec"]["type"] == "LoadBalancer"
    assert INTERNAL_LB_ANNOTATIONS.items() <= head["metadata"].get("annotations", {}).items()
    serve = wait("the Serve Service", lambda: service(serve_service_name(CLUSTER.name)), OPERATOR_S)
    assert serve["spec"]["type"] == "ClusterIP", serve
