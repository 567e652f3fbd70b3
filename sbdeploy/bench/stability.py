"""When a bench figure is not to be trusted, and why: flags with reasons and what to do about them.

A figure is *unstable* when any :class:`Flag` holds: its runs vary too much, its headline interval is too
wide or missing, the machine was busy around its group, or its efficiency exceeds 1 (which a MAC ratio forbids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sbdeploy.bench.defaults import DEFAULT_GOAL
from sbdeploy.bench.stats import MIN_ROUNDS_FOR_INTERVAL, Interval

if TYPE_CHECKING:
    from sbdeploy.bench.machine import MachineUsage
    from sbdeploy.bench.timing import LatencyStats, TimingPlan

_QUIET = "rerun on a quiet machine (stop other jobs)"
_PIN = "pin threads with --threads N and taskset -c CPUS"
ADVICE = {  # what to do, per flag kind (printed by the CLI beside each warning)
    "spread": f"{_QUIET}, {_PIN}, or raise --budget",
    "interval": f"raise --budget (or drop --iters/--duration for the adaptive length), {_QUIET}, or {_PIN}",
    "few-turns": f"drop --iters/--duration (the adaptive default), or give at least {MIN_ROUNDS_FOR_INTERVAL} turns (--iters {MIN_ROUNDS_FOR_INTERVAL} x --turn)",
    "load": f"{_QUIET}, or bench on idle CPUs: taskset -c CPUS with --threads N",
    "busy": f"{_QUIET}, or bench on idle CPUs: taskset -c CPUS with --threads N",
    "efficiency": f"{_QUIET} with a higher --budget; if it stays above 1, the MAC count does not match the graph that runs",
}


@dataclass(frozen=True)
class Limits:
    """Thresholds above which a figure is flagged."""

    max_cv: float = 0.10  # coefficient of variation of a row's runs
    max_halfwidth: float = DEFAULT_GOAL  # relative half-width of a headline interval (the adaptive run's goal)
    max_others: float = 0.10  # share of the available CPUs' time that other processes may take

    @classmethod
    def of(cls, plan: TimingPlan) -> Limits:
        """The default limits with the plan's interval goal."""
        return cls(max_halfwidth=plan.goal)


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
    if load is not None and load > cpus:
        reason = f"load average {load:.1f} above the {cpus} CPUs available"
        flags.append(Flag("load", reason, f"load average above the {cpus} CPUs available", f"{load:.1f}"))
    if others is not None and others > limits.max_others * cpus:
        reason = f"other processes used {others:.2f} of the {cpus} CPUs while it was timed"
        headline = f"other processes used more than {limits.max_others:.0%} of the {cpus} CPUs while timed"
        flags.append(Flag("busy", reason, headline, f"{others:.2f} CPUs"))
    return flags


def latency_flags(stats: LatencyStats, limits: Limits = Limits(), *, paired: bool = False) -> list[Flag]:
    """Flags of one row's runs; ``paired``: the row is in an SB/baseline pair (its median interval is not its headline)."""
    flags = []
    if stats.cv > limits.max_cv:
        reason = f"runs vary by CV {stats.cv:.1%} (above {limits.max_cv:.0%})"
        flags.append(Flag("spread", reason, f"runs vary by CV above {limits.max_cv:.0%}", f"{stats.cv:.1%}"))
    width = stats.median_halfwidth
    if width is None and not paired:
        reason = f"no interval: too few turns ({stats.runs} runs) for one"
        flags.append(Flag("few-turns", reason, "no interval: too few turns for one", f"{stats.runs} runs"))
    elif width is not None and not paired and width > limits.max_halfwidth:
        flags.append(_interval_flag("median", width, limits.max_halfwidth))
    return flags


def speedup_flags(
    speedup: float, interval: Interval | None, mac_ratio: float | None, limits: Limits = Limits()
) -> list[Flag]:
    """Flags of an SB row's speedup and the efficiency that follows from it."""
    flags = []
    if interval is None:
        reason = "no speedup interval: too few turns for one"
        flags.append(Flag("few-turns", reason, reason))
    elif interval.halfwidth(speedup) > limits.max_halfwidth:
        flags.append(_interval_flag("speedup", interval.halfwidth(speedup), limits.max_halfwidth))
    if mac_ratio:
        efficiency = speedup * mac_ratio
        bounds = interval.scaled(mac_ratio) if interval else None
        if (bounds is None and efficiency > 1) or (bounds is not None and bounds.low > 1):
            figure = f"{efficiency:.2f}" + (f" (interval {bounds.low:.2f}-{bounds.high:.2f})" if bounds else "")
            reason = f"efficiency {figure} above 1: faster than the MAC ratio {mac_ratio:.3f} allows"
            headline = "efficiency above 1: faster than the MAC ratio allows"
            flags.append(Flag("efficiency", reason, headline, f"{figure} at MAC ratio {mac_ratio:.3f}"))
    return flags
