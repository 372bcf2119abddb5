"""The one wait loop (components/clients/polling.py): its schedules, its deadline, on a fake clock."""
from __future__ import annotations

import math
from itertools import islice

from components.clients.k8s_tunnel import HEAD_POD_POLL
from components.clients.polling import Backoff, Deadline, attempts
from components.clients.ray_dashboard import DASHBOARD_BACKOFF, JOB_POLL
from tests.clock import FakeClock


def test_polls_steadily_at_first_then_backs_off_to_the_cap() -> None:
    delays = list(islice(JOB_POLL.delays(), 200))
    steady = int(JOB_POLL.steady_s / JOB_POLL.first_s)
    assert delays[:steady] == [JOB_POLL.first_s] * steady
    assert delays[steady] > JOB_POLL.first_s and max(delays) == JOB_POLL.max_s == delays[-1]
    assert delays == sorted(delays)


def test_each_wait_keeps_its_schedule() -> None:
    def first(backoff: Backoff, n: int) -> list[float]:
        return list(islice(backoff.delays(), n))

    assert first(DASHBOARD_BACKOFF, 7) == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert first(HEAD_POD_POLL, 6) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert first(JOB_POLL, 62)[59:] == [0.5, 0.75, 1.125]


def test_sleeps_never_overshoot_and_the_last_attempt_ends_at_the_deadline() -> None:
    clock = FakeClock()
    seen = [(n, clock.now()) for n in attempts(Backoff(first_s=1.0, max_s=4.0), Deadline(10, clock))]
    assert seen == [(1, 0.0), (2, 1.0), (3, 3.0), (4, 7.0), (5, 10.0)]
    assert clock.sleeps == [1.0, 2.0, 4.0, 3.0]


def test_an_attempt_always_runs_and_a_deadline_may_be_infinite() -> None:
    clock = FakeClock()
    assert list(attempts(JOB_POLL, Deadline(0, clock))) == [1] and clock.sleeps == []
    endless = Deadline(math.inf, clock)
    assert list(islice(attempts(Backoff(first_s=1.0, max_s=1.0), endless), 100))[-1] == 100
    assert endless.elapsed() == 99 and endless.remaining() == math.inf
