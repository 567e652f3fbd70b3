"""When a figure is flagged unstable, and why (each rule on constructed figures, each can fail alone)."""

from __future__ import annotations

import dataclasses
import re

from sbdeploy.bench.machine import MachineLoad, MachineUsage
from sbdeploy.bench.stability import ADVICE, Limits, latency_flags, machine_flags, speedup_flags
from sbdeploy.bench.stats import Interval
from sbdeploy.bench.timing import LatencyStats, TimingPlan


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
    assert "3.4 above the 2 CPUs" in flags[0].reason and "1.90 of the 2 CPUs" in flags[1].reason
    assert kinds(machine_flags(usage(1.9, 0.1))) == []  # below both limits
    assert kinds(machine_flags(usage(1.0, None))) == []  # others' CPU not measurable: only the load average counts


def test_spread_interval_and_few_turns() -> None:
    assert kinds(latency_flags(stats(0.3))) == ["spread"]
    assert "CV 30" in latency_flags(stats(0.3))[0].reason
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


def test_every_flag_the_rules_raise_has_advice_naming_real_bench_options() -> None:
    import typer.main

    from sbdeploy.cli.main import app

    flags = [
        *machine_flags(usage(3.4, 1.9)),
        *latency_flags(stats(0.3)),
        *latency_flags(stats(0.0, 0.08)),
        *speedup_flags(4.68, None, 0.509),
    ]
    assert {f.kind for f in flags} == set(ADVICE)  # every kind is raised by a rule, and every raised kind is advised
    bench = typer.main.get_command(app).commands["bench"]  # type: ignore[attr-defined]
    options = {o for p in bench.params for o in p.opts}
    for flag in flags:
        advice = flag.to_dict()["advice"]
        named = set(re.findall(r"--[a-z][a-z-]*", advice))
        assert named and named <= options, (flag.kind, named - options)
