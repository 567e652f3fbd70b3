"""The interleaved timing loop (correctness of counting and ordering, not speed)."""

from __future__ import annotations

import time

import pytest

from sbdeploy.bench.timing import LatencyStats, TimingPlan, measure_interleaved


def test_rounds_warmup_and_order() -> None:
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    stats = measure_interleaved(fns, TimingPlan(warmup_iters=2, iters=4, turn=1, settle=0))
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up
    timed = calls[6:]
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]  # rotated rounds
    assert all(s.runs == 4 for s in stats.values())


def test_turns_settle_untimed_and_the_last_turn_is_cut_to_iters() -> None:
    calls: list[str] = []

    def fn(name: str) -> float:
        calls.append(name)
        return float(len(calls))  # "device time": the call's position, to see which calls were timed

    progress: list[int] = []
    stats = measure_interleaved({n: (lambda n=n: fn(n)) for n in "ab"}, TimingPlan(warmup_iters=0, iters=5, turn=3, settle=1),
                                on_round=progress.append)  # fmt: skip
    assert calls == list("aaaabbbb" + "bbbaaa")  # round 2 rotated and cut to the 2 runs left
    assert progress == [3, 5]
    assert all(s.runs == 5 for s in stats.values())
    # The settle run opening each turn is not timed: a's timed calls are 2, 3, 4, 13, 14 and b's 6, 7, 8, 10, 11.
    assert stats["a"].compute_median_ms == 4.0 and stats["b"].compute_median_ms == 8.0


def test_duration_plan_and_device_time() -> None:
    stats = measure_interleaved({"sleep": lambda: time.sleep(0.002) or 1.5}, TimingPlan(warmup_iters=0, iters=None, duration_s=0.05, min_iters=3))
    s = stats["sleep"]
    assert s.runs >= 3 and s.min_ms >= 2.0 and s.compute_median_ms == 1.5
    assert s.throughput(8) == pytest.approx(8 / (s.median_ms / 1e3))


def test_stats_from_samples() -> None:
    s = LatencyStats.from_samples([0.001, 0.002, 0.003, 0.004])
    assert (s.median_ms, s.min_ms, s.mean_ms) == pytest.approx((2.5, 1.0, 2.5))


def test_plan_needs_a_length() -> None:
    with pytest.raises(ValueError):
        TimingPlan(iters=None, duration_s=None)


def test_timed_runs_can_be_kept_for_intervals() -> None:
    calls = {"a": 0}

    def a() -> None:
        calls["a"] += 1

    samples: dict[str, list[float]] = {}
    stats = measure_interleaved({"a": a}, TimingPlan(warmup_iters=3, iters=7, turn=3, settle=1), samples_out=samples)
    assert len(samples["a"]) == stats["a"].runs == 7 and all(t >= 0 for t in samples["a"])
    assert calls["a"] == 3 + 7 + 3  # warm-up, timed runs, one settle run per turn: only the timed ones are kept
