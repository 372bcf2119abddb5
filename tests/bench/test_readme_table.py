"""bench/readme_table.py: the README's tables from a results file, on figures the bench itself builds."""
from __future__ import annotations

from bench.readme_table import markdown
from bench.scale import StackSample, bracket_figures, growth_figures
from bench.stats import Figure, Target


def test_the_tables_show_every_target_and_ratio_and_the_scale_figures_by_n() -> None:
    stacks = [StackSample(i, 7.5, 7.4, 0.1, 19, {"engine": 170.0}) for i in range(1, 11)]
    figures = [
        Figure("jobs", "train: submit -> SUCCEEDED", "s", [33.0, 31.0], [20.0, 22.0], Target("<=", 1.05)),
        Figure("program-eval", "stack dev", "s", [1.0]),  # neither baseline nor target: results.json only
        *bracket_figures(stacks, (1, 10)), *growth_figures(stacks, (1, 10)),
    ]
    results = {"machine": {"logical_cores": 2, "load_average": [0.8, 1.0, 1.2]}, "load_average_after": [5.8, 3, 2],
               "seconds": 2428.4, "complete": True, "repeats": {"jobs": 2, "scale": 1},
               "figures": [f.as_json() for f in figures]}
    text = markdown(results)
    assert text.startswith("One run (2 cores, load average 0.8 at the start and 5.8 at the end, 2428 s; "
                           "repeats: jobs 2, scale 1):")
    assert "| jobs: train: submit -> SUCCEEDED | 2 | 32.0 s | 21.0 s | 1.52 | x <= 1.05 | miss |" in text
    assert "stack dev" not in text
    assert "| scale, per team stack | N=1 | N=10 |" in text
    assert "| API objects per team namespace | 19.0 objects | 19.0 objects |" in text
    assert "| scale: a team's deploy at N=10 / at N=1 (line fit) | 1 | 1.00 |  |  | <= 1.25 | pass |" in text
