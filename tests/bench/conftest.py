"""The bench tests' fake clock: the real timing loop and statistics on time that moves only when told."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from sbdeploy.bench import timing


class FakeClock:
    """``time`` for the timing module: perf_counter moves only when a fake inference runs (or, with ``tick_ms``,
    by a seeded draw of that many milliseconds at each reading: the time of any callable, real inferences too)."""

    def __init__(self, tick_ms: float = 0.0, noise: float = 0.0, seed: int = 0) -> None:
        self.now = 0.0
        self.tick_ms, self.noise = tick_ms, noise
        self.rng = np.random.default_rng(seed)

    def perf_counter(self) -> float:
        now = self.now
        if self.tick_ms:
            self.now += self.tick_ms * self.rng.lognormal(0, self.noise) / 1e3
        return now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def fake_inference(
    clock: FakeClock,
    ms: float,
    noise: float,
    seed: int,
    tail: float = 0.0,
    slower: Callable[[int], float] | None = None,
) -> Callable[[], None]:
    """A callable that takes ``ms`` x lognormal(0, ``noise``) milliseconds of fake time; a share ``tail`` of its runs
    take 4.5 times as long (a heavy tail), and ``slower(n)`` multiplies the time of its ``n``-th call."""
    rng = np.random.default_rng(seed)
    calls = 0

    def run() -> None:
        nonlocal calls
        calls += 1
        took = ms * rng.lognormal(0, noise)
        if tail and rng.random() < tail:
            took *= 4.5
        clock.now += took * (slower(calls) if slower else 1.0) / 1e3

    return run
