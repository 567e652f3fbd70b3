"""When a bench figure is not to be trusted, and why: flags with reasons and what to do about them.

A figure is *unstable* when any :class:`Flag` holds, each a threat to the figure itself: its headline interval
(an unpaired median's, or a speedup's) is wider than the goal or missing, the machine was busy around its
group, the first and second half of its turns disagree (drift), or its efficiency exceeds 1 (which a MAC
ratio forbids). How much single runs vary (CV, p90, p99) is information, not a flag: a rare slow run widens
the CV without moving a median.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sbdeploy.bench.defaults import DEFAULT_GOAL
from sbdeploy.bench.stats import MIN_ROUNDS_FOR_INTERVAL, Halves, Interval

if TYPE_CHECKING:
    from sbdeploy.bench.machine import MachineUsage
    from sbdeploy.bench.timing import LatencyStats, TimingPlan

_QUIET = "rerun on a quiet machine (stop other jobs)"
_PIN = "pin threads with --threads N and taskset -c CPUS"
ADVICE = {  # what to do, per flag kind (printed by the CLI beside each warning)
    "drift": f"{_QUIET}, raise --warmup (e.g. 2s) when the first half was the slower one, or {_PIN}",
    "interval": f"raise --budget (or drop --iters/--duration for the adaptive length), {_QUIET}, or {_PIN}",
    "few-turns": f"drop --iters/--duration (the adaptive default), or give at least {MIN_ROUNDS_FOR_INTERVAL} turns (--iters {MIN_ROUNDS_FOR_INTERVAL} x --turn)",
    "load": f"{_QUIET}, or bench on idle CPUs: taskset -c CPUS with --threads N",
    "busy": f"{_QUIET}, or bench on idle CPUs: taskset -c CPUS with --threads N",
    "efficiency": f"{_QUIET} with a higher --budget; if it stays above 1, the MAC count does not match the graph that runs",
}


@dataclass(frozen=True)
class Limits:
    """Thresholds above which a figure is flagged."""

    max_halfwidth: float = DEFAULT_GOAL  # relative half-width of a headline interval (the adaptive run's goal)
    max_others: float = 0.10  # share of the available CPUs' time that other processes may take
    max_drift: float = 2 * DEFAULT_GOAL  # change between the halves' figures (their intervals apart too)

    @classmethod
    def of(cls, plan: TimingPlan) -> Limits:
        """The default limits with the plan's interval goal (drift: twice it, the width of a whole interval)."""
        return cls(max_halfwidth=plan.goal, max_drift=2 * plan.goal)


@dataclass(frozen=True)
class Flag:
    """One reason a figure is unstable: its kind (a key of :data:`ADVICE`) and a sentence with the numbers;
    ``headline`` is that sentence without the figure's numbers (``value``), so a report says it once for all."""

    kind: str
    reason: str
    headline: str
    value: str = ""

    @property
    def advice(self) -> str:
        return ADVICE[self.kind]

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "advice": self.advice,
            "headline": self.headline,
            "value": self.value,
        }


def _interval_flag(what: str, width: float, limit: float) -> Flag:
    reason = f"{what} interval +-{width:.1%} wider than +-{limit:.1%}"
    return Flag("interval", reason, f"{what} interval wider than +-{limit:.1%}", f"+-{width:.1%}")


def machine_flags(usage: MachineUsage, limits: Limits = Limits()) -> list[Flag]:
    """Flags of a busy machine around one group (they apply to every row of it)."""
    flags = []
    cpus, load, others = usage.cpus_available, usage.peak_load, usage.others_cpu
    if load is not None and load - usage.own_cpu > cpus:  # the load average counts this process's threads too
        reason = f"load average {load:.1f} less this process's {usage.own_cpu:.1f} CPUs above the {cpus} CPUs available"
        headline = f"load average (less this process) above the {cpus} CPUs available"
        flags.append(Flag("load", reason, headline, f"{load - usage.own_cpu:.1f}"))
    if others is not None and others > limits.max_others * cpus:
        reason = f"other processes used {others:.2f} of the {cpus} CPUs while it was timed"
        headline = f"other processes used more than {limits.max_others:.0%} of the {cpus} CPUs while timed"
        flags.append(Flag("busy", reason, headline, f"{others:.2f} CPUs"))
    return flags


def drift_flags(what: str, halves: Halves | None, spec: str, limits: Limits = Limits()) -> list[Flag]:
    """A flag when ``what`` (``halves``' figure, shown in ``spec``) differs between the first and the second half of
    the turns by more than ``limits.max_drift``, their intervals apart: the machine changed during the run."""
    if halves is None or not halves.apart or abs(halves.change) <= limits.max_drift:
        return []
    figures = f"{halves.first:{spec}} then {halves.second:{spec}}"
    reason = f"{what} drifted by {halves.change:+.1%} between the first and second half of the turns ({figures})"
    headline = f"{what} drifted by more than {limits.max_drift:.0%} between the first and second half of the turns"
    return [Flag("drift", reason, headline, f"{halves.change:+.1%}")]


def latency_flags(stats: LatencyStats, limits: Limits = Limits(), *, paired: bool = False) -> list[Flag]:
    """Flags of one row's median, its headline unless the row is in an SB/baseline pair (``paired``: then none)."""
    if paired:
        return []
    width = stats.median_halfwidth
    if width is None:
        reason = f"no interval: too few turns ({stats.runs} runs) for one"
        return [Flag("few-turns", reason, "no interval: too few turns for one", f"{stats.runs} runs")]
    flags = [_interval_flag("median", width, limits.max_halfwidth)] if width > limits.max_halfwidth else []
    return flags + drift_flags("median", stats.halves, ".3f", limits)


def speedup_flags(
    speedup: float,
    interval: Interval | None,
    mac_ratio: float | None,
    limits: Limits = Limits(),
    halves: Halves | None = None,
) -> list[Flag]:
    """Flags of an SB row's speedup (``halves``: its first and second half's) and the efficiency that follows."""
    flags = []
    if interval is None:
        reason = "no speedup interval: too few turns for one"
        flags.append(Flag("few-turns", reason, reason))
    elif interval.halfwidth(speedup) > limits.max_halfwidth:
        flags.append(_interval_flag("speedup", interval.halfwidth(speedup), limits.max_halfwidth))
    flags += drift_flags("speedup", halves, ".2f", limits)
    if mac_ratio and mac_ratio != 1:  # equal MACs: two forms of one network may differ in speed, no impossibility
        efficiency = speedup * mac_ratio
        bounds = interval.scaled(mac_ratio) if interval else None
        if (bounds is None and efficiency > 1) or (bounds is not None and bounds.low > 1):
            figure = f"{efficiency:.2f}" + (f" (interval {bounds.low:.2f}-{bounds.high:.2f})" if bounds else "")
            reason = f"efficiency {figure} above 1: faster than the MAC ratio {mac_ratio:.3f} allows"
            headline = "efficiency above 1: faster than the MAC ratio allows"
            flags.append(Flag("efficiency", reason, headline, f"{figure} at MAC ratio {mac_ratio:.3f}"))
    return flags
