"""One timing method for every backend: warm-up, then interleaved timed runs.

Callables are timed round-robin (A, B, C, B, C, A, ...: the order rotates every round)
so that a noisy machine slows every candidate alike and their ratio stays honest. A
callable may return the device compute time of its run in milliseconds (a TensorRT
runner timing with CUDA events); that is then reported beside the end-to-end time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

TimedFn = Callable[[], "float | None"]


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics of one callable, in milliseconds."""

    runs: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p90_ms: float
    p99_ms: float
    compute_median_ms: float | None = None  # device compute time, where the backend reports it

    @classmethod
    def from_samples(cls, seconds: list[float], compute_ms: list[float] | None = None) -> LatencyStats:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(
            runs=len(ms),
            median_ms=float(np.median(ms)),
            mean_ms=float(np.mean(ms)),
            std_ms=float(np.std(ms)),
            min_ms=float(np.min(ms)),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
            compute_median_ms=float(np.median(compute_ms)) if compute_ms else None,
        )

    def throughput(self, batch: int) -> float:
        """Images per second at the median latency."""
        return batch / (self.median_ms / 1e3) if self.median_ms > 0 else math.inf

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class TimingPlan:
    """How long to warm up and to measure.

    Attributes:
        warmup_iters: warm-up runs per callable (used when ``warmup_s`` is None).
        warmup_s: warm-up time per callable in seconds (overrides ``warmup_iters``).
        iters: timed rounds (each callable once per round), when ``duration_s`` is None.
        duration_s: total measuring time in seconds for all callables together.
        min_iters: fewest rounds, however long they take.
    """

    warmup_iters: int = 10
    warmup_s: float | None = None
    iters: int | None = 50
    duration_s: float | None = None
    min_iters: int = 5

    def __post_init__(self) -> None:
        if self.iters is None and self.duration_s is None:
            raise ValueError("give iters or duration_s")
        if (self.iters is not None and self.iters < 1) or self.min_iters < 1:
            raise ValueError("iters and min_iters must be >= 1")


def measure_interleaved(
    fns: Mapping[str, TimedFn],
    plan: TimingPlan = TimingPlan(),
    *,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, LatencyStats]:
    """Warm up every callable, then time them round-robin; return stats per name.

    Args:
        fns: callables to time, by name; each runs one inference to completion.
        plan: warm-up and measurement lengths.
        on_round: called after each timed round with the number of rounds done (progress).
    """
    names = list(fns)
    for name in names:
        fn = fns[name]
        if plan.warmup_s is not None:
            end = time.perf_counter() + plan.warmup_s
            while time.perf_counter() < end:
                fn()
        else:
            for _ in range(plan.warmup_iters):
                fn()
    samples: dict[str, list[float]] = {n: [] for n in names}
    compute: dict[str, list[float]] = {n: [] for n in names}
    deadline = None if plan.duration_s is None else time.perf_counter() + plan.duration_s
    rounds = 0
    while True:
        done_iters = plan.iters is not None and rounds >= plan.iters
        done_time = deadline is not None and rounds >= plan.min_iters and time.perf_counter() >= deadline
        if done_iters or done_time:
            break
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            device_ms = fns[name]()
            samples[name].append(time.perf_counter() - start)
            if device_ms is not None:
                compute[name].append(float(device_ms))
        rounds += 1
        if on_round is not None:
            on_round(rounds)
    return {n: LatencyStats.from_samples(samples[n], compute[n] or None) for n in names}
