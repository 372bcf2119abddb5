"""The bench code runs: its helpers on fixed inputs, plus one tiny real measurement (no Ray).

The benchmarks themselves never run in `make test`: `make bench` runs them.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from bench.__main__ import parse_args
from bench.config import SECTIONS, BenchConfig
from bench.local_mode import make_command, up_command
from bench.program_eval import child_seconds, growth_figures, synthetic_org
from bench.stats import Figure, Target, fit_line, median, table
from bench.train import report_times
from components.config.stack import parse, raw_from_pulumi_config
from components.config.stack_files import read_stack_file
from tools.local import DEFAULT_STATE_DIR, parser


def test_ratio_is_ours_over_baseline_and_the_target_says_which_way_is_better() -> None:
    slower = Figure("hook", "submit", "s", [1.0, 1.2, 9.0], [1.0, 1.0, 1.1], Target("<=", 1.05))
    assert slower.ours_median == 1.2 and slower.baseline_median == 1.0
    assert slower.ratio == pytest.approx(1.2) and slower.status == "miss"
    faster = Figure("train", "rate", "samples/s", [90.0], [100.0], Target(">=", 0.8))
    assert faster.status == "pass"
    absolute = Figure("program-eval", "prod", "s", [2.5], target=Target("<", 3.0, on_ratio=False))
    assert absolute.ratio is None and absolute.status == "pass"
    assert Figure("serve", "p99", "ms", [5.0], [4.0]).status == "info"
    assert median([]) is None


def test_table_has_one_row_per_figure_with_target_and_result() -> None:
    rows = table([Figure("hook", "submit->RUNNING", "s", [1.3], [1.0], Target("<=", 1.05))]).splitlines()
    assert rows[0].split() == ["figure", "n", "ours", "baseline", "ours/base", "target", "result"]
    assert "1.30 s" in rows[2] and "x <= 1.05" in rows[2] and rows[2].rstrip().endswith("miss")


def test_line_fit() -> None:
    fit = fit_line([1.0, 10.0, 50.0], [1.5, 6.0, 26.0])
    assert fit.slope == pytest.approx(0.5) and fit.intercept == pytest.approx(1.0) and fit.r2 == pytest.approx(1.0)


def test_growth_is_linear_when_the_cost_per_team_does_not_rise() -> None:
    _, linear = growth_figures("team", [1, 10, 50], [1.5, 6.0, 26.0])
    _, quadratic = growth_figures("team", [1, 10, 50], [1.0, 100.0, 2500.0])
    assert linear.status == "pass" and quadratic.status == "miss"


def test_cli_defaults_and_quick() -> None:
    args = parse_args(["--quick", "--only", "program-eval", "serve"])
    assert args.quick and args.only == ["program-eval", "serve"]
    assert set(BenchConfig().repeats) == set(SECTIONS) == set(BenchConfig.quick().repeats)
    assert BenchConfig().with_repeats(2).repeats == {s: 2 for s in SECTIONS}


def test_train_reads_report_times_from_checkpoint_names(tmp_path: Path) -> None:
    for name in ("checkpoint_2026-01-01_00-00-01.500000", "checkpoint_2026-01-01_00-00-00.000000",
                 "checkpoint_manager_snapshot.json"):
        (tmp_path / name).mkdir()
    times = report_times(str(tmp_path / "checkpoint_2026-01-01_00-00-00.000000"))
    assert len(times) == 2 and times[1] - times[0] == pytest.approx(1.5)


@pytest.mark.parametrize(("job", "target"), [(None, ["make", "local"]),
                                             ("core-stats", ["make", "run", "JOB=core-stats"])])
def test_local_mode_runs_the_literal_make_command_away_from_the_developers_cluster(job: str | None,
                                                                                    target: list[str]) -> None:
    command = up_command(job, Path("/tmp/rpb-x"), 18000)
    assert command[:-1] == target and command[-1].startswith("ARGS=")
    args = parser().parse_args(["up", *shlex.split(command[-1].removeprefix("ARGS="))])
    assert (args.state_dir, args.storage_path, args.serve_port) == (Path("/tmp/rpb-x"), "/tmp/rpb-x/storage", 18000)
    assert args.state_dir != DEFAULT_STATE_DIR
    down = make_command("local-down", state_dir=Path("/tmp/a b"))
    assert down == ["make", "local-down", "ARGS=--state-dir '/tmp/a b'"]


def test_synthetic_org_is_valid_config(tmp_path: Path) -> None:
    platform, teams = synthetic_org(tmp_path, 3)
    for path in (platform, *teams):
        raw, region = raw_from_pulumi_config(read_stack_file(path)[0])
        parse(raw, path.stem, region)
    assert len(teams) == 3


def test_one_real_program_evaluation(tmp_path: Path) -> None:
    """A fresh interpreter renders a one-team synthetic org through tools.render with its stacks dir."""
    platform, teams = synthetic_org(tmp_path, 1)
    assert child_seconds([platform, *teams], tmp_path, "cpu") > 0
