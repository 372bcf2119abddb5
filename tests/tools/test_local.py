"""Local mode: its options and job overrides; the demo-local stack's jobs through the hook on the real Ray head."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import requests

import tools.local
from components.config.model import ConfigError, JobConfig, TeamStackConfig
from components.clients.ray_jobs import ray_job_args
from components.hooks.ray_job import RayJobProvider, props_of
from tools.local import (
    DEFAULT_STATE_DIR,
    MAX_TEMP_DIR_LEN,
    Outcome,
    key_metric,
    load_team_stack,
    make_args,
    parser,
    run_jobs,
    summary_table,
    temp_dir,
    up,
    with_overrides,
)
from tools.local_ray import LocalRay

DEV_STORAGE = "/tmp/ray-platform/demo-local"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("argv", "message"), [
    (["up", "--serve-port", "-1"], "'-1' is not a port"),
    (["up", "--serve-port", "65536"], "'65536' is not a port"),
    (["up", "--serve-port", "http"], "'http' is not a port"),
    (["up", "--serve-port", ""], "'' is not a port"),
    (["run", "core-stats", "--serve-port", "1.5"], "'1.5' is not a port"),
    (["up", "--state-dir", ""], "must not be empty"),
    (["up", "--state-dir", "{file}"], "exists and is not a directory"),
    (["status", "--state-dir", "{file}"], "exists and is not a directory"),
    (["up", "--storage-path", "s3://bucket/models"], "not a URI"),
    (["run", "core-stats", "--storage-path", "{file}"], "exists and is not a directory"),
    (["down", "--storage-path", "/tmp/x"], "unrecognized arguments"),
    (["env", "--serve-port", "0"], "unrecognized arguments"),
    (["run"], "the following arguments are required: job"),
])
def test_bad_options_are_refused_with_a_clear_message(argv: list[str], message: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args([arg.format(file=a_file) for arg in argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["up"], {"state_dir": DEFAULT_STATE_DIR, "storage_path": None, "serve_port": None, "stack": "demo-local"}),
    (["up", "--serve-port", "0"], {"serve_port": 0}),
    (["up", "--serve-port", "18000", "--stack", "other"], {"serve_port": 18000, "stack": "other"}),
    (["run", "core-stats", "--state-dir", "/tmp/x/", "--storage-path", "/tmp/x/storage"],
     {"job": "core-stats", "state_dir": Path("/tmp/x"), "storage_path": "/tmp/x/storage"}),
    (["down", "--state-dir", "/tmp/x"], {"state_dir": Path("/tmp/x")}),
    (["env"], {"state_dir": DEFAULT_STATE_DIR}),
    (["status", "--state-dir", "/tmp/x"], {"state_dir": Path("/tmp/x")}),
])
def test_options_parse(argv: list[str], expected: dict[str, Any]) -> None:
    args = vars(parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Job drivers run in the Ray temp dir: a relative storage path would land there.
    monkeypatch.chdir(tmp_path)
    args = parser().parse_args(["up", "--state-dir", "state", "--storage-path", "~/../store"])
    assert args.state_dir == tmp_path / "state"
    assert Path(args.storage_path).is_absolute() and ".." not in args.storage_path and "~" not in args.storage_path


@pytest.mark.parametrize(("storage", "port", "expected"), [
    (None, None, {}),
    ("/tmp/x/storage", None, {"storage_path": "/tmp/x/storage", "output_path": "/tmp/x/storage/predictions"}),
    (None, 18000, {"http_port": 18000}),
    ("/s", 0, {"storage_path": "/s", "output_path": "/s/predictions", "http_port": 0}),
])
def test_overrides_replace_only_the_settings_a_job_has(storage: str | None, port: int | None,
                                                       expected: dict[str, Any]) -> None:
    cfg = load_team_stack("demo-local")
    moved = with_overrides(cfg, storage, port)
    assert [j.name for j in moved.jobs] == [j.name for j in cfg.jobs]
    for before, after in zip(cfg.jobs, moved.jobs):
        want = {**before.settings, **{k: v for k, v in expected.items() if k in before.settings}}
        assert dict(after.settings) == want, after.name
        assert dataclasses.replace(after, settings=before.settings) == before, "nothing else changes"
    if storage is not None:
        assert not any(DEV_STORAGE in str(v) for j in moved.jobs for v in j.settings.values())


@pytest.mark.parametrize("state_dir", [Path("/tmp/s"), DEFAULT_STATE_DIR, Path("/tmp") / ("deep" * 20)])
def test_ray_temp_dir_fits_unix_sockets_and_is_one_per_state_dir(state_dir: Path) -> None:
    chosen = temp_dir(state_dir)
    assert len(str(chosen)) <= MAX_TEMP_DIR_LEN
    assert chosen == temp_dir(state_dir), "stable across runs: `down` and a re-run find the same one"
    assert chosen != temp_dir(state_dir / "other")
    if len(str(state_dir / "ray")) <= MAX_TEMP_DIR_LEN:
        assert chosen == state_dir / "ray"


def test_hints_name_the_state_dir_only_when_it_is_not_the_default() -> None:
    assert make_args(DEFAULT_STATE_DIR) == ""
    assert make_args(Path("/tmp/x")) == " ARGS='--state-dir /tmp/x'"


def fake_head(serve_port: int) -> LocalRay:
    return LocalRay(pid=1, gcs_address="127.0.0.1:1", dashboard_url="http://127.0.0.1:2", temp_dir="/tmp/t",
                    num_cpus=2, metrics_port=3, serve_port=serve_port)


@pytest.mark.parametrize(("option", "head_port", "expected"), [(None, 4321, 8000), (9000, 4321, 9000),
                                                               (0, 4321, 4321)])
def test_up_runs_the_jobs_with_the_overrides(option: int | None, head_port: int, expected: int,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[JobConfig] = []

    def run_jobs(_cfg: TeamStackConfig, jobs: list[JobConfig], _head: LocalRay, _log: object) -> list[Outcome]:
        ran.extend(jobs)
        return [Outcome(j.name, j.kind, "SUCCEEDED", 0.0, "", "") for j in jobs]

    monkeypatch.setattr(tools.local, "ensure_head", lambda state_dir, log: fake_head(head_port))
    monkeypatch.setattr(tools.local, "run_jobs", run_jobs)
    lines: list[str] = []
    assert up("demo-local", "serve-digits", lines.append, state_dir=tmp_path, storage_path="/s",
              serve_port=option) == 0
    assert [j.name for j in ran] == ["serve-digits"]
    assert ran[0].settings["http_port"] == expected and ran[0].settings["storage_path"] == "/s"
    assert f"make local-down ARGS='--state-dir {tmp_path}'" in lines[-1]


def test_serve_port_0_needs_a_head_that_recorded_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.local, "ensure_head", lambda state_dir, log: fake_head(0))
    with pytest.raises(ConfigError, match="records no Serve port"):
        up("demo-local", log=lambda _: None, state_dir=tmp_path, serve_port=0)


@pytest.mark.ray
def test_demo_stack_runs_train_infer_serve_and_answers_a_query(ray_head: LocalRay, tmp_path: Path) -> None:
    cfg = load_team_stack("demo-local")
    port = ray_head.serve_port
    jobs = [dataclasses.replace(j, settings={**j.settings, "epochs": 3}) if "epochs" in j.settings else j
            for j in with_overrides(cfg, str(tmp_path), port).jobs if j.kind in ("core", "train", "infer", "serve")]
    lines: list[str] = []
    outcomes = run_jobs(cfg, jobs, ray_head, lines.append)
    try:
        assert [o.status for o in outcomes] == ["SUCCEEDED"] * 4, "\n".join(lines[-40:])
        by_kind = {o.kind: o for o in outcomes}
        assert by_kind["train"].metric.startswith("accuracy=")
        assert by_kind["serve"].endpoint == f"http://127.0.0.1:{port}/digits"
        correct, total = by_kind["serve"].metric.split()[0].split("/")
        assert int(correct) >= int(total) - 1, by_kind["serve"].metric
        assert any("malformed input -> HTTP 422" in line for line in lines)
        assert any(line.startswith("  [train-digits] ") for line in lines), "live progress is shown"
        assert "serve-digits" in summary_table(outcomes)
    finally:
        serve_job = next(j for j in jobs if j.kind == "serve")
        args = ray_job_args(serve_job, dashboard_url=ray_head.dashboard_url, serve_endpoint_base=None,
                            auth_token=None, team=cfg.team.name)
        # Frees the replica's CPU for later tests; removing the app is the hook's delete.
        RayJobProvider().delete("cleanup", props_of(args))


def test_key_metric_prefers_accuracy_then_rows() -> None:
    assert key_metric({"rows": 10, "accuracy": 0.9312}) == "accuracy=0.931"
    assert key_metric({"rows": 1797}) == "rows=1797"
    assert key_metric({}) == ""


TEAM_STACK = ROOT / "stacks" / "Pulumi.search-local.yaml"
TEAM_STORAGE = "/tmp/ray-platform/search-local"


@pytest.mark.ray
def test_a_team_stack_file_runs_its_own_code_end_to_end(ray_head: LocalRay, tmp_path: Path) -> None:
    """The example team (examples/search-embeddings): its training, its batch embeddings and its Serve
    app, from its stack file by path, through the hook on the real Ray head; then real requests."""
    cfg = load_team_stack("ignored", TEAM_STACK)
    storage = str(tmp_path / "storage")

    def retargeted(job: JobConfig) -> JobConfig:
        command = (job.work.entrypoint or "").replace(TEAM_STORAGE, storage).replace("--epochs 5", "--epochs 2")
        return dataclasses.replace(job, work=dataclasses.replace(job.work, entrypoint=command or None))

    jobs = [retargeted(j) for j in with_overrides(cfg, serve_port=ray_head.serve_port).jobs]
    lines: list[str] = []
    outcomes = run_jobs(cfg, jobs, ray_head, lines.append)
    try:
        assert [(o.job, o.status) for o in outcomes] == [
            ("train-topics", "SUCCEEDED"), ("embed-corpus", "SUCCEEDED"), ("embeddings-api", "SUCCEEDED")], \
            "\n".join(lines[-60:])
        train, batch, api = outcomes
        assert float(train.metric.removeprefix("accuracy=")) >= 0.9, train.metric
        assert batch.metric == "rows=120"
        assert list(Path(storage).glob("topics-*/checkpoint_*/head.pt")), "training checkpoints every epoch"
        assert api.endpoint == f"http://127.0.0.1:{ray_head.serve_port}/embeddings"
        embedded = requests.post(f"{api.endpoint}/embed", json={"texts": ["rain all week", "a goal in extra time"]},
                                 timeout=60)
        assert embedded.status_code == 200, embedded.text
        assert embedded.json()["dimensions"] == 384 and len(embedded.json()["embeddings"]) == 2
        found = requests.post(f"{api.endpoint}/search", json={"query": "a storm is coming", "top_k": 3}, timeout=60)
        assert found.status_code == 200 and found.json()["matches"][0]["label"] == "weather", found.text
        assert requests.post(f"{api.endpoint}/embed", json={"texts": []}, timeout=60).status_code == 400
    finally:
        serve_job = next(j for j in jobs if j.kind == "serve")
        args = ray_job_args(serve_job, dashboard_url=ray_head.dashboard_url, serve_endpoint_base=None,
                            auth_token=None, team=cfg.team.name)
        RayJobProvider().delete("cleanup", props_of(args))
    apps = requests.get(f"{ray_head.dashboard_url}/api/serve/applications/", timeout=30).json()
    assert "embeddings-api" not in (apps.get("applications") or {}), "deleting the job removes the app"


def test_a_bad_team_stack_file_submits_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "stacks").mkdir()
    bad = tmp_path / "stacks" / "Pulumi.search-bad.yaml"
    bad.write_text(TEAM_STACK.read_text().replace("path: ../examples/search-embeddings", "path: ../missing"))

    def no_cluster(*_: object) -> LocalRay:
        raise AssertionError("a stack with bad config must not reach a cluster")

    monkeypatch.setattr(tools.local, "ensure_head", no_cluster)
    lines: list[str] = []
    assert tools.local.main(["up", "--config", str(bad)]) == 2
    with pytest.raises(ConfigError, match="no such directory"):
        up("x", log=lines.append, config=bad)
