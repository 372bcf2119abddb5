"""The Ray jobs in jobs/, end to end on the session's real local Ray head.

Every Ray test submits its job exactly as production does: Job SDK,
runtime_env `{"py_modules": [<jobs dir>]}`, entrypoint `python -m jobs.<name>
--config-json '<json>'`, and reads the `ray-platform-result:` line from the job
logs.

Order matters on 2 CPUs: training first (infer and serve use its model), the Serve
test deletes its app so later jobs get the CPUs back, the fault-tolerance run last.
"""
from __future__ import annotations

import ast
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import torch
from ray.job_submission import JobStatus, JobSubmissionClient
from ray.util.state import list_actors

from jobs.common import (CONFIG_ENV_VAR, JOBS_DIR, ConfigError, config_from_json, emit_result, entrypoint,
                         load_config, parse_progress, parse_result, run_cli, run_id, runtime_env)
from jobs.core import CoreConfig
from jobs.data import load_split
from jobs.infer import InferConfig, input_blocks
from jobs.model import ACCURACY_BAR, DigitsMLP, load_model, read_pointer, save_checkpoint, write_pointer
from jobs.serve import ServeConfig, build_app
from jobs.train import TrainConfig
from jobs.tune import TuneJobConfig
from tools.local_ray import LocalRay

JOB_TIMEOUT_S = 240.0
HELD_OUT_ROWS = 360


# --- pure tests: no Ray ---------------------------------------------------------------

def test_config_from_cli_json_with_defaults() -> None:
    cfg = load_config(TrainConfig, ["--config-json", '{"epochs": 2, "cpus_per_worker": 1, "run_name": "r"}'], "t")
    assert (cfg.epochs, cfg.cpus_per_worker, cfg.run_name) == (2, 1.0, "r")
    assert isinstance(cfg.cpus_per_worker, float)
    assert (cfg.num_workers, cfg.use_gpu, cfg.model_name) == (2, False, "digits")


def test_config_env_var_used_and_cli_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, '{"num_chunks": 3}')
    assert load_config(CoreConfig, [], "c").num_chunks == 3
    assert load_config(CoreConfig, ["--config-json", '{"num_chunks": 5}'], "c").num_chunks == 5
    monkeypatch.setenv(CONFIG_ENV_VAR, "")
    assert load_config(CoreConfig, [], "c") == CoreConfig()


def test_config_rejects_unknown_keys_naming_them() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_json(InferConfig, '{"split": "all", "num_actor": 3}')
    assert "unknown key(s) ['num_actor']" in str(err.value)
    assert "num_actors" in str(err.value)  # the allowed keys are listed


@pytest.mark.parametrize(("cls", "text", "fragment"), [
    (TrainConfig, '{"epochs": "3"}', "expected an integer"),
    (TrainConfig, '{"epochs": true}', "expected an integer"),
    (TrainConfig, '{"use_gpu": 1}', "expected true/false"),
    (TrainConfig, '{"lr": "fast"}', "expected a number"),
    (TrainConfig, '{"epochs": 0}', "epochs must be >= 1"),
    (TrainConfig, "[1, 2]", "must be a JSON object"),
    (TrainConfig, "{epochs: 1}", "not valid JSON"),
    (InferConfig, '{"split": "train"}', "split must be one of"),
    (InferConfig, '{"repeat": 0}', "repeat must be >= 1"),
    (ServeConfig, '{"max_ongoing_requests": 0}', "max_ongoing_requests must be >= 1"),
    (ServeConfig, '{"target_ongoing_requests": 2}', "needs max_replicas"),
    (ServeConfig, '{"max_replicas": 2, "target_ongoing_requests": 8}', "<= max_ongoing_requests"),
    (ServeConfig, '{"num_replicas": 2, "max_replicas": 3}', "not both"),
    (ServeConfig, '{"min_replicas": 1}', "needs max_replicas"),
    (ServeConfig, '{"route_prefix": "digits"}', "must start with '/'"),
    (TuneJobConfig, '{"hidden_sizes": [16, "x"]}', "hidden_sizes[1]: expected an integer"),
    (TuneJobConfig, '{"lr_min": 0.1, "lr_max": 0.01}', "lr_min <= lr_max"),
])
def test_config_rejects_bad_values(cls: type, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_json(cls, text)
    assert fragment in str(err.value)


def test_tune_config_lists_become_tuples() -> None:
    cfg = config_from_json(TuneJobConfig, '{"hidden_sizes": [8, 16]}')
    assert cfg.hidden_sizes == (8, 16)


def test_cli_exits_2_on_bad_config(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["jobs.core", "--config-json", '{"bogus": 1}'])
    with pytest.raises(SystemExit) as exit_info:
        run_cli("jobs.core")
    assert exit_info.value.code == 2
    assert "unknown key(s) ['bogus']" in capsys.readouterr().err


def test_result_line_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    emit_result({"accuracy": 0.5, "rows": 3})
    line = capsys.readouterr().out
    assert line.startswith("ray-platform-result: {") and line.count("\n") == 1
    assert parse_result("noise\n" + line) == {"accuracy": 0.5, "rows": 3}


def test_parse_result_takes_last_well_formed_line() -> None:
    logs = "\n".join([
        'ray-platform-result: {"n": 1}',
        "ray-platform-result: {not json",
        'ray-platform-result: {"n": 2}',
        '(Worker pid=1) ray-platform-result: {"n": 3}',  # only the driver's own lines count
        "ray-platform-result: [1, 2]",
        "done",
    ])
    assert parse_result(logs) == {"n": 2}
    assert parse_result("no result here\n") is None
    assert parse_result("") is None


def test_parse_progress_reads_actor_prefixed_lines() -> None:
    logs = '(TrainController pid=7) ray-platform-progress: {"epoch": 1}\nx\nray-platform-progress: {"epoch": 2}\n'
    assert [p["epoch"] for p in parse_progress(logs)] == [1, 2]


def test_run_id_is_fresh_and_carries_the_submission_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_JOB_SUBMISSION_ID", raising=False)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"metadata": {"job_submission_id": "train/x y"}}))
    first, second = run_id(), run_id()
    assert first.startswith("train-x-y-") and first != second
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    assert run_id().startswith("local-")


def test_infer_input_repeats_rows_with_unique_ids_in_the_requested_blocks() -> None:
    blocks = input_blocks("test", 3, repeat=2)
    assert len(blocks) == 3
    ids = np.concatenate([b["id"].to_numpy() for b in blocks])
    assert sorted(ids) == list(range(2 * HELD_OUT_ROWS))
    pixels = np.concatenate([chunk.to_numpy() for b in blocks for chunk in b["pixels"].chunks])
    assert pixels.shape == (2 * HELD_OUT_ROWS, 64)
    np.testing.assert_array_equal(pixels[:HELD_OUT_ROWS], pixels[HELD_OUT_ROWS:])


def test_serve_app_builder_takes_a_dict() -> None:
    assert type(build_app({"max_replicas": 3, "num_cpus": 0.5})).__name__ == "Application"
    with pytest.raises(ConfigError, match="unknown key"):
        build_app({"replicas": 2})


def test_entrypoint_and_runtime_env_contract() -> None:
    config = {"storage_path": "/tmp/it's here", "epochs": 2}
    command = entrypoint("train", config)
    assert shlex.split(command) == ["python", "-m", "jobs.train", "--config-json", json.dumps(config, sort_keys=True)]
    assert runtime_env() == {"py_modules": [str(JOBS_DIR)]}
    assert Path(runtime_env()["py_modules"][0], "__init__.py").is_file()
    with pytest.raises(ValueError, match="unknown job"):
        entrypoint("nope", {})


def test_jobs_never_import_pulumi_components_or_tools() -> None:
    forbidden = {"pulumi", "components", "tools"}
    for path in JOBS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{path.name} imports {roots & forbidden}"


def test_importing_jobs_does_no_work() -> None:
    # A fresh interpreter: this one may already be connected to Ray by other tests.
    code = ("import ray, jobs.core, jobs.train, jobs.infer, jobs.serve, jobs.tune\n"
            "assert not ray.is_initialized()\n"
            "assert all(callable(m.main) for m in (jobs.core, jobs.train, jobs.infer, jobs.serve, jobs.tune))\n"
            "print(type(jobs.serve.app).__name__)")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", CONFIG_ENV_VAR)}
    done = subprocess.run([sys.executable, "-c", code], cwd=JOBS_DIR.parent, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Application\n"


def test_pointer_and_checkpoint_round_trip(tmp_path: Path) -> None:
    model = DigitsMLP(8)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    save_checkpoint(checkpoint, model, None, {"epoch": 1})
    write_pointer(str(tmp_path / "store"), "m", {"checkpoint": str(checkpoint), "metrics": {}})
    pointer = read_pointer(str(tmp_path / "store"), "m")
    loaded = load_model(pointer["checkpoint"])
    x = load_split().x_test[:5]
    with torch.no_grad():
        assert torch.allclose(loaded(torch.tensor(x)), model.eval()(torch.tensor(x)))
    with pytest.raises(FileNotFoundError, match="run jobs.train first"):
        read_pointer(str(tmp_path / "store"), "missing")


# --- Ray tests: jobs submitted to the session's head ---------------------------------

@dataclass(frozen=True)
class JobRun:
    submission_id: str
    status: JobStatus
    logs: str
    result: dict[str, Any] | None


def submit(client: JobSubmissionClient, job: str, config: dict[str, Any]) -> str:
    """Submit; retry while the head's job agent is still starting ("No available agent")."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint(job, config), runtime_env=runtime_env())
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def wait(client: JobSubmissionClient, submission_id: str, timeout: float = JOB_TIMEOUT_S) -> JobRun:
    deadline = time.monotonic() + timeout
    while not (status := client.get_job_status(submission_id)).is_terminal():
        if time.monotonic() > deadline:
            client.stop_job(submission_id)
            logs = client.get_job_logs(submission_id)[-4000:]
            pytest.fail(f"{submission_id} not done in {timeout:.0f}s; logs:\n{logs}")
        time.sleep(0.5)
    logs = client.get_job_logs(submission_id)
    return JobRun(submission_id, status, logs, parse_result(logs))


def wait_for_checkpoint(client: JobSubmissionClient, sid: str) -> None:
    """Until the training job `sid` has reported a checkpoint. A progress line carrying one is printed
    after Ray registered it: from then on a restarted worker group must resume from it rather than
    from scratch."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not any(p.get("checkpoint") for p in parse_progress(client.get_job_logs(sid))):
        assert not client.get_job_status(sid).is_terminal(), client.get_job_logs(sid)[-4000:]
        assert time.monotonic() < deadline, "no checkpoint reported in time"
        time.sleep(0.5)


def run_job(client: JobSubmissionClient, job: str, config: dict[str, Any]) -> dict[str, Any]:
    run = wait(client, submit(client, job, config))
    assert run.status == JobStatus.SUCCEEDED, f"{job} {run.status}; logs:\n{run.logs[-4000:]}"
    assert run.result is not None, f"{job} printed no result line; logs:\n{run.logs[-4000:]}"
    return run.result


@pytest.fixture(scope="module")
def client(ray_head: LocalRay) -> JobSubmissionClient:
    return JobSubmissionClient(ray_head.dashboard_url)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("jobs-storage"))


@pytest.fixture(scope="module")
def trained(client: JobSubmissionClient, storage: str) -> dict[str, Any]:
    return run_job(client, "train", {"storage_path": storage, "epochs": 3})


@pytest.mark.ray
def test_train_reaches_accuracy_bar_and_publishes_pointer(trained: dict[str, Any], storage: str) -> None:
    assert trained["accuracy"] >= ACCURACY_BAR == trained["accuracy_bar"]
    assert (trained["rows_train"], trained["rows_test"], trained["num_workers"]) == (1437, HELD_OUT_ROWS, 2)
    assert (trained["restarts"], trained["resumed_from_epoch"]) == (0, 0)
    assert trained["run_name"].startswith("digits-raysubmit_")  # fresh run named after the submission
    pointer = read_pointer(storage, "digits")
    assert pointer["checkpoint"] == trained["checkpoint"]
    assert pointer["metrics"]["accuracy"] == trained["accuracy"]
    assert trained["pointer"] == str(Path(storage, "digits", "latest.json"))
    assert {"model.pt", "optimizer.pt", "meta.json"} <= {p.name for p in Path(trained["checkpoint"]).iterdir()}


@pytest.mark.ray
def test_infer_writes_parquet_predictions(client: JobSubmissionClient, storage: str, trained: dict[str, Any],
                                          tmp_path: Path) -> None:
    output = tmp_path / "predictions"
    output.mkdir()
    pd.DataFrame({"id": [-1]}).to_parquet(output / "stale-from-an-earlier-run.parquet")
    result = run_job(client, "infer", {"storage_path": storage, "output_path": str(output), "num_actors": 2})
    assert result["rows"] == HELD_OUT_ROWS
    assert result["checkpoint"] == trained["checkpoint"]
    frame = pd.read_parquet(output)
    assert len(frame) == HELD_OUT_ROWS
    assert sorted(frame["id"]) == list(range(HELD_OUT_ROWS))
    assert {"label", "prediction", "confidence", "correct"} <= set(frame.columns)
    assert result["accuracy"] == pytest.approx((frame["label"] == frame["prediction"]).mean())
    assert result["accuracy"] >= ACCURACY_BAR


@pytest.fixture
def serve_app(client: JobSubmissionClient, storage: str, trained: dict[str, Any],
              ray_head: LocalRay) -> Iterator[dict[str, Any]]:
    """A deployed Serve app (via the serve job), deleted afterwards so its CPUs free up."""
    name = "digits-test"
    config = {"storage_path": storage, "app_name": name, "route_prefix": "/digits-test",
              "http_host": "127.0.0.1", "http_port": ray_head.serve_port, "num_cpus": 0.25, "max_rows": 50}
    try:
        yield run_job(client, "serve", config)
    finally:
        code = f"from ray import serve; serve.delete({name!r})"
        delete = client.submit_job(entrypoint=f"python -c {shlex.quote(code)}")
        assert wait(client, delete).status == JobStatus.SUCCEEDED


@pytest.mark.ray
def test_serve_answers_and_rejects_bad_input(serve_app: dict[str, Any], trained: dict[str, Any]) -> None:
    assert serve_app["status"] == "RUNNING" and serve_app["replicas"] == 1
    url = serve_app["endpoint"]
    health = requests.get(f"{url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["checkpoint"] == trained["checkpoint"]

    held_out = load_split()
    x, y = held_out.x_test[:40], held_out.y_test[:40]
    response = requests.post(f"{url}/predict", json={"instances": x.tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    with torch.no_grad():
        offline = load_model(trained["checkpoint"])(torch.tensor(x)).argmax(dim=1).numpy()
    assert (predictions == offline).all()  # the endpoint serves exactly the trained model
    assert (predictions == y).mean() >= ACCURACY_BAR

    row = [0.0] * 64
    bad_requests: dict[str, dict[str, Any]] = {
        "invalid JSON": {"data": "{not json", "headers": {"content-type": "application/json"}},
        "short row": {"json": {"instances": [row[:63]]}},
        "flat list": {"json": {"instances": row}},
        "non-numbers": {"json": {"instances": [["a"] * 64]}},
        "booleans": {"json": {"instances": [[True] * 64]}},
        "NaN": {"data": '{"instances": [[NaN' + ", 0" * 63 + "]]}", "headers": {"content-type": "application/json"}},
        "empty list": {"json": {"instances": []}},
        "too many rows": {"json": {"instances": [row] * 51}},
        "missing key": {"json": {"rows": [row]}},
        "not an object": {"json": [row]},
        "no body": {},
    }
    for label, kwargs in bad_requests.items():
        bad = requests.post(f"{url}/predict", timeout=30, **kwargs)
        assert 400 <= bad.status_code < 500, f"{label}: {bad.status_code} {bad.text[:200]}"
        assert "detail" in bad.json(), label


@pytest.mark.ray
def test_tune_finishes_all_trials(client: JobSubmissionClient, storage: str) -> None:
    result = run_job(client, "tune", {"storage_path": storage, "num_samples": 4, "epochs": 3})
    assert (result["trials"], result["completed_trials"], result["errored_trials"]) == (4, 4, 0)
    assert set(result["best_config"]) == {"lr", "hidden_size"}
    assert 0.5 < result["accuracy"] <= 1.0


@pytest.mark.ray
def test_core_tasks_and_actor(client: JobSubmissionClient) -> None:
    result = run_job(client, "core", {"num_chunks": 6})
    assert (result["rows"], result["chunks"], result["tasks"]) == (1797, 6, 6)
    assert sum(result["class_counts"].values()) == 1797 and len(result["class_counts"]) == 10
    assert result["cluster_cpus"] == 2.0
    assert result["constant_pixels"] > 0  # digits have blank border pixels


@pytest.mark.ray
def test_train_resumes_from_checkpoint_after_worker_killed(client: JobSubmissionClient, storage: str,
                                                           ray_head: LocalRay) -> None:
    # Half-CPU workers: the run still fits if a Serve replica from elsewhere holds a CPU share.
    sid = submit(client, "train", {"storage_path": storage, "model_name": "digits-ft", "epochs": 4,
                                   "cpus_per_worker": 0.5, "max_failures": 2})
    wait_for_checkpoint(client, sid)
    workers = [a for a in list_actors(address=ray_head.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000)
               if "RayTrainWorker" in a.class_name]
    assert len(workers) == 2, workers
    os.kill(workers[-1].pid, signal.SIGKILL)

    run = wait(client, sid)
    assert run.status == JobStatus.SUCCEEDED, run.logs[-4000:]
    assert run.result is not None
    assert run.result["restarts"] >= 1 and run.result["resumed_from_epoch"] >= 1, run.result
    assert run.result["accuracy"] >= ACCURACY_BAR
