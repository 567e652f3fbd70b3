"""When a figure is flagged unstable, and why: each rule on constructed figures (each can fail alone), then each
on series timed by the real loop on the fake clock (tests/bench/conftest.py)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from sbdeploy.bench.machine import MachineLoad, MachineUsage
from sbdeploy.bench.report import BenchRow, group_rows, judged
from sbdeploy.bench.stability import ADVICE, Limits, drift_flags, latency_flags, machine_flags, speedup_flags
from sbdeploy.bench.stats import Halves, Interval
from sbdeploy.bench.timing import LatencyStats, Pair, TimingPlan, measure_group
from tests.bench.conftest import FakeClock, fake_inference


def usage(load: float, others: float | None, cpus: int = 2) -> MachineUsage:
    state = MachineLoad((load, load, load), cpus, cpus)
    return MachineUsage(before=state, after=state, seconds=5.0, own_cpu=1.0, others_cpu=others)


def stats(cv_spread: float = 0.0, interval: float | None = 0.01) -> LatencyStats:
    s = LatencyStats.from_samples([1e-3 * (1 + cv_spread * (-1) ** i) for i in range(40)])
    if interval is None:
        return s
    return dataclasses.replace(
        s, median_low_ms=s.median_ms * (1 - interval), median_high_ms=s.median_ms * (1 + interval)
    )


def kinds(flags: list) -> list[str]:  # noqa: ANN001
    return [f.kind for f in flags]


def test_a_quiet_machine_and_steady_runs_raise_nothing() -> None:
    assert machine_flags(usage(0.3, 0.05)) == []
    assert latency_flags(stats(0.02)) == [] and latency_flags(stats(0.02), paired=True) == []
    assert speedup_flags(1.6, Interval(1.58, 1.62), 0.5) == []


def test_load_above_the_cpus_available_and_other_processes_busy() -> None:
    flags = machine_flags(usage(3.4, 1.9))
    assert kinds(flags) == ["load", "busy"]
    assert "3.4 less this process's 1.0 CPUs above the 2 CPUs" in flags[0].reason
    assert "1.90 of the 2 CPUs" in flags[1].reason
    assert kinds(machine_flags(usage(1.9, 0.1))) == []  # below both limits
    assert kinds(machine_flags(usage(2.9, 0.1))) == []  # the load of the bench's own threads is no competitor
    assert kinds(machine_flags(usage(1.0, None))) == []  # others' CPU not measurable: only the load average counts


def test_interval_and_few_turns_but_not_the_spread_of_single_runs() -> None:
    assert stats(0.3).cv > 0.3 and latency_flags(stats(0.3)) == []  # CV is information: the median is sure
    assert kinds(latency_flags(stats(0.0, 0.08))) == ["interval"]
    assert kinds(latency_flags(stats(0.0, 0.08), paired=True)) == []  # in a pair the speedup is the headline
    assert kinds(latency_flags(stats(0.0, None))) == ["few-turns"]
    assert kinds(latency_flags(stats(0.0, 0.08), Limits.of(TimingPlan(goal=0.1)))) == []  # the plan's goal is the limit


def test_speedup_interval_and_efficiency_above_one() -> None:
    assert kinds(speedup_flags(1.6, Interval(1.4, 1.8), 0.5)) == ["interval"]
    assert kinds(speedup_flags(1.6, None, 0.5)) == ["few-turns"]
    # Efficiency: above 1 only counts when the whole interval is, or when there is no interval.
    assert kinds(speedup_flags(2.2, Interval(2.15, 2.25), 0.5)) == ["efficiency"]
    assert kinds(speedup_flags(4.68, None, 0.509)) == ["few-turns", "efficiency"]  # issue 12's --iters 2 figure
    assert kinds(speedup_flags(1.01, Interval(0.99, 1.03), 1.0)) == []  # an A/A pair: consistent with 1
    flag = speedup_flags(2.2, Interval(2.15, 2.25), 0.5)[0]
    assert "efficiency 1.10 (interval 1.07-1.12) above 1" in flag.reason and "MAC count" in flag.advice
    assert speedup_flags(1.3, Interval(1.28, 1.32), 1.0) == []  # equal MACs (two forms of a network): no ideal


def halves(first: float, second: float, width: float = 0.01) -> Halves:
    return Halves(
        first,
        second,
        Interval(first * (1 - width), first * (1 + width)),
        Interval(second * (1 - width), second * (1 + width)),
    )


def test_drift_needs_the_halves_apart_and_more_than_twice_the_goal() -> None:
    flag = drift_flags("median", halves(1.0, 1.08), ".3f")
    assert kinds(flag) == ["drift"] and "median drifted by +8.0% between the first and second half" in flag[0].reason
    assert "(1.000 then 1.080)" in flag[0].reason and flag[0].value == "+8.0%"
    assert kinds(drift_flags("speedup", halves(1.6, 1.4), ".2f")) == ["drift"]  # either way
    assert drift_flags("median", halves(1.0, 1.05), ".3f") == []  # apart, but within 2 x +-3%
    assert drift_flags("median", halves(1.0, 1.08, width=0.05), ".3f") == []  # far, but the intervals overlap
    assert drift_flags("median", None, ".3f") == []  # too few turns to halve
    assert drift_flags("median", halves(1.0, 1.08), ".3f", Limits.of(TimingPlan(goal=0.05))) == []  # --ci 5: 10%


def test_every_flag_the_rules_raise_has_advice_naming_real_bench_options() -> None:
    import typer.main

    from sbdeploy.cli.main import app

    flags = [
        *machine_flags(usage(3.4, 1.9)),
        *latency_flags(stats(0.0, 0.08)),
        *drift_flags("median", halves(1.0, 1.2), ".3f"),
        *speedup_flags(4.68, None, 0.509),
    ]
    assert {f.kind for f in flags} == set(ADVICE)  # every kind is raised by a rule, and every raised kind is advised
    bench = typer.main.get_command(app).commands["bench"]  # type: ignore[attr-defined]
    options = {o for p in bench.params for o in p.opts}
    for flag in flags:
        advice = flag.to_dict()["advice"]
        named = set(re.findall(r"--[a-z][a-z-]*", advice))
        assert named and named <= options, (flag.kind, named - options)


def timed_rows(fns: dict, plan: TimingPlan, pair: bool = True) -> list[BenchRow]:  # noqa: ANN001
    """The judged rows of ``fns`` (``sb`` against ``base`` at half the MACs when ``pair``) timed on the fake clock,
    without the real machine's flags (those have their own tests above and the CPU-burner test)."""
    models = {"sb": (50, "base" if pair else None), "base": (100, None)}
    models = {name: models[name] for name in fns}
    pairs = [Pair("sb", "base", 0.5)] if pair else []
    result = measure_group(fns, plan, pairs=pairs)
    return judged(group_rows(result, backend="ort-cpu", batch=1, models=models), [], Limits.of(plan))


def test_a_heavy_tailed_but_steady_series_is_not_flagged(clock: FakeClock) -> None:
    """Issue 24's quiet machine: 2% of runs 4.5x slower (CV above 40%, p99 4.5x the median), medians sure to +-1%."""
    fns = {"sb": fake_inference(clock, 1.0, 0.03, 1, tail=0.02), "base": fake_inference(clock, 2.0, 0.03, 2, tail=0.02)}
    rows = timed_rows(fns, TimingPlan(warmup_iters=2))
    assert all(r.stats.cv > 0.4 and r.stats.p99_ms > 3 * r.stats.median_ms for r in rows)
    assert [r.flags for r in rows] == [(), ()] and rows[0].speedup == pytest.approx(2.0, rel=0.02)
    alone = timed_rows({"base": fake_inference(clock, 2.0, 0.03, 3, tail=0.02)}, TimingPlan(warmup_iters=2), pair=False)
    assert alone[0].stats.cv > 0.4 and alone[0].flags == ()  # the median is this row's headline: as sure


def test_a_series_whose_interval_stays_wide_is_flagged(clock: FakeClock) -> None:
    fns = {"sb": fake_inference(clock, 1.0, 0.8, 4), "base": fake_inference(clock, 2.0, 0.8, 5)}
    sb, base = timed_rows(fns, TimingPlan(warmup_iters=2, budget_s=3.0))
    assert kinds(sb.flags) == ["interval"] and sb.flags[0].reason.startswith("speedup interval +-")
    assert base.flags == ()  # in a pair, the speedup is the headline


def test_a_drifting_series_is_flagged(clock: FakeClock) -> None:
    """40 turns of 10 (and 2 settle runs); from its 21st turn on, sb takes 15% longer (a machine that changed)."""
    plan = TimingPlan(warmup_iters=2, iters=400, turn=10)
    drifts = lambda n: 1.15 if n > 2 + 20 * 12 else 1.0  # noqa: E731
    fns = {"sb": fake_inference(clock, 1.0, 0.03, 6, slower=drifts), "base": fake_inference(clock, 2.0, 0.03, 7)}
    sb, _ = timed_rows(fns, plan)
    assert "drift" in kinds(sb.flags) and sb.speedup_halves is not None
    assert sb.speedup_halves.first == pytest.approx(2.0, rel=0.02) and sb.speedup_halves.second == pytest.approx(
        2 / 1.15, rel=0.02
    )
    (alone,) = timed_rows({"sb": fake_inference(clock, 1.0, 0.03, 8, slower=drifts)}, plan, pair=False)
    assert "drift" in kinds(alone.flags) and alone.stats.halves is not None  # (its interval widens too)
    assert alone.stats.halves.change == pytest.approx(0.15, abs=0.01)
    (steady,) = timed_rows({"sb": fake_inference(clock, 1.0, 0.03, 9)}, plan, pair=False)
    assert steady.flags == () and steady.stats.halves is not None  # halved, and the halves agree


def test_an_impossible_efficiency_is_flagged(clock: FakeClock) -> None:
    fns = {"sb": fake_inference(clock, 1.0, 0.03, 10), "base": fake_inference(clock, 2.6, 0.03, 11)}
    sb, _ = timed_rows(fns, TimingPlan(warmup_iters=2))  # 2.6x at half the MACs: efficiency 1.3, whole interval > 1
    assert kinds(sb.flags) == ["efficiency"] and sb.efficiency_interval is not None and sb.efficiency_interval.low > 1
