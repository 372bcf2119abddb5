"""The metric names the dashboards and alert rules (components/specs/monitoring.py) use, checked
against what a real Ray exports, and the committed dashboards against what this Ray generates."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from components.clients.polling import Deadline
from components.clients.ray_dashboard import JobClient, submit
from components.specs.monitoring import RAY_DASHBOARDS, alert_groups, dcgm_dashboard, ray_dashboard_file
from tools.export_dashboards import generated_dir, wait_for_dashboards
from tools.local_ray import LocalRay


# Grafana template variables in range and step positions; label values stay strings and parse.
GRAFANA_DURATION = re.compile(r"\$(__rate_interval|__interval|__range|interval|window)\b|\$\{[^}]+\}")


# Exported by other programs than Ray, so a local Ray cannot show them; where each comes from.
EXTERNAL_METRICS = {
    "kuberay_job_deployment_status": "the KubeRay operator's metrics (/metrics on its `http` port, v1.7)",
    "kube_pod_container_status_restarts_total": "kube-state-metrics, bundled with kube-prometheus-stack",
    "DCGM_FI_DEV_GPU_UTIL": "dcgm-exporter, default counters (etc/default-counters.csv of the exporter)",
    "DCGM_FI_DEV_FB_USED": "dcgm-exporter, default counters",
    "DCGM_FI_DEV_POWER_USAGE": "dcgm-exporter, default counters",
    "DCGM_FI_DEV_GPU_TEMP": "dcgm-exporter, default counters",
}


# Referenced by Ray's own dashboards but not exported by a 2-CPU, GPU-less, single-node Ray
# running the workload below; each is absent for the reason given. Everything else a dashboard
# or an alert rule references must be among the names the real head exported.
NOT_EXPORTED_HERE = {
    **dict.fromkeys(("ray_node_gpus_available", "ray_node_gpus_utilization", "ray_node_gram_available",
                     "ray_node_gram_used", "ray_node_gpu_power_milliwatts", "ray_node_gpu_temperature_celsius",
                     "ray_component_gpu_memory_mb", "ray_component_gpu_percentage"),
                    "GPU telemetry: only exported where the node has NVIDIA GPUs"),
    **dict.fromkeys(("ray_tpu_duty_cycle", "ray_tpu_memory_bandwidth_utilization", "ray_tpu_memory_total",
                     "ray_tpu_memory_used", "ray_tpu_tensorcore_utilization"), "TPU telemetry: TPU nodes only"),
    "autoscaler_recently_failed_nodes": "only after a node launch failed; a local head has no node provider",
    "ray_memory_manager_worker_eviction_total": "only after the memory monitor killed a worker (OOM)",
    "ray_node_manager_unexpected_worker_failure_total": "only after a worker process crashed",
    **dict.fromkeys(("ray_serve_num_ongoing_grpc_requests", "ray_serve_num_grpc_requests_total",
                     "ray_serve_num_grpc_error_requests_total", "ray_serve_grpc_request_latency_ms_bucket"),
                    "needs Serve's gRPC proxy (grpc_options), which the workload does not start"),
    **dict.fromkeys(("ray_serve_multiplexed_models_load_counter_total",
                     "ray_serve_multiplexed_models_unload_counter_total", "ray_serve_num_multiplexed_models",
                     "ray_serve_registered_multiplexed_model_id",
                     "ray_serve_multiplexed_get_model_requests_counter_total",
                     "ray_serve_multiplexed_model_load_latency_ms_bucket",
                     "ray_serve_multiplexed_model_unload_latency_ms_bucket"),
                    "needs a Serve deployment with model multiplexing"),
    # Not a workload gap: Ray 2.60's Data dashboard queries a name Ray does not export (its
    # OpRuntimeMetrics property is average_task_completion_time_excl_backpressure_s), so that
    # panel stays empty until Ray fixes its dashboard.
    "ray_data_task_completion_time_excl_backpressure_s": "not exported by Ray 2.60 at all (a stale dashboard panel)",
}


# Ray Data exports its per-node and cluster-utilisation series only when asked to; the workload
# asks, so the Data dashboard's panels are checked too (docs/observability.md says how jobs opt in).
DATA_METRICS_ENV = {"RAY_DATA_PER_NODE_METRICS": "1", "RAY_DATA_CLUSTER_AUTOSCALER": "V2"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects, by name or by a `__name__` matcher (regexes kept as `~re`)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    regex = matcher.op == promql_parser.MatchOp.Re
                    names.add(f"~{matcher.value}" if regex else matcher.value)

    promql_parser.walk(promql_parser.parse(GRAFANA_DURATION.sub("5m", expr)), visit)
    return names


def dashboard_expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str) and node["expr"].strip():
            yield node["expr"]
        for value in node.values():
            yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from dashboard_expressions(value)


def referenced_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used, over Ray's dashboards, the GPU dashboard and the alert rules."""
    used: dict[str, set[str]] = {}
    sources: dict[str, list[str]] = {
        f"dashboard {name}": list(dashboard_expressions(json.loads(ray_dashboard_file(name).read_text())))
        for name in RAY_DASHBOARDS}
    sources["dashboard gpu"] = list(dashboard_expressions(dcgm_dashboard()))
    sources["alert rules"] = [r["expr"] for g in alert_groups(dcgm_exporter=True) for r in g["rules"]]
    for where, exprs in sources.items():
        for expr in exprs:
            for name in metric_names(expr):
                used.setdefault(name, set()).add(where)
    return used


def test_every_expression_parses_and_names_metrics() -> None:
    used = referenced_metrics()
    assert "ray_node_cpu_utilization" in used and "ray_serve_deployment_replica_healthy" in used
    assert set(EXTERNAL_METRICS) <= set(used), "an external metric nothing uses anymore"
    assert set(NOT_EXPORTED_HERE) <= set(used), "an allow-listed metric nothing uses anymore"


WORKLOAD = '''
import sys, tempfile, time
import ray
from ray import serve

ray.init()

@ray.remote(num_cpus=0.1)
def square(x):
    return x * x

@ray.remote(num_cpus=0.1, max_retries=0)
def fail():
    raise ValueError("expected by the test")

@ray.remote(num_cpus=0.1)
class Counter:
    def __init__(self):
        self.n = 0
    def add(self):
        self.n += 1
        return self.n

assert ray.get([square.remote(i) for i in range(8)])[3] == 9
assert ray.get(Counter.remote().add.remote()) == 1
try:
    ray.get(fail.remote())
except ray.exceptions.RayTaskError:
    pass

def slow(batch):
    time.sleep(0.5)
    return {"id": batch["id"] * 2}

dataset = ray.data.range(2000, override_num_blocks=8).map_batches(slow, num_cpus=0.1)
assert sum(len(b["id"]) for b in dataset.iter_batches(batch_size=100)) == 2000

import ray.train
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

def train_func(config):
    for step in range(3):
        directory = tempfile.mkdtemp()
        open(f"{directory}/step", "w").write(str(step))
        ray.train.report({"loss": 1.0 / (step + 1)}, checkpoint=Checkpoint.from_directory(directory))
        time.sleep(1)

TorchTrainer(train_func, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.1}),
             run_config=RunConfig(name="obs-probe", storage_path=tempfile.mkdtemp())).fit()

@serve.deployment(ray_actor_options={"num_cpus": 0})
class Echo:
    def __call__(self, request):
        if request.query_params.get("fail"):
            raise RuntimeError("expected by the test")
        return "ok"

serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
serve.run(Echo.bind(), name="obs-probe", route_prefix="/obs-probe")
'''


def scrape(temp_dir: Path) -> set[str]:
    """Metric names served by every endpoint in Ray's Prometheus service discovery file, which
    Ray rewrites as its processes come up (the node's metrics agent is listed seconds after start)."""
    discovery = json.loads((temp_dir / "prom_metrics_service_discovery.json").read_text())
    names: set[str] = set()
    for target in (t for group in discovery for t in group["targets"]):
        port = target.rsplit(":", 1)[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue  # an endpoint that is not up yet; the next poll tries again
        names |= {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines()
                  if line and not line.startswith("#")}
    return names


def missing_metrics(exported: set[str]) -> dict[str, list[str]]:
    """Referenced metric -> where, for each neither exported nor explained (allow-list, external)."""
    missing: dict[str, list[str]] = {}
    for name, where in sorted(referenced_metrics().items()):
        if name in EXTERNAL_METRICS or name in NOT_EXPORTED_HERE:
            continue
        found = any(re.fullmatch(name[1:], e) for e in exported) if name.startswith("~") else name in exported
        if not found:
            missing[name] = sorted(where)
    return missing


def submit_job(client: JobSubmissionClient, **job: Any) -> str:
    """Submit as the hook does: retried while a fresh head's job agent registers ("No available agent")."""
    submission_id = f"obs-{uuid.uuid4().hex[:12]}"
    submit(JobClient(client.get_address()), Deadline(120), submission_id=submission_id, **job)
    return submission_id


def run_job(client: JobSubmissionClient, entrypoint: str, working_dir: Path, timeout: float) -> str:
    job = submit_job(client, entrypoint=entrypoint, runtime_env={"working_dir": str(working_dir)})
    deadline = time.monotonic() + timeout
    while not client.get_job_status(job).is_terminal():
        assert time.monotonic() < deadline, f"job {job} still running after {timeout:.0f}s"
        time.sleep(1)
    return job


@pytest.mark.ray
def test_the_committed_dashboards_are_what_this_ray_generates(ray_head: LocalRay) -> None:
    generated = wait_for_dashboards(Path(ray_head.temp_dir))
    assert generated == generated_dir(Path(ray_head.temp_dir))
    for name in RAY_DASHBOARDS:
        committed = json.loads(ray_dashboard_file(name).read_text())
        assert json.loads((generated / ray_dashboard_file(name).name).read_text()) == committed, (
            f"{name}: Ray now generates a different dashboard; run `python -m tools.export_dashboards`")


@pytest.mark.ray
def test_every_ray_metric_the_dashboards_and_alerts_use_is_exported_by_a_real_head(
        ray_head: LocalRay, tmp_path: Path) -> None:
    """Run tasks, an actor, a failing task, Ray Data, Ray Train and a Serve app on the real head,
    scraping every metrics endpoint Ray lists (node, autoscaler, dashboard) while they run:
    some gauges (Ray Data's operator state) exist only while a dataset executes."""
    (tmp_path / "workload.py").write_text(WORKLOAD)
    (tmp_path / "cleanup.py").write_text("from ray import serve\nserve.delete('obs-probe')\n")
    temp_dir = Path(ray_head.temp_dir)
    client = JobSubmissionClient(ray_head.dashboard_url)
    exported: set[str] = set()
    job = submit_job(client, entrypoint=f"python workload.py {ray_head.serve_port}",
                     runtime_env={"working_dir": str(tmp_path), "env_vars": DATA_METRICS_ENV})
    try:
        deadline = time.monotonic() + 600
        while not client.get_job_status(job).is_terminal():
            assert time.monotonic() < deadline, "workload still running after 600s"
            exported |= scrape(temp_dir)
            time.sleep(2)
        assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]
        # Requests through Serve's proxy (which may predate this test, on its own port).
        with urllib.request.urlopen(f"{ray_head.dashboard_url}/api/serve/applications/", timeout=10) as resp:
            port = json.load(resp)["http_options"]["port"]
        for _ in range(5):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/obs-probe", timeout=10) as resp:
                assert resp.read() == b"ok"
        for path, code in (("/obs-probe-missing", 404), ("/obs-probe?fail=1", 500)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert err.value.code == code
        # Replicas and proxies push their metrics every few seconds: poll, bounded.
        settle = time.monotonic() + 60
        while missing_metrics(exported) and time.monotonic() < settle:
            time.sleep(2)
            exported |= scrape(temp_dir)
    finally:
        run_job(client, "python cleanup.py", tmp_path, timeout=120)
    missing = missing_metrics(exported)
    assert missing == {}, f"referenced but not exported by Ray ({len(exported)} names seen): {missing}"
