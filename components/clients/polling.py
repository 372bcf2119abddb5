"""Waiting for something outside the program: one backoff schedule, one deadline, one loop.

Every wait in components/ (the dashboard, its job agent, a job, a Serve application, a head pod, a
KubeRay custom resource) is `for _ in attempts(backoff, deadline): ...`, so they all stop the same
way: an attempt always runs, sleeps never overshoot the deadline, and the loop ends after the first
attempt that finishes at or past it. Time comes from a `Clock`, so tests drive a wait without
sleeping.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Monotonic seconds, real sleeps."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True)
class Backoff:
    """Sleeps between attempts: `first_s` for `steady_s` seconds, then times `factor` per attempt up to `max_s`."""

    first_s: float
    max_s: float
    factor: float = 2.0
    steady_s: float = 0.0

    def delays(self) -> Iterator[float]:
        waited, delay = 0.0, self.first_s
        while True:
            yield delay
            waited += delay
            if waited >= self.steady_s:
                delay = min(delay * self.factor, self.max_s)


class Deadline:
    """`seconds` from now on `clock`; math.inf never passes."""

    def __init__(self, seconds: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.seconds = seconds
        self.started = clock.now()

    def remaining(self) -> float:
        return self.started + self.seconds - self.clock.now()

    def elapsed(self) -> float:
        return self.clock.now() - self.started


def attempts(backoff: Backoff, deadline: Deadline) -> Iterator[int]:
    """Yield the attempt number (1, 2, ...) before each attempt; between attempts sleep the next
    delay of `backoff`, cut to what is left of `deadline`; end once an attempt finishes past it."""
    delays = backoff.delays()
    attempt = 0
    while True:
        attempt += 1
        yield attempt
        remaining = deadline.remaining()
        if remaining <= 0:
            return
        deadline.clock.sleep(min(next(delays), remaining))
