"""Digests that name work (components/specs/digest.py): a job's submission id, a spec's digest."""
from __future__ import annotations

from pathlib import Path

from components.clients.ray_jobs import RayJobArgs
from components.specs.digest import attempt_id, spec_digest, submission_id_for
from tests.hooks.test_ray_job import engine_props, make_args


def test_submission_id_is_deterministic_and_ignores_operational_settings() -> None:
    base = make_args(None, Path("/home/a/repo/jobs"), "train-digits")
    sid = submission_id_for(vars(base))
    assert sid.startswith("train-digits-") and len(sid) == len("train-digits-") + 12
    same = [
        make_args(None, Path("/home/a/repo/jobs"), "train-digits", wait="none", timeout_seconds=5,
                  dashboard_url="http://elsewhere:8265", auth_token="t", log_tail_lines=1),
        make_args(None, Path("/ci/checkout/jobs"), "train-digits"),  # same code, other checkout
    ]
    assert all(submission_id_for(vars(a)) == sid for a in same)
    # The engine's property bag (numbers as doubles, None dropped) names the same work.
    assert submission_id_for(vars(RayJobArgs(**{**engine_props(base), "runtime_env": base.runtime_env}))) == sid
    assert submission_id_for(engine_props(base)) == sid
    different = [
        make_args(None, Path("/home/a/repo/jobs"), "train-digits", code_hash="beef"),
        make_args(None, Path("/home/a/repo/jobs"), "train-digits", script="other.py"),
        make_args(None, Path("/home/a/repo/jobs"), "train-digits", entrypoint_num_cpus=1),
        make_args(None, Path("/home/a/repo/other"), "train-digits"),
    ]
    assert len({submission_id_for(vars(a)) for a in different} | {sid}) == len(different) + 1


def test_retries_get_their_own_ids() -> None:
    assert [attempt_id("j-0123456789ab", n) for n in (1, 2, 3)] == ["j-0123456789ab", "j-0123456789ab-r2",
                                                                   "j-0123456789ab-r3"]


def test_the_spec_digest_ignores_key_order_and_nothing_else() -> None:
    assert spec_digest({"a": 1, "b": [1, 2]}) == spec_digest({"b": [1, 2], "a": 1})
    assert spec_digest({"a": 1, "b": [1, 2]}) != spec_digest({"a": 1, "b": [2, 1]})
    assert spec_digest({"a": 1}) != spec_digest({"a": "1"})
