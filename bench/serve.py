"""Serving: requests/s and p50/p99 latency of the Serve app vs the same model on bare FastAPI + uvicorn.

Ours: the demo stack's `serve` job deployed through the hook, Serve's HTTP proxy on a
free loopback port, in two configurations (see VARIANTS), each removed through the
hook's delete before the next. Baseline: bench.bare_serve, the
same classifier code in one uvicorn process on another free port. Both serve the
model published by the bench. The load is closed-loop: a fixed number of clients
(concurrency), each sending one held-out digit and waiting for the answer, until the
request or time bound of the run; the two servers take turns, the order alternating.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import requests

from bench.cluster import BenchCluster
from bench.config import BenchConfig
from bench.stats import Figure, Target
from jobs.data import load_split
from tools.local_ray import free_port

ROOT = Path(__file__).resolve().parents[1]
# Against a plain single-process baseline the figure says what Ray itself costs at this size:
# information, not a target. What the package adds is measured against the same work written
# directly with Ray (bench/by_hand.py, target 1.05).
THROUGHPUT: Target | None = None
LATENCY: Target | None = None
WARMUP_REQUESTS = 50
# (job settings, runtime_env) over the stack's serve job. The stack lets a replica take
# 32 requests at once; at Serve's default of 5, the proxy's router holds the rest and
# retries them with a backoff growing to 0.5 s, and at concurrency 32 that, not the
# model, sets the rate.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "stack settings": ({}, None),
    "Serve's default max_ongoing_requests, 5": ({"max_ongoing_requests": 5}, None),
}
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


async def _load(url: str, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float) -> Load:
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.monotonic() + max_seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal issued, errors
        while issued < max_requests and time.monotonic() < deadline:
            body = bodies[issued % len(bodies)]
            issued += 1
            sent = time.perf_counter()
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                await resp.read()
                ok = resp.status == 200
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if len(latencies) < 2:
        raise RuntimeError(f"{url}: only {len(latencies)} successful requests ({errors} errors)")
    return Load(len(latencies) / elapsed, statistics.median(latencies) * 1000,
                statistics.quantiles(latencies, n=100)[98] * 1000, errors)


def load(url: str, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float) -> Load:
    """Closed-loop load from `concurrency` clients, bounded by `max_requests` and `max_seconds`."""
    return asyncio.run(_load(url, bodies, concurrency, max_requests, max_seconds))


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bare uvicorn server exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"bare uvicorn server at {url} not healthy within {READY_TIMEOUT_S:.0f}s")


def measure(cfg: BenchConfig, servers: dict[str, str], bodies: list[bytes], variant: str,
            shape: str) -> list[Figure]:
    """Load runs against ours and the baseline, taking turns; three figures per concurrency."""
    for url in servers.values():
        load(url, bodies, 4, WARMUP_REQUESTS, 30.0)
    figures = []
    for concurrency in cfg.serve_concurrency:
        runs: dict[str, list[Load]] = {name: [] for name in servers}
        for repeat in range(cfg.repeats["serve"]):
            order = list(servers) if repeat % 2 == 0 else list(reversed(servers))
            for name in order:
                runs[name].append(load(servers[name], bodies, concurrency, cfg.serve_requests, cfg.serve_max_seconds))
        ours, base = runs["serve"], runs["bare"]
        errors = sum(r.errors for r in ours + base)
        figures += [
            Figure("serve", f"req/s at concurrency {concurrency} ({variant})", "req/s",
                   [r.requests_per_s for r in ours], [r.requests_per_s for r in base], THROUGHPUT,
                   "; ".join(filter(None, [shape if concurrency == cfg.serve_concurrency[0] else "",
                                           f"{errors} non-200 answers" if errors else ""]))),
            Figure("serve", f"p50 latency at concurrency {concurrency} ({variant})", "ms",
                   [r.p50_ms for r in ours], [r.p50_ms for r in base], LATENCY),
            Figure("serve", f"p99 latency at concurrency {concurrency} ({variant})", "ms",
                   [r.p99_ms for r in ours], [r.p99_ms for r in base]),
        ]
    return figures


def run(cfg: BenchConfig, cluster: BenchCluster, model_name: str) -> list[Figure]:
    bodies = [json.dumps({"instances": [row.tolist()]}).encode() for row in load_split().x_test]
    bare_url = f"http://127.0.0.1:{free_port()}"
    log = open(cluster.work_dir / "bare_serve.log", "w")  # noqa: SIM115 - handed to the child
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare_serve", "--port", bare_url.rsplit(":", 1)[1],
                             "--storage-path", cluster.storage_path, "--model-name", model_name],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_healthy(bare_url, bare)
        figures = []
        stack = cluster.demo_jobs["serve"].settings
        for variant, (settings, runtime_env) in VARIANTS.items():
            merged = {**stack, **settings}
            shape = (f"{merged.get('num_replicas', 1)} replica(s) x {merged.get('num_cpus')} CPU, "
                     f"max_ongoing_requests {merged.get('max_ongoing_requests', 5)}"
                     f"{', env ' + str(runtime_env['env_vars']) if runtime_env else ''}; baseline: 1 uvicorn process")
            # A fresh Serve instance per variant: the proxy reads its env vars when it starts.
            port = free_port()
            outs = cluster.run(cluster.job_args(
                "serve", {**settings, "storage_path": cluster.storage_path, "model_name": model_name,
                          "http_host": "127.0.0.1", "http_port": port},
                runtime_env, serve_endpoint_base=f"http://127.0.0.1:{port}"))
            try:
                figures += measure(cfg, {"serve": f"{outs['endpoint']}/predict", "bare": f"{bare_url}/predict"},
                                   bodies, variant, shape)
            finally:
                cluster.delete(outs)
        return figures
    finally:
        bare.terminate()
        bare.wait(timeout=10)
        log.close()
