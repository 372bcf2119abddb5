"""The EKS cluster's kubeconfig (components/platform/eks_cluster.py)."""
from __future__ import annotations

import json

from components.platform.eks_cluster import kubeconfig_document


def test_kubeconfig_uses_short_lived_tokens() -> None:
    doc = json.loads(kubeconfig_document("ray-dev", "https://x", "Q0E=", "us-west-2"))
    user = doc["users"][0]["user"]
    assert "token" not in user and user["exec"]["command"] == "aws"
    assert user["exec"]["args"][:4] == ["eks", "get-token", "--cluster-name", "ray-dev"]
