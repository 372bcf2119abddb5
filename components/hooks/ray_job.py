"""The post-deploy hook: submit and track one Ray job through the Ray Job SDK.

`RayJob` is a Pulumi dynamic resource. Its provider is a thin shell over plain functions
(components/clients/ray_jobs.py) that talk to the Ray dashboard and are tested without Pulumi;
this module turns the engine's property bags into `RayJobArgs` and back, checks and diffs them.

The provider object is pickled into the stack state by Pulumi (dill, by reference
to this module), so it holds no state, and `ray` (and the Kubernetes client) are
imported only when a method actually talks to a cluster.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pulumi
import pulumi.dynamic
from pulumi.runtime import rpc

from components.clients.ray_dashboard import RayJobError, redact
from components.clients.ray_jobs import (
    HOOK_KINDS, INPUT_FIELDS, OUTPUT_FIELDS, RayJobArgs, delete_or_forget, reach, read_or_keep, refresh_job, run_job,
)
from components.config.model import DASHBOARD_ACCESS, JOB_NAME_MAX, JOB_WAITS, is_dns_label
from components.hooks.provider_host import widen_provider_host
from components.specs.digest import IDENTITY_FIELDS, canon, canonical_runtime_env

# Loaded in the provider host before its first call: long waits must not queue there.
widen_provider_host()

# Serve app names end up in actor names and log file names (job names follow the config's rule).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

SECRET_FIELDS = ("auth_token", "kubeconfig")


def props_of(args: RayJobArgs[Any]) -> dict[str, Any]:
    """The property bag the Pulumi engine hands the provider for `args`."""
    return {name: getattr(args, name) for name in INPUT_FIELDS}


_INT_FIELDS = ("entrypoint_memory", "timeout_seconds", "dashboard_wait_seconds", "log_tail_lines")
_FLOAT_FIELDS = ("entrypoint_num_cpus", "entrypoint_num_gpus")
_DICT_FIELDS = ("runtime_env", "metadata")


# --- Pulumi property plumbing -----------------------------------------------------

def _plain(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value)


def _is_unknown(value: Any) -> bool:
    return isinstance(value, pulumi.output.Unknown)


def args_from_props(props: Mapping[str, Any]) -> RayJobArgs[str]:
    """RayJobArgs from the property bag the engine sends (None dropped, numbers as floats)."""
    values: dict[str, Any] = {}
    for name in INPUT_FIELDS:
        if name not in props:
            continue
        value = _plain(props[name])
        if name in _INT_FIELDS and value is not None:
            value = int(value)
        elif name in _FLOAT_FIELDS and value is not None:
            value = float(value)
        elif name in _DICT_FIELDS:
            value = dict(canon(value or {}))
        values[name] = value
    return RayJobArgs(**values)


def check_failures(news: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for every invalid input; values unknown at preview are skipped."""
    known = {k: _plain(v) for k, v in news.items() if not _is_unknown(v)}
    failures: list[tuple[str, str]] = []

    def bad(prop: str, reason: str) -> None:
        failures.append((prop, reason))

    job_name = known.get("job_name")
    if "job_name" in known and not (isinstance(job_name, str) and is_dns_label(job_name, JOB_NAME_MAX)):
        bad("job_name", f"{job_name!r} must be a DNS-1035 label of at most {JOB_NAME_MAX} characters, as a job's "
                        "name in the stack config (it prefixes the Ray submission id)")
    if "kind" in known and known["kind"] not in HOOK_KINDS:
        bad("kind", f"{known['kind']!r} is not one of {', '.join(HOOK_KINDS)}")
    for prop in ("entrypoint", "code_hash"):
        if prop in known and not (isinstance(known[prop], str) and known[prop].strip()):
            bad(prop, "must be a non-empty string")
    url = known.get("dashboard_url")
    if "dashboard_url" in known and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        bad("dashboard_url", f"{url!r} must be an http:// or https:// URL of the Ray dashboard")
    access = known.get("dashboard_access", "url")
    if access not in DASHBOARD_ACCESS:
        bad("dashboard_access", f"{access!r} is not one of {', '.join(DASHBOARD_ACCESS)}")
    if access == "tunnel":
        for prop in ("kubeconfig", "namespace", "cluster_name"):
            if not _is_unknown(news.get(prop)) and not known.get(prop):
                bad(prop, "is required with dashboard_access 'tunnel' (the tunnel finds the cluster's head pod "
                          "through the Kubernetes API)")
    if "wait" in known and known["wait"] not in JOB_WAITS:
        bad("wait", f"{known['wait']!r} is not one of {', '.join(JOB_WAITS)}")
    for prop, low in (("timeout_seconds", 1), ("dashboard_wait_seconds", 0), ("log_tail_lines", 0)):
        value = known.get(prop)
        if prop in known and not (isinstance(value, (int, float)) and value >= low):
            bad(prop, f"{value!r} must be a number >= {low}")
    for prop in ("entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory"):
        value = known.get(prop)
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            bad(prop, f"{value!r} must be a number >= 0")
    for prop in _DICT_FIELDS:
        if known.get(prop) is not None and not isinstance(known[prop], dict):
            bad(prop, "must be a mapping")
    metadata = known.get("metadata")
    if isinstance(metadata, dict) and not all(isinstance(v, str) for v in metadata.values()):
        bad("metadata", "values must be strings (Ray job metadata is str -> str)")
    app_name = known.get("serve_app_name")
    if known.get("kind") == "serve" and app_name is None and not _is_unknown(news.get("serve_app_name")):
        bad("serve_app_name", "is required for kind 'serve' (delete removes the app by name)")
    if app_name is not None and not (isinstance(app_name, str) and NAME_RE.match(app_name)):
        bad("serve_app_name", f"{app_name!r} must be 1-63 letters, digits, '.', '_' or '-'")
    prefix = known.get("serve_route_prefix")
    if prefix is not None and not (isinstance(prefix, str) and prefix.startswith("/")):
        bad("serve_route_prefix", f"{prefix!r} must start with '/'")
    return failures


def _comparable(name: str, value: Any) -> Any:
    value = _plain(value)
    if name == "runtime_env":
        return canonical_runtime_env(value)
    if name in _DICT_FIELDS:
        return canon(value or {})
    return canon(value)


def diff_props(olds: Mapping[str, Any], news: Mapping[str, Any]) -> pulumi.dynamic.DiffResult:
    changed = [name for name in INPUT_FIELDS
               if _is_unknown(news.get(name)) or _comparable(name, olds.get(name)) != _comparable(name, news.get(name))]
    replaces = [name for name in changed if name in IDENTITY_FIELDS]
    # Replacing a Serve job re-deploys the same app name: remove the old app first.
    serve = "serve" in (_plain(olds.get("kind")), _plain(news.get("kind")))
    return pulumi.dynamic.DiffResult(
        changes=bool(changed),
        replaces=replaces,
        delete_before_replace=bool(replaces) and serve,
    )


@contextmanager
def token_safe_errors(token: str | None) -> Iterator[None]:
    """Re-raise failures with the auth token masked.

    Pulumi prints the provider's traceback, chained exceptions included, so an
    exception that could carry the token is replaced without its chain.
    """
    try:
        yield
    except RayJobError as exc:
        if token and token in str(exc):
            raise type(exc)(redact(str(exc), token)) from None
        raise
    except Exception as exc:
        if not token:
            raise
        raise RayJobError(redact(f"{type(exc).__name__}: {exc}", token)) from None


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {name: props[name] for name in INPUT_FIELDS if name in props}


class RayJobProvider(pulumi.dynamic.ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = [pulumi.dynamic.CheckFailure(prop, reason) for prop, reason in check_failures(news)]
        return pulumi.dynamic.CheckResult(news, failures)

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        return diff_props(_olds, _news)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        args = args_from_props(props)
        with token_safe_errors(args.auth_token), reach(args) as url:
            outs = run_job(args, url)
        # Inputs go back into the state too: diff, read and delete only ever see outputs.
        return pulumi.dynamic.CreateResult(outs["submission_id"], {**_inputs(props), **outs})

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        args = args_from_props(_news)
        with token_safe_errors(args.auth_token), reach(args) as url:
            outs = refresh_job(args, url, _id, _olds, apply_wait=True)
        return pulumi.dynamic.UpdateResult({**_inputs(_news), **outs})

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        args = args_from_props(props)
        with token_safe_errors(args.auth_token):
            outs, warning = read_or_keep(args, id_, props)
        if warning:
            pulumi.log.warn(redact(warning, args.auth_token))
        return pulumi.dynamic.ReadResult(id_, {**_inputs(props), **outs})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        args = args_from_props(_props)
        with token_safe_errors(args.auth_token):
            warning = delete_or_forget(args, _id)
        if warning:
            # The provider host has no engine to log to: this goes to its stderr, which the
            # engine shows with the operation's diagnostics.
            pulumi.log.warn(redact(warning, args.auth_token))


class RayJob(pulumi.dynamic.Resource, name="RayJob"):
    """One Ray job run as a post-deploy step; replaced when its code or spec changes."""

    submission_id: pulumi.Output[str]
    status: pulumi.Output[str | None]
    message: pulumi.Output[str | None]
    dashboard_url: pulumi.Output[str]
    job_url: pulumi.Output[str]
    result: pulumi.Output[dict[str, Any]]
    endpoint: pulumi.Output[str | None]
    start_time: pulumi.Output[str | None]
    end_time: pulumi.Output[str | None]

    def __init__(self, name: str, args: RayJobArgs[pulumi.Input[str]],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = props_of(args)
        for secret in SECRET_FIELDS:
            if props[secret] is not None:
                # Kept in the state (delete and refresh must authenticate) but always encrypted there.
                props[secret] = pulumi.Output.secret(props[secret])
        props.update({name_: None for name_ in OUTPUT_FIELDS if name_ not in props})
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_FIELDS)))
        super().__init__(RayJobProvider(), name, props, opts)
