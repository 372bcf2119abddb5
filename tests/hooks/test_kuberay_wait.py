"""Waiting in `pulumi up` for KubeRay custom resources (components/hooks/kuberay_wait.py): what a
RayJob or RayService status means, the poll on a fake clock, and the provider reading the CR through the
platform's kubeconfig from a stand-in CustomObjectsApi (the one call that needs an API server).
"""
from __future__ import annotations

from itertools import islice
from typing import Any

import kubernetes.client
import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from components.hooks.kuberay_wait import (
    POLL, READY_SETTLE_S, REFUSALS_KEY, KubeRayWaitError, KubeRayWaitProvider, Progress, fetcher, poll,
    raycluster_progress, rayjob_progress, rayservice_progress, refusals, spec_written_at,
)
from tests.clock import FakeClock

Obj = dict[str, Any]


# --- what a RayJob status means ----------------------------------------------------------------

STATUSES = [
    ("new", {}, "succeeded", False, None),
    ("initializing", {"jobDeploymentStatus": "Initializing", "rayClusterName": "train-digits-465312-rk2xq",
                      "jobId": "train-digits-465312-8wz5c", "startTime": "2026-03-01T10:00:00Z"},
     "succeeded", False, None),
    ("running", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING",
                 "dashboardURL": "train-digits-465312-rk2xq-head-svc.team-vision.svc.cluster.local:8265"},
     "succeeded", False, None),
    ("running is enough", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, "running", True, None),
    ("pending job, running deployment", {"jobDeploymentStatus": "Running", "jobStatus": "PENDING"}, "running",
     False, None),
    ("submitter created, no job yet", {"jobDeploymentStatus": "Running"}, "running", False, None),
    ("succeeded before it was seen running", {"jobDeploymentStatus": "Running", "jobStatus": "SUCCEEDED"},
     "running", True, None),
    ("succeeded", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "succeeded": 1, "failed": 0,
                   "message": "Job finished successfully.", "endTime": "2026-03-01T10:20:00Z"},
     "succeeded", True, None),
    ("app failed", {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed", "failed": 2,
                    "message": "Job entrypoint command failed with exit code 1"},
     "succeeded", False, "jobDeploymentStatus Failed, jobStatus FAILED, reason AppFailed: Job entrypoint command "
                         "failed with exit code 1 (2 failed attempt(s))"),
    ("deadline", {"jobDeploymentStatus": "Failed", "jobStatus": "RUNNING", "reason": "DeadlineExceeded",
                  "message": "The RayJob has passed the activeDeadlineSeconds. StartTime: 2026-03-01T10:00:00Z. "
                             "ActiveDeadlineSeconds: 3600"}, "running", False, "reason DeadlineExceeded"),
    ("submission failed", {"jobDeploymentStatus": "Failed", "reason": "SubmissionFailed",
                           "message": "Job submission has failed. Reason: BackoffLimitExceeded"},
     "succeeded", False, "reason SubmissionFailed: Job submission has failed"),
    ("invalid spec", {"jobDeploymentStatus": "ValidationFailed", "reason": "ValidationFailed",
                      "message": "The RayJob spec is invalid: BackoffLimit is incompatible with ClusterSelector mode"},
     "succeeded", False, "BackoffLimit is incompatible with ClusterSelector mode"),
    ("stopped", {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, "succeeded", False,
     "jobDeploymentStatus Complete, jobStatus STOPPED"),
    ("retrying", {"jobDeploymentStatus": "Retrying", "jobStatus": "FAILED", "failed": 1}, "succeeded", False, None),
    ("suspended", {"jobDeploymentStatus": "Suspended"}, "succeeded", False, "suspended: it will not run"),
]


@pytest.mark.parametrize(("status", "wait", "done", "failure"), [s[1:] for s in STATUSES],
                         ids=[s[0] for s in STATUSES])
def test_rayjob_status_interpretation(status: Obj, wait: str, done: bool, failure: str | None) -> None:
    progress = rayjob_progress({"status": status}, wait)
    assert progress.done is done
    if failure is None:
        assert progress.failure is None
    else:
        assert progress.failure is not None and failure in progress.failure


def test_the_cr_is_polled_from_every_2_s_up_to_every_15_s() -> None:
    assert list(islice(POLL.delays(), 7)) == [2.0, 3.0, 4.5, 6.75, 10.125, 15.0, 15.0]


def test_polling_returns_when_done_and_fails_with_the_status_reason() -> None:
    answers = iter([None, {"status": {"jobDeploymentStatus": "Initializing"}},
                    {"status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}}])
    clock = FakeClock()
    done = poll(lambda: next(answers), lambda o: rayjob_progress(o, "succeeded"), "RayJob ns/j", "succeed", 60,
                "hint", clock)
    assert done.done and clock.sleeps == [POLL.first_s, POLL.first_s * POLL.factor]

    failed = {"status": {"jobDeploymentStatus": "Failed", "reason": "AppFailed", "message": "boom"}}
    with pytest.raises(KubeRayWaitError, match=r"RayJob ns/j failed: .*reason AppFailed: boom\nhint"):
        poll(lambda: failed, lambda o: rayjob_progress(o, "succeeded"), "RayJob ns/j", "succeed", 60, "hint", clock)

    clock = FakeClock()
    running = {"status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}}
    with pytest.raises(KubeRayWaitError, match=r"did not succeed within 30s \(last status: jobDeploymentStatus "
                                               r"Running, jobStatus RUNNING\)\. It keeps going"):
        poll(lambda: running, lambda o: rayjob_progress(o, "succeeded"), "RayJob ns/j", "succeed", 30, "hint", clock)
    assert clock.now() == pytest.approx(30)


# --- what a RayService status means ------------------------------------------------------------

def status(ready: str, reason: str, generation: int = 2, observed: int = 2, apps: dict[str, Any] | None = None,
           pending_apps: dict[str, Any] | None = None, upgrading: str = "False", message: str = "") -> Obj:
    conditions = [{"type": "Ready", "status": ready, "reason": reason, "message": message,
                   "lastTransitionTime": "2026-03-01T10:00:00Z", "observedGeneration": observed}]
    conditions.append({"type": "UpgradeInProgress", "status": upgrading,
                       "reason": "BothActivePendingClustersExist" if upgrading == "True" else "NoPendingCluster"})
    body: Obj = {"conditions": conditions, "observedGeneration": observed, "numServeEndpoints": 2,
                 "activeServiceStatus": {"rayClusterName": "serve-6mj28",
                                         "applicationStatuses": apps if apps is not None else {
                                             "digits": {"status": "RUNNING", "serveDeploymentStatuses": {
                                                 "DigitsClassifier": {"status": "HEALTHY"}}}}}}
    if pending_apps is not None:
        body["pendingServiceStatus"] = {"rayClusterName": "serve-sjj67", "applicationStatuses": pending_apps}
    return {"metadata": {"name": "serve", "generation": generation}, "status": body}


SERVICE_STATUSES = [
    ("ready", status("True", "NonZeroServeEndpoints"), True, None),
    ("just created", {"metadata": {"name": "serve", "generation": 1}, "status": {}}, False, None),
    ("initializing", status("False", "Initializing", apps={}), False, None),
    ("no endpoints yet", status("False", "ZeroServeEndpoints",
                                apps={"digits": {"status": "DEPLOYING"}}), False, None),
    ("stale ready after a spec change", status("True", "NonZeroServeEndpoints", generation=3, observed=2), False, None),
    ("upgrade in progress", status("True", "NonZeroServeEndpoints", upgrading="True",
                                   pending_apps={"digits": {"status": "DEPLOYING"}}), False, None),
    ("app failed to deploy", status("False", "ZeroServeEndpoints", apps={"digits": {
        "status": "DEPLOY_FAILED", "message": "Failed to import 'jobs.serve:app': No module named 'jobs'"}}),
     False, "digits: Failed to import 'jobs.serve:app': No module named 'jobs'"),
    ("new cluster's app failed", status("True", "NonZeroServeEndpoints", upgrading="True", pending_apps={
        "digits": {"status": "DEPLOY_FAILED", "message": "CUDA out of memory"}}), False, "CUDA out of memory"),
    ("spec refused by the operator", status("False", "ValidationFailed", apps={}, generation=2, observed=1,
                                            message="spec.rayClusterConfig.headGroupSpec: must set a Ray image"),
     False, "Ready False (ValidationFailed): spec.rayClusterConfig.headGroupSpec: must set a Ray image"),
    ("initializing timeout", status("False", "InitializingTimeout", apps={},
                                    message="RayService did not become ready within 30m0s"),
     False, "Ready False (InitializingTimeout): RayService did not become ready within 30m0s"),
]


@pytest.mark.parametrize(("obj", "done", "failure"), [s[1:] for s in SERVICE_STATUSES],
                         ids=[s[0] for s in SERVICE_STATUSES])
def test_rayservice_status_interpretation(obj: Obj, done: bool, failure: str | None) -> None:
    progress = rayservice_progress(obj)
    assert progress.done is done, progress
    if failure is None:
        assert progress.failure is None, progress
    else:
        assert progress.failure is not None and failure in progress.failure


# --- reading the CR -----------------------------------------------------------------------------

COMPLETE: Obj = {"status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}}
RUNNING: Obj = {"status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}}
# Two contexts on two servers: the waiter must use the one the platform stack names.
KUBECONFIG = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "other",
    "clusters": [{"name": "other", "cluster": {"server": "https://127.0.0.1:2"}},
                 {"name": "platform", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
    "contexts": [{"name": "other", "context": {"cluster": "other", "user": "u"}},
                 {"name": "platform", "context": {"cluster": "platform", "user": "u"}}],
})


class FakeCustomObjects:
    """The one CustomObjectsApi call the waiter makes, answered from a script: an object, or an HTTP
    status to fail with; `host` is the API server of the client it was built with."""

    def __init__(self, answers: list[Obj | int | Exception], client: Any = None) -> None:
        self.answers = answers
        self.reads: list[tuple[str, ...]] = []
        self.host = client.configuration.host if client is not None else None

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                     _request_timeout: float) -> Obj:
        self.reads.append((group, version, namespace, plural, name))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            raise ApiException(status=answer, reason=REASONS[answer])
        return answer


REASONS = {403: "Forbidden", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}


def test_the_waiter_reads_the_cr_through_the_platform_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    apis: list[FakeCustomObjects] = []

    def api(client: Any) -> FakeCustomObjects:
        apis.append(FakeCustomObjects([COMPLETE], client))
        return apis[-1]

    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", api)
    props = {"kind": "RayJob", "namespace": "team-x", "name": "core-stats-abc123", "revision": "r1",
             "wait": "succeeded", "timeout_seconds": 60.0, "kubeconfig": KUBECONFIG, "kube_context": "platform"}
    created = KubeRayWaitProvider().create(props)
    assert created.id == "team-x/core-stats-abc123"
    assert (created.outs or {})["state"] == "jobDeploymentStatus Complete, jobStatus SUCCEEDED"
    (used,) = apis
    assert used.host == "https://127.0.0.1:1"
    assert used.reads == [("ray.io", "v1", "team-x", "rayjobs", "core-stats-abc123")]
    provider = KubeRayWaitProvider()
    assert not provider.diff("id", props, dict(props)).changes
    changed = provider.diff("id", props, {**props, "name": "core-stats-def456", "revision": "r2"})
    assert changed.changes and not changed.replaces
    assert provider.read("team-x/core-stats-abc123", props).outs == props
    assert Progress(done=True, summary="s").failure is None


def wait_on(answers: list[Obj | int | Exception], kind: str = "RayJob", timeout_s: float = 60) -> tuple[Progress, FakeClock]:
    clock = FakeClock()
    api = FakeCustomObjects(answers)
    progress = poll(fetcher(api, kind, "team-x", "core-stats"),  # type: ignore[arg-type]
                    lambda o: rayjob_progress(o, "succeeded"), f"{kind} team-x/core-stats", "succeed", timeout_s,
                    "hint", clock)
    assert set(api.reads) == {("ray.io", "v1", "team-x", "rayjobs" if kind == "RayJob" else "rayservices",
                               "core-stats")}
    return progress, clock


def test_a_cr_not_found_yet_is_waited_for() -> None:
    progress, clock = wait_on([404, 404, COMPLETE])
    assert progress.done and len(clock.sleeps) == 2
    with pytest.raises(KubeRayWaitError, match=r"RayJob team-x/core-stats did not succeed within 10s "
                                               r"\(last status: not found \(yet\)\)"):
        wait_on([404], timeout_s=10)


def test_a_refused_read_fails_the_wait_with_its_http_status() -> None:
    with pytest.raises(KubeRayWaitError, match=r"^reading RayService team-x/core-stats failed: HTTP 403 Forbidden"):
        wait_on([403], kind="RayService")


def test_transient_api_errors_are_retried_within_the_deadline() -> None:
    # A restarting API server: refused connections, then 503 and 429 from its front, then the answer.
    refused = urllib3.exceptions.MaxRetryError(None, "/apis", reason=ConnectionRefusedError(111, "refused"))
    progress, clock = wait_on([refused, 503, 429, 500, COMPLETE])
    assert progress.done and len(clock.sleeps) == 4
    with pytest.raises(KubeRayWaitError, match=r"did not succeed within 10s \(last status: jobDeploymentStatus "
                                               r"Running.*; the last read failed: reading RayJob team-x/core-stats "
                                               r"failed: HTTP 503 Service Unavailable\)"):
        wait_on([RUNNING, 503], timeout_s=10)


# A change to serveConfigV2 alone: the operator records the new generation with the old config's
# apps (RUNNING, Ready) in the pass that submits the new config; the next passes show the new apps.
OLD_APPS_READY = status("True", "NonZeroServeEndpoints", generation=3, observed=3)
NEW_APPS_DEPLOYING = status("False", "ZeroServeEndpoints", generation=3, observed=3,
                            apps={"digits": {"status": "DEPLOYING"}})
NEW_APPS_FAILED = status("False", "ZeroServeEndpoints", generation=3, observed=3, apps={"digits": {
    "status": "DEPLOY_FAILED", "message": "Failed to import 'jobs.serve:apps'"}})


def wait_for_service(answers: list[Obj], timeout_s: float = 120) -> tuple[Progress, FakeClock]:
    clock = FakeClock()
    progress = poll(fetcher(FakeCustomObjects(answers), "RayService", "team-x", "serve"),  # type: ignore[arg-type]
                    rayservice_progress, "RayService team-x/serve", "become Ready", timeout_s, "hint", clock,
                    settle_s=READY_SETTLE_S)
    return progress, clock


def test_a_ready_rayservice_is_accepted_only_once_it_stays_ready() -> None:
    progress, clock = wait_for_service([OLD_APPS_READY])
    assert progress.done and clock.now() >= READY_SETTLE_S
    # The old config's Ready, then the new config's apps: the wait starts over and ends on theirs.
    progress, clock = wait_for_service([OLD_APPS_READY, NEW_APPS_DEPLOYING, OLD_APPS_READY])
    assert progress.done and clock.now() >= clock.sleeps[0] + clock.sleeps[1] + READY_SETTLE_S


def test_the_old_configs_ready_never_hides_the_new_configs_failure() -> None:
    with pytest.raises(KubeRayWaitError, match=r"Failed to import 'jobs.serve:apps'"):
        wait_for_service([OLD_APPS_READY, NEW_APPS_DEPLOYING, NEW_APPS_FAILED])
    with pytest.raises(KubeRayWaitError, match=r"Failed to import 'jobs.serve:apps'"):
        wait_for_service([OLD_APPS_READY, NEW_APPS_FAILED])


def test_ready_when_time_runs_out_before_it_settled_is_accepted() -> None:
    progress, clock = wait_for_service([NEW_APPS_DEPLOYING, NEW_APPS_DEPLOYING, OLD_APPS_READY], timeout_s=5)
    assert progress.done and clock.now() == pytest.approx(5)


# --- a RayCluster the operator refuses ----------------------------------------------------------

WRITTEN = [{"manager": "pulumi-kubernetes", "operation": "Apply", "time": "2026-11-30T09:00:05Z"},
           {"manager": "ray-operator", "operation": "Update", "subresource": "status", "time": "2026-11-30T08:00:00Z"}]


def raycluster(generation: int, observed: int | None, **extra: Any) -> Obj:
    return {"metadata": {"name": "ray", "generation": generation, "uid": "u-1", "managedFields": WRITTEN},
            "status": {} if observed is None else {"observedGeneration": observed, "state": "ready"}, **extra}


def refusal(when: str, message: str = "spec.gcsFaultToleranceOptions: the embedded storage needs the "
                                      "GCSFaultToleranceEmbeddedStorage feature gate") -> Obj:
    return {"type": "Warning", "reason": "InvalidRayClusterSpec", "eventTime": when, "message": message}


def test_a_raycluster_is_accepted_once_the_operator_wrote_its_status_for_this_generation() -> None:
    assert raycluster_progress(raycluster(2, 2)).done
    assert not raycluster_progress(raycluster(3, 2)).done
    waiting = raycluster_progress(raycluster(1, None))
    assert not waiting.done and waiting.failure is None and "has not taken this spec yet" in waiting.summary


def test_a_refused_raycluster_fails_with_the_operators_reason() -> None:
    refused = raycluster_progress({**raycluster(1, None), REFUSALS_KEY: ["spec.x: bad"]})
    assert refused.failure == "the KubeRay operator refused it: spec.x: bad"


def test_only_refusals_of_the_current_spec_count() -> None:
    since = spec_written_at(raycluster(2, 1))
    assert since == "2026-11-30T09:00:05Z"  # the spec's last write, not the operator's status write
    events = [refusal("2026-11-30T08:59:00.000001Z", "an earlier spec"), refusal("2026-11-30T09:00:05.421337Z"),
              {"type": "Normal", "reason": "CreatedService", "eventTime": "2026-11-30T09:00:06Z", "message": "ok"}]
    assert refusals(events, since) == [events[1]["message"]]


def test_a_long_failure_message_keeps_its_start_and_its_end() -> None:
    log = "Job entrypoint command failed with exit code 1, last available logs:\n" + "noise\n" * 2000 + \
        "ValueError: num_chunks must be >= 1"
    failed = rayjob_progress({"status": {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed",
                                         "message": log}}, "succeeded")
    assert failed.failure is not None and len(failed.failure) < 2200
    assert "Job entrypoint command failed with exit code 1" in failed.failure
    assert failed.failure.endswith("ValueError: num_chunks must be >= 1")
