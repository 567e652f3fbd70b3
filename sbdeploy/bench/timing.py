"""One timing method for every backend: warm-up, then interleaved timed runs.

Callables take turns round-robin (A, B, C, then B, C, A, ...: the order rotates every
round) so that a noisy machine slows every candidate alike and their ratio stays
honest. A turn is ``settle`` untimed runs, then ``turn`` timed runs of one callable:
switching on every call let the previous ONNX Runtime session's spinning pool threads
compete with the next run, which penalised graphs with many small nodes (2 cores,
ORT CPU 2 threads, cifar_resnet56 vs its SB twin at batch 1: 0.65x switching on every
call, 0.96x in turns of 25 with the first 3 runs of each dropped). A callable may
return the device compute time of its run in milliseconds; that is then reported beside
the end-to-end time. The bench gets its callables from
:meth:`sbdeploy.backends.base.Runner.timed_call`: CUDA events for ``torch-cuda`` and
``trt``, a device-bound IOBinding run for ``ort-cuda``/``ort-trt``, None on the CPU.
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
        iters: timed runs per callable, when ``duration_s`` is None.
        duration_s: total measuring time in seconds for all callables together.
        min_iters: fewest timed runs per callable, however long they take.
        turn: timed runs of one callable in a row before the next one's turn.
        settle: untimed runs at the start of each turn (after switching callables).
    """

    warmup_iters: int = 10
    warmup_s: float | None = None
    iters: int | None = 50
    duration_s: float | None = None
    min_iters: int = 5
    turn: int = 10
    settle: int = 2

    def __post_init__(self) -> None:
        if self.iters is None and self.duration_s is None:
            raise ValueError("give iters or duration_s")
        if (self.iters is not None and self.iters < 1) or self.min_iters < 1 or self.turn < 1 or self.settle < 0:
            raise ValueError("iters, min_iters and turn must be >= 1, settle >= 0")


def measure_interleaved(
    fns: Mapping[str, TimedFn],
    plan: TimingPlan = TimingPlan(),
    *,
    on_round: Callable[[int], None] | None = None,
    samples_out: dict[str, list[float]] | None = None,
) -> dict[str, LatencyStats]:
    """Warm up every callable, then time them in rotating turns; return stats per name.

    Args:
        fns: callables to time, by name; each runs one inference to completion.
        plan: warm-up and measurement lengths, turn length.
        on_round: called after each round with the timed runs per callable so far (progress).
        samples_out: if given, filled with each callable's timed runs in milliseconds (for intervals).
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
    rounds = done = 0
    while True:
        done_iters = plan.iters is not None and done >= plan.iters
        done_time = deadline is not None and done >= plan.min_iters and time.perf_counter() >= deadline
        if done_iters or done_time:
            break
        runs = plan.turn if plan.iters is None else min(plan.turn, plan.iters - done)
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            fn = fns[name]
            for _ in range(plan.settle):
                fn()
            for _ in range(runs):
                start = time.perf_counter()
                device_ms = fn()
                samples[name].append(time.perf_counter() - start)
                if device_ms is not None:
                    compute[name].append(float(device_ms))
        rounds, done = rounds + 1, done + runs
        if on_round is not None:
            on_round(done)
    if samples_out is not None:
        samples_out.update({n: [t * 1e3 for t in samples[n]] for n in names})
    return {n: LatencyStats.from_samples(samples[n], compute[n] or None) for n in names}
