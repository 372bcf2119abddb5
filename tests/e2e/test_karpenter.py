"""A Karpenter-provisioned platform's objects on the real API server (issue 15).

The Karpenter CRDs of KARPENTER_VERSION are installed from ../shared/karpenter-crds (what the
platform's `karpenter-crd` chart holds), then the EC2NodeClasses and NodePools of the shipped
Karpenter platform stack (staging, rendered offline by the real program) are created with
server-side apply: the API server checks them against the CRDs' schemas and evaluates their CEL
rules, which the offline validation does not. No Karpenter controller runs here: it needs EC2,
SQS, IAM and pricing (docs/e2e.md, "Karpenter", lists what stays unverified).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tools.e2e import controlplane as cp
from tools.k8s_schema import karpenter_crd_dir
from tools.render import STACKS_DIR, render_stack

pytestmark = pytest.mark.e2e

STACK = STACKS_DIR / "Pulumi.staging.yaml"
KINDS = {"EC2NodeClass": "/apis/karpenter.k8s.aws/v1/ec2nodeclasses",
         "NodePool": "/apis/karpenter.sh/v1/nodepools"}
FIELD_MANAGER = "ray-platform-e2e"


def apply(obj: dict[str, Any], check: bool = True) -> Any:
    return cp.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-",
                      input=yaml.safe_dump(obj), check=check)


@pytest.fixture(scope="module")
def crds(controlplane: dict[str, Any]) -> Iterator[list[str]]:
    folder = str(karpenter_crd_dir())
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", folder)
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", folder)
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted(karpenter_crd_dir().glob("*.yaml"))]
    yield names
    # Back to the control plane `up` made: no Karpenter kinds left behind.
    cp.kubectl("delete", "--wait=true", "--ignore-not-found", "-f", folder)


@pytest.fixture(scope="module")
def platform_objects(crds: list[str]) -> Iterator[list[dict[str, Any]]]:
    objects = [m for m in render_stack(STACK).manifests() if m["kind"] in KINDS]
    # Node classes first: the NodePools name them.
    objects.sort(key=lambda m: list(KINDS).index(m["kind"]))
    yield objects
    for obj in reversed(objects):
        cp.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found", "--wait=true")


def test_the_karpenter_crds_are_established(crds: list[str]) -> None:
    live = {c["metadata"]["name"]: c for c in cp.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]}
    assert set(crds) == {"ec2nodeclasses.karpenter.k8s.aws", "nodeclaims.karpenter.sh", "nodeoverlays.karpenter.sh",
                         "nodepools.karpenter.sh"}
    for name in crds:
        conditions = {c["type"]: c["status"] for c in live[name]["status"]["conditions"]}
        assert conditions.get("Established") == "True", name


def test_the_platforms_node_classes_and_node_pools_are_accepted_as_rendered(
        platform_objects: list[dict[str, Any]]) -> None:
    assert {m["kind"] for m in platform_objects} == set(KINDS)
    for obj in platform_objects:
        result = apply(obj, check=False)
        assert result.returncode == 0, f"{obj['kind']}/{obj['metadata']['name']}: {result.stderr}"
    for obj in platform_objects:
        live = cp.api("GET", f"{KINDS[obj['kind']]}/{obj['metadata']['name']}")
        # What we sent is what is stored; the server only adds its defaults beside it.
        assert_subset(obj["spec"], live["spec"], f"{obj['kind']}/{obj['metadata']['name']}")
        assert live["metadata"]["labels"] == obj["metadata"]["labels"]
    pools = {m["metadata"]["name"]: m for m in platform_objects if m["kind"] == "NodePool"}
    gpu = [p for p in pools.values() if "taints" in p["spec"]["template"]["spec"]]
    assert gpu and all(p["spec"]["limits"]["nvidia.com/gpu"] for p in gpu)


def test_the_api_server_evaluates_the_crds_cel_rules(platform_objects: list[dict[str, Any]]) -> None:
    """Evidence the rules above ran: objects the schemas accept but the CEL rules refuse are refused."""
    node_class = copy.deepcopy(next(m for m in platform_objects if m["kind"] == "EC2NodeClass"))
    node_class["metadata"]["name"] = "cel-both-role-and-profile"
    node_class["spec"]["instanceProfile"] = "some-profile"
    refused = apply(node_class, check=False)
    assert refused.returncode != 0 and "must specify exactly one of ['role', 'instanceProfile']" in refused.stderr
    node_pool = copy.deepcopy(next(m for m in platform_objects if m["kind"] == "NodePool"))
    node_pool["metadata"]["name"] = "cel-static-with-weight"
    node_pool["spec"].update(replicas=1, weight=10, limits={"nodes": "1"})
    refused = apply(node_pool, check=False)
    assert refused.returncode != 0 and "'weight' is not supported on static NodePools" in refused.stderr


def assert_subset(sent: Any, stored: Any, where: str) -> None:
    if isinstance(sent, dict):
        assert isinstance(stored, dict), where
        for key, value in sent.items():
            assert key in stored, f"{where}.{key} dropped by the server"
            assert_subset(value, stored[key], f"{where}.{key}")
    else:
        same = json.dumps(sent, sort_keys=True) == json.dumps(stored, sort_keys=True)
        assert same, f"{where}: sent {sent!r}, stored {stored!r}"
