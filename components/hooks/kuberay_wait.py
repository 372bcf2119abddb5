"""Waiting in `pulumi up` for a KubeRay custom resource: a RayJob to finish, a RayService to be Ready,
a RayCluster to be taken by the operator.

pulumi-kubernetes has no await logic for these kinds, so their CustomResources skip it
(`pulumi.com/skipAwait`) and, when the job's config asks to wait, a small dynamic resource
created after the CR polls the CR's status through the Kubernetes API (the platform's
kubeconfig, a secret), within the job's `timeoutSeconds`, and fails the update with the CR's
own status reason and message. A RayCluster is always waited for (`ACCEPTED`): the operator
refuses a spec with a Warning event and no status, which is the failure then. What a status means
is decided by pure functions (`rayjob_progress`, `rayservice_progress`, `raycluster_progress`),
tested over realistic statuses.

The provider is pickled into the state by reference to this module, holds no state, and
imports the Kubernetes client only when it polls.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pulumi
import pulumi.dynamic
from pulumi.runtime import rpc

from components.clients.polling import SYSTEM_CLOCK, Backoff, Clock, Deadline, attempts
from components.constants import RAY_GROUP
from components.hooks.provider_host import widen_provider_host
from components.specs.digest import spec_digest

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api, CustomObjectsApi

T = TypeVar("T")

# Loaded in the provider host before its first call: long waits must not queue there.
widen_provider_host()

VERSION = "v1"
PLURALS = {"RayJob": "rayjobs", "RayService": "rayservices", "RayCluster": "rayclusters"}
# A RayCluster's wait: until the operator has taken its spec (wrote its status for this generation).
ACCEPTED = "accepted"
# The Warning events the operator gives a RayCluster it refuses, instead of a status (KubeRay v1.7.0,
# raycluster_controller.go: it validates, records one of these and returns without writing status).
REFUSAL_REASONS = ("InvalidRayClusterSpec", "InvalidRayClusterMetadata")
# What the RayCluster fetcher adds to the object it read: those events' messages, newest last.
REFUSALS_KEY = "ray-platform/refusals"
POLL = Backoff(first_s=2.0, max_s=15.0, factor=1.5)
API_TIMEOUT_S = 30.0
# How long a RayService must stay Ready before the wait accepts it. On a change to serveConfigV2
# alone the operator reads the apps' statuses, then submits the new config, and records the new
# observedGeneration with the old apps' statuses in that same pass (KubeRay v1.7.0,
# rayservice_controller.go: reconcileServe, then calculateStatus): Ready=True at once, from the old
# config. Its next passes (every 2 s, ServiceDefaultRequeueDuration) show the new config's apps
# DEPLOYING, then RUNNING or DEPLOY_FAILED, which stays: a Ready that outlives several passes is the
# new config's.
READY_SETTLE_S = 10.0
# Any change to these is an update, which waits again.
INPUT_FIELDS = ("kind", "namespace", "name", "revision", "wait", "timeout_seconds", "kubeconfig", "kube_context")
SECRET_FIELDS = ("kubeconfig",)


@dataclass(frozen=True)
class Progress:
    """One reading of a CR's status: finished (done), failed (failure says why), or neither."""

    done: bool
    summary: str
    failure: str | None = None


class KubeRayWaitError(RuntimeError):
    """The CR failed, or did not get there in time; the message carries its status."""


# --- what a status means ------------------------------------------------------------------

def clip(text: str, limit: int) -> str:
    """`text` within `limit` characters: its start and its end. A failed Ray job's message is Ray's
    "Job entrypoint command failed ..., last available logs" then the log, whose error is at the end."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return f"{text[:head]} [...] {text[len(text) - (limit - head):]}"


def rayjob_progress(obj: Mapping[str, Any], wait: str) -> Progress:
    """A RayJob's status against `wait` ("running": the Ray job runs; "succeeded": it succeeded).

    `jobDeploymentStatus` is KubeRay's view (cluster, submitter, deadlines), `jobStatus` Ray's
    view of the job itself; Complete with a FAILED or STOPPED job is a failure too.
    """
    status = obj.get("status") or {}
    deployment = status.get("jobDeploymentStatus") or "New"
    job = status.get("jobStatus") or ""
    reason, message = status.get("reason") or "", (status.get("message") or "").strip()
    summary = f"jobDeploymentStatus {deployment}, jobStatus {job or '-'}"
    if reason:
        summary += f", reason {reason}"
    if message:
        summary += f": {clip(message, 2000)}"
    if status.get("failed"):
        summary += f" ({status['failed']} failed attempt(s))"
    if deployment in ("Failed", "ValidationFailed"):
        return Progress(done=False, summary=summary, failure=summary)
    if deployment == "Suspended":
        return Progress(done=False, summary=summary, failure=f"{summary} (suspended: it will not run until resumed)")
    if deployment == "Complete":
        if job == "SUCCEEDED":
            return Progress(done=True, summary=summary)
        return Progress(done=False, summary=summary, failure=summary)
    # Ray's view, not KubeRay's: the operator says Running as soon as the submitter Job exists,
    # while the Ray job may still be PENDING (or never start).
    if wait == "running" and job in ("RUNNING", "SUCCEEDED"):
        return Progress(done=True, summary=summary)
    return Progress(done=False, summary=summary)


def _app_states(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Serve application statuses of the pending cluster over those of the active one."""
    apps: dict[str, Mapping[str, Any]] = {}
    for side in ("activeServiceStatus", "pendingServiceStatus"):
        apps.update(((status.get(side) or {}).get("applicationStatuses") or {}))
    return apps


def rayservice_progress(obj: Mapping[str, Any]) -> Progress:
    """Ready once the operator has seen the current spec, the Ready condition is True and no
    NewCluster upgrade is still in progress; failed on a Serve app that failed to deploy, on
    KubeRay's initializing timeout or on a spec the operator refused."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready, upgrading = conditions.get("Ready") or {}, conditions.get("UpgradeInProgress") or {}
    apps = _app_states(status)
    app_text = ", ".join(f"{name} {app.get('status', '?')}" for name, app in sorted(apps.items()))
    summary = f"Ready {ready.get('status', 'Unknown')}"
    if ready.get("reason"):
        summary += f" ({ready['reason']})"
    if ready.get("message"):
        summary += f": {str(ready['message'])[:500]}"
    if app_text:
        summary += f"; applications: {app_text}"
    failed = [f"{name}: {app.get('message') or 'no message'}" for name, app in sorted(apps.items())
              if app.get("status") == "DEPLOY_FAILED"]
    if failed:
        return Progress(done=False, summary=summary,
                        failure=f"Serve application(s) failed to deploy: {'; '.join(failed)[:1500]}")
    # Both end a RayService's initialization for good; on ValidationFailed the operator never
    # advances observedGeneration, so waiting would only run out the whole timeout.
    if ready.get("reason") in ("InitializingTimeout", "ValidationFailed"):
        return Progress(done=False, summary=summary, failure=summary)
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and (observed is None or int(observed) < int(generation)):
        return Progress(done=False, summary=f"{summary} (the operator has not reconciled generation {generation} yet)")
    if ready.get("status") == "True" and upgrading.get("status") != "True":
        return Progress(done=True, summary=summary)
    return Progress(done=False, summary=summary)


def raycluster_progress(obj: Mapping[str, Any]) -> Progress:
    """Accepted once the operator wrote the status of the current generation; failed on its refusal."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    summary = f"state {status.get('state') or '-'}, observedGeneration {observed or '-'} of {generation or '-'}"
    if generation is not None and observed is not None and int(observed) >= int(generation):
        return Progress(done=True, summary=summary)
    refusals = list(obj.get(REFUSALS_KEY) or [])
    if refusals:
        return Progress(done=False, summary=summary, failure=f"the KubeRay operator refused it: {refusals[-1][:1500]}")
    return Progress(done=False, summary=f"{summary} (the operator has not taken this spec yet)")


def spec_written_at(obj: Mapping[str, Any]) -> str:
    """When the object was last written other than its status (the API server's clock, RFC 3339)."""
    fields = (obj.get("metadata") or {}).get("managedFields") or []
    return max((str(f.get("time") or "") for f in fields if f.get("subresource") != "status"), default="")


def refusals(events: list[Mapping[str, Any]], since: str) -> list[str]:
    """Messages of the operator's refusals among `events` of one object, recorded at or after `since`
    (to the second: an earlier spec's refusal is not this one's)."""
    found = []
    for event in events:
        when = max(str(event.get(k) or "") for k in ("lastTimestamp", "eventTime", "firstTimestamp"))
        if event.get("type") == "Warning" and event.get("reason") in REFUSAL_REASONS and when[:19] >= since[:19]:
            found.append((when, str(event.get("message") or event.get("reason"))))
    return [message for _, message in sorted(found)]


def progress_of(kind: str, obj: Mapping[str, Any], wait: str) -> Progress:
    if kind == "RayCluster":
        return raycluster_progress(obj)
    return rayjob_progress(obj, wait) if kind == "RayJob" else rayservice_progress(obj)


# --- polling --------------------------------------------------------------------------------

class TransientApiError(KubeRayWaitError):
    """The API server did not answer this read (no connection, 429, 5xx): the next poll tries again."""


def poll(fetch: Callable[[], Mapping[str, Any] | None], interpret: Callable[[Mapping[str, Any]], Progress],
         what: str, goal: str, timeout_s: float, hint: str, clock: Clock = SYSTEM_CLOCK,
         settle_s: float = 0.0) -> Progress:
    """Read the CR until `interpret` says done on every read for `settle_s` (returned) or failed
    (raised), within `timeout_s`; reads that fail transiently are retried within it."""
    progress, read_error = Progress(done=False, summary="not read yet"), ""
    done_since: float | None = None
    for _ in attempts(POLL, Deadline(timeout_s, clock)):
        try:
            obj = fetch()
        except TransientApiError as exc:
            read_error = f"; the last read failed: {exc}"
            continue
        read_error = ""
        progress = Progress(done=False, summary="not found (yet)") if obj is None else interpret(obj)
        if progress.failure is not None:
            raise KubeRayWaitError(f"{what} failed: {progress.failure}\n{hint}")
        if not progress.done:
            done_since = None
            continue
        done_since = clock.now() if done_since is None else done_since
        if clock.now() - done_since >= settle_s:
            return progress
    if progress.done:
        return progress  # done, not yet for settle_s, when time ran out: nothing said otherwise
    raise KubeRayWaitError(f"{what} did not {goal} within {timeout_s:g}s (last status: {progress.summary}{read_error}). "
                           f"It keeps going in the cluster; the next `pulumi up` waits again.\n{hint}")


def read_api(what: str, call: Callable[[], T]) -> T:
    """`call()`, a failure to get an answer from the API server (no connection, 429, 5xx) raised as
    TransientApiError; any other ApiException is the caller's."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        return call()
    except ApiException as exc:
        if exc.status == 429 or (exc.status or 0) >= 500:
            raise TransientApiError(f"{what} failed: HTTP {exc.status} {exc.reason}") from None
        raise
    except (Urllib3Error, OSError) as exc:
        raise TransientApiError(f"{what}: {type(exc).__name__}: {exc}"[:300]) from None


def fetcher(api: CustomObjectsApi, kind: str, namespace: str, name: str) -> Callable[[], Mapping[str, Any] | None]:
    from kubernetes.client.exceptions import ApiException

    what = f"reading {kind} {namespace}/{name}"

    def fetch() -> Mapping[str, Any] | None:
        try:
            return cast(Mapping[str, Any], read_api(what, lambda: api.get_namespaced_custom_object(
                RAY_GROUP, VERSION, namespace, PLURALS[kind], name, _request_timeout=API_TIMEOUT_S)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeRayWaitError(f"{what} failed: HTTP {exc.status} {exc.reason}") from None

    return fetch


def with_refusals(fetch: Callable[[], Mapping[str, Any] | None], core: CoreV1Api,
                  namespace: str) -> Callable[[], Mapping[str, Any] | None]:
    """`fetch`, plus the operator's refusals of the object (REFUSALS_KEY) while it has not taken its spec."""
    from kubernetes.client.exceptions import ApiException

    def fetch_with_events() -> Mapping[str, Any] | None:
        obj = fetch()
        if obj is None or raycluster_progress(obj).done:
            return obj
        uid = (obj.get("metadata") or {}).get("uid")
        try:
            resp = read_api(f"listing the events of {namespace}/{uid}", lambda: core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.uid={uid}", _preload_content=False,
                _request_timeout=API_TIMEOUT_S))
        except ApiException:
            return obj  # events not readable here: only the timeout can tell
        events = json.loads(resp.data).get("items") or []
        return {**obj, REFUSALS_KEY: refusals(events, spec_written_at(obj))}

    return fetch_with_events


def hint_for(kind: str, namespace: str, name: str) -> str:
    return (f"Inspect: kubectl -n {namespace} describe {kind.lower()} {name}; "
            f"kubectl -n {namespace} get events --field-selector involvedObject.name={name}")


def wait_for(props: Mapping[str, Any], clock: Clock = SYSTEM_CLOCK) -> Progress:
    """The provider's create/update: poll the CR named in `props` until its wait is met."""
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    from components.clients.k8s_tunnel import api_client

    kind, namespace, name = str(props["kind"]), str(props["namespace"]), str(props["name"])
    wait = str(props.get("wait") or "succeeded")
    goals = {"RayService": "become Ready", "RayCluster": "get its spec taken by the KubeRay operator"}
    goal = goals.get(kind) or ("start running" if wait == "running" else "succeed")
    with api_client(str(props["kubeconfig"]), cast("str | None", props.get("kube_context"))) as client:
        fetch = fetcher(CustomObjectsApi(client), kind, namespace, name)
        if kind == "RayCluster":
            fetch = with_refusals(fetch, CoreV1Api(client), namespace)
        return poll(fetch,
                    lambda obj: progress_of(kind, obj, wait), f"{kind} {namespace}/{name}", goal,
                    float(props.get("timeout_seconds") or 0), hint_for(kind, namespace, name), clock,
                    settle_s=READY_SETTLE_S if kind == "RayService" else 0.0)


# --- the dynamic resource -------------------------------------------------------------------

def _plain(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: rpc.unwrap_rpc_secret(props[k]) for k in INPUT_FIELDS if k in props}


class KubeRayWaitProvider(pulumi.dynamic.ResourceProvider):
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        old, new = _plain(olds), _plain(news)
        changed = [k for k in INPUT_FIELDS
                   if isinstance(news.get(k), pulumi.output.Unknown) or old.get(k) != new.get(k)]
        # Nothing outside Pulumi to replace: an update waits again for the (new) CR.
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        plain = _plain(props)
        progress = wait_for(plain)
        return pulumi.dynamic.CreateResult(f"{plain['namespace']}/{plain['name']}",
                                           {**props, "state": progress.summary})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        progress = wait_for(_plain(news))
        return pulumi.dynamic.UpdateResult({**news, "state": progress.summary})

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        # Refresh keeps the recorded state: waiting is what create and update are for.
        return pulumi.dynamic.ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the CR itself is a separate resource."""


@dataclass(frozen=True)
class KubeRayWaitArgs:
    kind: str
    namespace: str
    name: pulumi.Input[str]
    # Changes when the CR's spec changes, so an update waits for the new spec to take effect.
    revision: str
    wait: str
    timeout_seconds: int
    # The platform stack's kubeconfig output (a secret: document or path) and its context.
    kubeconfig: pulumi.Input[str]
    kube_context: pulumi.Input[str] | None


class KubeRayWait(pulumi.dynamic.Resource, name="KubeRayWait"):
    """Blocks `pulumi up` until a RayJob finishes or a RayService is Ready, failing with its reason."""

    state: pulumi.Output[str]

    def __init__(self, name: str, args: KubeRayWaitArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "kind": args.kind, "namespace": args.namespace, "name": args.name, "revision": args.revision,
            "wait": args.wait, "timeout_seconds": args.timeout_seconds,
            "kubeconfig": pulumi.Output.secret(args.kubeconfig), "kube_context": args.kube_context,
            "state": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_FIELDS)))
        super().__init__(KubeRayWaitProvider(), name, props, opts)


def wait_on(name: str, custom_resource: pulumi.Resource, manifest: Mapping[str, Any], wait: str,
            timeout_seconds: int, kubeconfig: pulumi.Input[str], kube_context: pulumi.Input[str] | None,
            parent: pulumi.Resource) -> tuple[pulumi.Resource, pulumi.Output[str] | None]:
    """(what later jobs wait for, the CR's status): a KubeRayWait on the CR when `wait` asks for
    one, else the CR itself and no status."""
    if wait == "none":
        return custom_resource, None
    metadata = manifest["metadata"]
    waiter = KubeRayWait(f"{name}-wait", KubeRayWaitArgs(
        kind=manifest["kind"], namespace=metadata["namespace"], name=metadata["name"],
        revision=spec_digest(manifest["spec"]), wait=wait, timeout_seconds=timeout_seconds,
        kubeconfig=kubeconfig, kube_context=kube_context),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[custom_resource]))
    return waiter, waiter.state
