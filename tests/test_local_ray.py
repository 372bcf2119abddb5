from __future__ import annotations

import pytest

from tools.local_ray import LocalRay, dashboard_ready

pytestmark = pytest.mark.ray


def test_head_answers_on_loopback(ray_head: LocalRay) -> None:
    assert ray_head.dashboard_url.startswith("http://127.0.0.1:")
    assert dashboard_ready(ray_head.dashboard_url)
    assert ray_head.alive()
