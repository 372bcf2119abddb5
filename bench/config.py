"""How much each section measures: repeat counts and sizes, for a full run and for `--quick`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

SECTIONS = ("program-eval", "hook", "jobs", "train", "infer", "serve", "local-mode", "deploy", "scale")
# Sized so that the Ray sections take about ten minutes on an idle 2-CPU machine; deploy and
# scale (on the e2e control plane) add about as much again.
FULL_REPEATS = {"program-eval": 3, "hook": 7, "jobs": 2, "train": 2, "infer": 2, "serve": 3, "local-mode": 1,
                "deploy": 2, "scale": 1}


@dataclass(frozen=True)
class BenchConfig:
    repeats: dict[str, int] = field(default_factory=lambda: dict(FULL_REPEATS))
    # hook: the trivial job sleeps this long, so RUNNING is a state the pollers can see.
    hook_job_seconds: float = 1.0
    # train: epochs per run; the steady-state rate needs at least three checkpoints.
    train_epochs: int = 5
    # infer: the 1797 digits repeated this many times (1.8M rows), so that the job's fixed
    # start-up (actor processes importing torch) does not make up the whole figure; a second
    # run on 3x the rows gives the rate beyond that start-up.
    infer_repeat: int = 1000
    # serve: each load run stops at whichever bound comes first.
    serve_concurrency: tuple[int, ...] = (8, 32)
    serve_requests: int = 1500
    serve_max_seconds: float = 5.0
    # program-eval: synthetic organisations of this many teams (and GPU pools).
    eval_sizes: tuple[int, ...] = (1, 10, 50)
    # Whole synthetic orgs are rendered this many times per size (~7 CPU s at 50 teams).
    eval_org_repeats: int = 3
    # None: every stack file in stacks/.
    eval_stacks: tuple[str, ...] | None = None
    # local-mode: None runs every job of the demo-local stack, as `make local` does.
    local_job: str | None = None
    # scale: team stacks deployed one after another; figures for the stacks up to each N.
    scale_sizes: tuple[int, ...] = (1, 10, 50)

    @classmethod
    def quick(cls) -> BenchConfig:
        """One repeat of each and small sizes: checks that everything runs, numbers are rough."""
        return cls(repeats={s: 1 for s in SECTIONS}, train_epochs=3, infer_repeat=20, serve_requests=200, eval_org_repeats=1,
                   serve_max_seconds=3.0, eval_sizes=(1, 5, 10), eval_stacks=("prod",), local_job="core-stats",
                   scale_sizes=(1, 3))

    def with_repeats(self, repeats: int) -> BenchConfig:
        return dataclasses.replace(self, repeats={s: repeats for s in SECTIONS}, eval_org_repeats=repeats)
