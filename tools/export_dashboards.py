"""Copy the Grafana dashboards Ray generates into components/specs/dashboards/.

Ray writes its dashboards when the head's dashboard starts, to
`<temp_dir>/session_latest/metrics/grafana/dashboards/`. This starts a throwaway local head
(tools/local_ray.py, free ports, stopped by pid), waits for the files and copies the ones the
platform provisions (components/specs/monitoring.py, RAY_DASHBOARDS) as Ray wrote them. Run it
after bumping Ray; tests/specs/test_monitoring_metrics.py fails until the copies match the Ray in use.

    python -m tools.export_dashboards
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from components.specs.monitoring import DASHBOARDS_DIR, RAY_DASHBOARDS, ray_dashboard_file
from tools.local_ray import temporary_head

GENERATED = Path("session_latest") / "metrics" / "grafana" / "dashboards"


def generated_dir(temp_dir: Path) -> Path:
    return temp_dir / GENERATED


def wait_for_dashboards(temp_dir: Path, timeout: float = 60.0) -> Path:
    """The folder of Ray's generated dashboards once every one the platform uses is there."""
    folder = generated_dir(temp_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((folder / ray_dashboard_file(name).name).is_file() for name in RAY_DASHBOARDS):
            return folder
        time.sleep(0.5)
    raise TimeoutError(f"Ray wrote no dashboards to {folder} within {timeout:.0f}s")


def export(target: Path = DASHBOARDS_DIR) -> list[Path]:
    with temporary_head("rp-dash-", num_cpus=1) as head:
        source = wait_for_dashboards(Path(head.temp_dir))
        target.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copyfile(source / ray_dashboard_file(name).name, target / ray_dashboard_file(name).name))
                for name in RAY_DASHBOARDS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.export_dashboards", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR)
    args = parser.parse_args(argv)
    for path in export(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
