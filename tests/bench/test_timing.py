"""The interleaved timing loop: counting, ordering, and when an adaptive run stops (not speed).

The stopping tests run the real loop and the real statistics on a fake clock that only
moves when a fake inference "runs" (by a seeded random amount), so when the loop stops is
exact and repeatable, whatever the machine is doing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest

from sbdeploy.bench import timing
from sbdeploy.bench.timing import LatencyStats, Pair, RoundStatus, TimingPlan, measure_group, measure_interleaved
from tests.bench.conftest import FakeClock, fake_inference


def test_rounds_warmup_and_order() -> None:
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    stats = measure_interleaved(fns, TimingPlan(warmup_iters=2, iters=4, turn=1, settle=0))
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up
    timed = calls[6:]
    assert timed[:9] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotated rounds
    assert len(timed) == 12 and sorted(timed[9:]) == ["a", "b", "c"]  # a new rotation, from a shuffled order
    assert all(s.runs == 4 for s in stats.values())


def test_every_callable_follows_every_other_one_and_leads_equally() -> None:
    """The rotation alone puts each callable after the same one in every round; the shuffles between rotations do not."""
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abcd"}
    measure_group(fns, TimingPlan(warmup_iters=0, iters=40, turn=1, settle=0))
    rounds = [calls[i : i + 4] for i in range(0, len(calls), 4)]
    assert all(sorted(r) == list("abcd") for r in rounds) and len(rounds) == 40
    for start in range(0, 40, 4):  # in each full rotation every callable leads once
        assert sorted(r[0] for r in rounds[start : start + 4]) == list("abcd")
    followed = {(r[i], r[i + 1]) for r in rounds for i in range(3)}
    assert followed == {(x, y) for x in "abcd" for y in "abcd" if x != y}
    again: list[str] = []
    measure_group(
        {n: (lambda n=n: again.append(n)) for n in "abcd"}, TimingPlan(warmup_iters=0, iters=40, turn=1, settle=0)
    )
    assert again == calls  # seeded: the same schedule every time


def test_turns_settle_untimed_and_the_last_turn_is_cut_to_iters() -> None:
    calls: list[str] = []

    def fn(name: str) -> float:
        calls.append(name)
        return float(len(calls))  # "device time": the call's position, to see which calls were timed

    statuses: list[RoundStatus] = []
    plan = TimingPlan(warmup_iters=0, iters=5, turn=3, settle=1)
    stats = measure_group({n: (lambda n=n: fn(n)) for n in "ab"}, plan, on_round=statuses.append).stats
    assert calls == list("aaaabbbb" + "bbbaaa")  # round 2 rotated and cut to the 2 runs left
    assert [s.runs for s in statuses] == [3, 5]
    assert all(s.runs == 5 for s in stats.values())
    # The settle run opening each turn is not timed: a's timed calls are 2, 3, 4, 13, 14 and b's 6, 7, 8, 10, 11.
    assert stats["a"].compute_median_ms == 4.0 and stats["b"].compute_median_ms == 8.0


def test_duration_plan_and_device_time() -> None:
    stats = measure_interleaved(
        {"sleep": lambda: time.sleep(0.002) or 1.5},
        TimingPlan(warmup_iters=0, iters=None, duration_s=0.05, min_iters=3),
    )
    s = stats["sleep"]
    assert s.runs >= 3 and s.min_ms >= 2.0 and s.compute_median_ms == 1.5
    assert s.throughput(8) == pytest.approx(8 / (s.median_ms / 1e3))


def test_stats_from_samples() -> None:
    s = LatencyStats.from_samples([0.001, 0.002, 0.003, 0.004])
    assert (s.median_ms, s.min_ms, s.mean_ms) == pytest.approx((2.5, 1.0, 2.5))
    assert s.std_ms == pytest.approx(np.std([1, 2, 3, 4], ddof=1)) and s.cv == pytest.approx(s.std_ms / 2.5)
    assert s.median_low_ms is None and s.median_halfwidth is None  # no interval without rounds


def test_plan_without_a_length_is_adaptive_and_bad_plans_are_refused() -> None:
    assert TimingPlan().adaptive and not TimingPlan(iters=5).adaptive and not TimingPlan(duration_s=1.0).adaptive
    assert "adaptive" in TimingPlan().describe() and "fixed" in TimingPlan(iters=5).describe()
    for bad in ({"iters": 0}, {"budget_s": 0}, {"goal": 0.005}, {"confidence": 1.0}, {"min_turns": 0}):
        with pytest.raises(ValueError):
            TimingPlan(**bad)  # type: ignore[arg-type]


def test_timed_runs_can_be_kept_for_intervals() -> None:
    calls = {"a": 0}

    def a() -> None:
        calls["a"] += 1

    result = measure_group({"a": a}, TimingPlan(warmup_iters=3, iters=7, turn=3, settle=1))
    samples = [t for turn in result.rounds["a"] for t in turn]
    assert len(samples) == result.stats["a"].runs == 7 and all(t >= 0 for t in samples)
    assert calls["a"] == 3 + 7 + 3  # warm-up, timed runs, one settle run per turn: only the timed ones are kept


def test_adaptive_run_stops_once_the_speedup_interval_is_narrow(clock: FakeClock) -> None:
    fns = {"sb": fake_inference(clock, 1.0, 0.02, 1), "base": fake_inference(clock, 2.0, 0.02, 2)}
    statuses: list[RoundStatus] = []
    result = measure_group(
        fns, TimingPlan(warmup_iters=2, min_time_s=0.5), pairs=[Pair("sb", "base", 0.5)], on_round=statuses.append
    )
    record, speedup = result.record, result.speedups["sb"]
    assert record.rounds == 20 and record.stop.startswith(
        "every interval within"
    )  # narrow at the first check, after min_turns (0.72 s)
    assert (
        speedup.interval is not None
        and speedup.interval.contains(2.0)
        and speedup.value == pytest.approx(2.0, rel=0.01)
    )
    assert (
        0.01 - 1e-12 <= speedup.interval.halfwidth(speedup.value) <= 0.03
    )  # never narrower than the noise floor; as narrow as it said
    assert speedup.efficiency == pytest.approx(speedup.value * 0.5)
    assert [s.rounds for s in statuses] == list(range(1, 21)) and 0 < statuses[-1].fraction < 1
    assert result.stats["sb"].median_low_ms is not None  # every callable's median gets its interval too


def test_adaptive_run_lasts_at_least_min_time_even_when_narrow_sooner(clock: FakeClock) -> None:
    fns = {"sb": fake_inference(clock, 1.0, 0.02, 1), "base": fake_inference(clock, 2.0, 0.02, 2)}
    statuses: list[RoundStatus] = []
    result = measure_group(
        fns, TimingPlan(warmup_iters=2, min_time_s=2.0), pairs=[Pair("sb", "base", 0.5)], on_round=statuses.append
    )
    assert result.record.stop.startswith("every interval within") and result.record.rounds > 20
    assert statuses[-1].elapsed_s >= 2.0 > statuses[-2].elapsed_s  # stopped at the first round past 2 s


def test_adaptive_run_stops_at_the_budget_when_noise_keeps_the_interval_wide(clock: FakeClock) -> None:
    fns = {"sb": fake_inference(clock, 1.0, 0.8, 3), "base": fake_inference(clock, 2.0, 0.8, 4)}
    plan = TimingPlan(warmup_iters=2, budget_s=3.0)
    statuses: list[RoundStatus] = []
    result = measure_group(fns, plan, pairs=[Pair("sb", "base", 0.5)], on_round=statuses.append)
    interval = result.speedups["sb"].interval
    assert result.record.stop.startswith("budget of 3 s spent") and result.record.rounds > plan.min_turns
    assert interval is not None and interval.halfwidth(result.speedups["sb"].value) > plan.goal
    assert (
        statuses[-1].widest is not None
        and statuses[-1].widest > plan.goal
        and "widest interval" in statuses[-1].describe()
    )


def test_min_turns_outlast_the_budget_and_slow_runs_get_shorter_turns(clock: FakeClock) -> None:
    fns = {"sb": fake_inference(clock, 50.0, 0.01, 5), "base": fake_inference(clock, 100.0, 0.01, 6)}
    result = measure_group(fns, TimingPlan(warmup_iters=1, budget_s=2.0), pairs=[Pair("sb", "base", 0.5)])
    assert (
        result.record.rounds == 20 and result.record.turn == 1
    )  # 20 turns of 10 would take 30 s, of 1: 9 s (settle runs included)
    assert all(len(turn) == 1 for turn in result.rounds["sb"])


def test_a_fixed_duration_fits_its_turns_to_the_rounds_an_interval_needs(clock: FakeClock) -> None:
    """Slow runs and a short ``duration_s``: turns of 10 would end after 2 rounds, too few for any interval."""
    fns = {"sb": fake_inference(clock, 50.0, 0.01, 11), "base": fake_inference(clock, 100.0, 0.01, 12)}
    plan = TimingPlan(warmup_iters=1, iters=100, duration_s=4.0, turn=10)
    result = measure_group(fns, plan, pairs=[Pair("sb", "base", 0.5)])
    assert result.record.rounds >= timing.MIN_ROUNDS_FOR_INTERVAL and result.record.turn < plan.turn
    assert result.speedups["sb"].interval is not None and result.record.stop == "fixed length: 4 s"
    quick = measure_group(
        {"a": fake_inference(clock, 1.0, 0.01, 13)}, TimingPlan(warmup_iters=1, iters=100, duration_s=4.0, turn=10)
    )
    assert [len(t) for t in quick.rounds["a"]] == [10] * 10  # fast runs keep the plan's turn
    capped = measure_group(
        {"a": fake_inference(clock, 1.0, 0.01, 14)}, TimingPlan(warmup_iters=1, iters=40, duration_s=4.0, turn=10)
    )
    assert [len(t) for t in capped.rounds["a"]] == [5] * 8  # iters=40 ends it first: 8 turns of 5, not 4 of 10


def test_turns_shrink_mid_run_when_the_runs_slow_down_after_warm_up(clock: FakeClock) -> None:
    calls = {"n": 0}

    def slows_down() -> None:  # 1 ms during warm-up and the first round, then 40 ms (a machine that got busy)
        calls["n"] += 1
        clock.now += (1.0 if calls["n"] <= 5 + 12 else 40.0) / 1e3

    result = measure_group({"a": slows_down}, TimingPlan(warmup_iters=5, budget_s=3.0))
    turns = [len(t) for t in result.rounds["a"]]
    # the second round is the first slow one; from the third on the turn fits the budget left (20 turns of 10 at 40 ms: 9.6 s)
    assert turns[:2] == [10, 10] and max(turns[2:]) < 10 and result.record.rounds == 20
    assert result.record.stop.startswith("budget")


def test_a_callable_outside_any_pair_stops_on_its_own_median_interval(clock: FakeClock) -> None:
    steady = measure_group(
        {"a": fake_inference(clock, 1.0, 0.02, 7)}, TimingPlan(warmup_iters=1, budget_s=5.0, min_time_s=0.1)
    )
    noisy = measure_group({"a": fake_inference(clock, 1.0, 1.5, 8)}, TimingPlan(warmup_iters=1, budget_s=5.0))
    assert steady.record.stop.startswith("every interval within") and steady.record.rounds == 20
    assert noisy.record.stop.startswith("budget") and noisy.stats["a"].median_halfwidth is not None


def test_fixed_lengths_say_so_and_record_the_machine(clock: FakeClock) -> None:
    result = measure_group(
        {"a": fake_inference(clock, 1.0, 0.1, 9), "b": fake_inference(clock, 1.0, 0.1, 10)},
        TimingPlan(iters=30, turn=3),
        pairs=[Pair("a", "b", 1.0)],
    )
    assert (
        result.record.stop == "fixed length: 30 timed runs each"
        and result.record.rounds == 10
        and result.record.turn == 3
    )
    assert result.stats["a"].runs == 30 and result.speedups["a"].interval is not None
    machine = result.record.machine
    assert machine.cpus_available >= 1 and machine.before.cpu_count is not None and machine.own_cpu >= 0


def test_pairs_must_name_timed_callables() -> None:
    with pytest.raises(ValueError, match="nothing to time"):
        measure_group({}, TimingPlan(iters=1))
    with pytest.raises(ValueError, match="not timed"):
        measure_group({"a": lambda: None}, TimingPlan(iters=1), pairs=[Pair("a", "b", 0.5)])


def spinning_pair(clock: FakeClock, spin_s: float) -> dict[str, Callable[[], None]]:
    """Two 1 ms callables whose runs take twice as long while the other one's idle worker still spins (for
    ``spin_s`` after its last run), as interleaved ONNX Runtime sessions do on a 2-core machine."""
    last_end = {"a": -math.inf, "b": -math.inf}

    def callable_(name: str) -> Callable[[], None]:
        other = "b" if name == "a" else "a"

        def run() -> None:
            clock.now += (2e-3 if clock.now - last_end[other] < spin_s else 1e-3) * (1 + 0.01 * (clock.now % 1))
            last_end[name] = clock.now

        return run

    return {"a": callable_("a"), "b": callable_("b")}


@pytest.mark.parametrize("settle_s", [0.0, 0.06])
def test_settle_time_keeps_the_last_callables_spin_out_of_the_timed_runs(clock: FakeClock, settle_s: float) -> None:
    plan = TimingPlan(warmup_iters=2, budget_s=4.0, min_time_s=1.0, settle_s=settle_s)
    result = measure_group(spinning_pair(clock, spin_s=0.05), plan, pairs=[Pair("a", "b", 1.0)])
    medians = [result.stats[n].median_ms for n in "ab"]
    # timed after the other's spin: each alone's 1 ms; without the settle time every timed run shares the cores
    assert medians == pytest.approx([1.0, 1.0] if settle_s else [2.0, 2.0], rel=0.02)
    assert result.record.settle_s == settle_s and result.speedups["a"].interval.contains(1.0)
    assert result.record.rounds >= plan.min_turns


def test_settle_time_counts_against_the_budget_when_turns_are_fitted(clock: FakeClock) -> None:
    fns = {"a": fake_inference(clock, 1.0, 0.01, 21), "b": fake_inference(clock, 1.0, 0.01, 22)}
    plan = TimingPlan(warmup_iters=2, budget_s=3.0, min_turns=20, settle_s=0.07, goal=0.01, noise_floor=0.01)
    statuses: list[RoundStatus] = []
    measure_group(fns, plan, on_round=statuses.append)
    # 20 rounds owed, each 2 x 70 ms of settling: 2.8 s of the 3 s (turns of 10 runs would take 3.2 s), so they shrink
    assert statuses[19].elapsed_s <= 3.0 * 1.05
