"""One timing method for every backend: warm-up, then interleaved turns until the figures are sure.

Callables take turns round-robin, each rotation from a shuffled (seeded) order; a *round* is one
turn of every callable, and the intervals (:mod:`sbdeploy.bench.stats`) resample rounds. By default
rounds go on until every interval (each pair's speedup, the median of each unpaired callable) is
within ``+-goal`` or ``budget_s`` is spent. docs/bench.md says how these choices were measured.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import numpy as np

from sbdeploy.bench import machine
from sbdeploy.bench.defaults import DEFAULT_BUDGET_S, DEFAULT_GOAL
from sbdeploy.bench.stats import (
    MIN_ROUNDS_FOR_INTERVAL,
    Halves,
    Interval,
    bootstrap_rounds,
    bounds,
    coefficient_of_variation,
)

TimedFn = Callable[[], "float | None"]
K = TypeVar("K")
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total): progress of bench and pipeline (total 0: unknown)
Rounds = Mapping[str, Sequence[Sequence[float]]]  # per callable, its timed runs (ms) per round

CHECK_RESAMPLES = 400  # bootstrap resamples of an adaptive run's stopping checks (the final intervals use the plan's)


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics of one callable, in milliseconds."""

    runs: int
    median_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    p90_ms: float
    p99_ms: float
    compute_median_ms: float | None = None  # device compute time, where the backend reports it
    median_low_ms: float | None = None  # the median's interval at the group's confidence (None: too few rounds)
    median_high_ms: float | None = None
    halves: Halves | None = None  # the median of the first and of the second half of the rounds (None: too few)

    @classmethod
    def from_samples(
        cls,
        seconds: Sequence[float],
        compute_ms: Sequence[float] | None = None,
        median: Interval | None = None,
        halves: Halves | None = None,
    ) -> LatencyStats:
        """The statistics of timed runs (seconds); ``median``: the interval of their median, ``halves``: its halves'."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        low, high = bounds(median)
        return cls(
            runs=len(ms),
            median_ms=float(np.median(ms)),
            mean_ms=float(np.mean(ms)),
            std_ms=float(np.std(ms, ddof=1)) if len(ms) > 1 else 0.0,
            cv=coefficient_of_variation(ms),
            min_ms=float(np.min(ms)),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
            compute_median_ms=float(np.median(compute_ms)) if compute_ms else None,
            median_low_ms=low,
            median_high_ms=high,
            halves=halves,
        )

    @property
    def median_halfwidth(self) -> float | None:
        """Half the median's interval relative to the median (0.03: +-3%); None without an interval."""
        if self.median_low_ms is None or self.median_high_ms is None or self.median_ms <= 0:
            return None
        return (self.median_high_ms - self.median_low_ms) / 2 / self.median_ms

    def throughput(self, batch: int) -> float:
        """Images per second at the median latency."""
        return batch / (self.median_ms / 1e3) if self.median_ms > 0 else math.inf

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class TimingPlan:
    """How long to warm up and to measure; with neither ``iters`` nor ``duration_s`` it is adaptive (the default)."""

    warmup_iters: int = 10  # warm-up runs per callable (used when warmup_s is None)
    warmup_s: float | None = None
    iters: int | None = None  # a fixed number of timed runs per callable (with duration_s: at most this many)
    duration_s: float | None = None  # a fixed measuring time for all callables together
    budget_s: float = DEFAULT_BUDGET_S  # adaptive: seconds of rounds after which the run stops, narrow or not
    goal: float = DEFAULT_GOAL  # adaptive: the relative half-width of every interval that ends the run
    min_turns: int = 20  # adaptive: fewest rounds, however long they take
    min_time_s: float = 1.0  # adaptive: fewest seconds of rounds before the run may stop on a narrow interval
    noise_floor: float = 0.01  # the smallest relative half-width of any interval
    min_iters: int = 5  # fewest timed runs per callable of a duration_s run
    turn: int = 10  # timed runs of one callable in a row (fewer, down to 1, where the rounds owed would not fit)
    settle: int = 2  # untimed runs at the start of each turn
    settle_s: float = 0.0  # and untimed runs until this many seconds of the turn have passed (idle workers' spin)
    confidence: float = 0.95
    resamples: int = 2000  # of the final intervals' bootstrap
    seed: int = 0

    def __post_init__(self) -> None:
        counts = (1 if self.iters is None else self.iters, self.min_iters, self.turn, self.min_turns)
        if min(counts) < 1 or self.settle < 0 or not self.settle_s >= 0:
            raise ValueError("iters, min_iters, min_turns and turn must be >= 1, settle and settle_s >= 0")
        valid = min(self.budget_s, self.goal) > 0 and 0 < self.confidence < 1 and self.resamples >= 1
        if not valid or self.noise_floor < 0:
            raise ValueError("budget_s and goal must be > 0, confidence in (0, 1), resamples >= 1, noise_floor >= 0")
        if self.goal < self.noise_floor:
            raise ValueError(
                f"the interval goal +-{self.goal:.1%} is below the noise floor +-{self.noise_floor:.1%}: no run could reach it"
            )

    @property
    def adaptive(self) -> bool:
        """Whether the run ends on its intervals (or the budget) rather than on a fixed length."""
        return self.iters is None and self.duration_s is None

    def describe(self) -> str:
        """One line for reports: how the length was chosen."""
        if self.adaptive:
            return (
                f"adaptive: until every {self.confidence:.0%} interval is within +-{self.goal:.1%} or {self.budget_s:g} s "
                f"per group, at least {self.min_turns} turns and {self.min_time_s:g} s"
            )
        if self.duration_s is not None:
            cap = f" (at most {self.iters} runs each)" if self.iters is not None else ""
            return f"fixed: {self.duration_s:g} s per group{cap}"
        return f"fixed: {self.iters} timed runs each"

    def settings(self) -> dict[str, object]:
        """The plan as a report's settings."""
        adaptive = ("budget_s", "goal", "min_turns", "min_time_s")
        return {
            "length": self.describe(),
            "warmup": self.warmup_s if self.warmup_s is not None else self.warmup_iters,
            "iters": self.iters,
            "duration_s": self.duration_s,
            **{key: getattr(self, key) if self.adaptive else None for key in adaptive},
            **{
                key: getattr(self, key)
                for key in ("noise_floor", "turn", "settle", "settle_s", "confidence", "resamples")
            },
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Pair:
    """An SB callable and its baseline, timed in the same group; ``mac_ratio`` = SB MACs / baseline MACs."""

    sb: str
    baseline: str
    mac_ratio: float


@dataclass(frozen=True)
class Speedup(Pair):
    """A pair's speedup (baseline median / SB median) with its interval; efficiency = speedup x MAC ratio."""

    value: float
    interval: Interval | None
    halves: Halves | None = None  # the speedup of the first and of the second half of the rounds (None: too few)

    @property
    def efficiency(self) -> float:
        return self.value * self.mac_ratio


@dataclass(frozen=True)
class RoundStatus:
    """Where a group's measurement stands after a round (for progress displays)."""

    rounds: int
    runs: int  # timed runs per callable so far
    elapsed_s: float
    fraction: float  # share of the plan done (runs / iters, elapsed / duration, elapsed / budget)
    widest: float | None = None  # adaptive: the widest relative half-width at the last check (None before one)
    goal: float | None = None  # adaptive: the half-width that ends the run

    def describe(self) -> str:
        """E.g. ``12 turns, widest interval +-4.1% (goal +-3.0%)``."""
        text = f"{self.rounds} turns"
        if self.widest is not None and math.isfinite(self.widest) and self.goal is not None:
            text += f", widest interval +-{self.widest:.1%} (goal +-{self.goal:.1%})"
        return text


@dataclass(frozen=True)
class GroupRecord:
    """How one group was measured: its length, why it stopped, and the machine around it."""

    rounds: int
    turn: int
    seconds: float
    stop: str
    confidence: float
    machine: machine.MachineUsage
    settle_s: float = 0.0  # untimed seconds at the start of each turn (the plan's, for idle workers' spin)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "machine": self.machine.to_dict()}


@dataclass(frozen=True)
class GroupResult:
    """Everything one interleaved group measured."""

    stats: Mapping[str, LatencyStats]  # per callable, with the interval of its median
    speedups: Mapping[str, Speedup]  # per pair, by the SB callable's name
    record: GroupRecord
    rounds: Mapping[str, tuple[tuple[float, ...], ...]]  # per callable, its timed runs (ms) per round
    # (numerator, denominator) -> their medians' ratio and its interval (None: too few rounds), per ratio asked
    ratios: Mapping[tuple[str, str], tuple[float, Interval | None]] = field(default_factory=dict)


def fair_plan(plan: TimingPlan, spins: Sequence[float]) -> TimingPlan:
    """``plan`` for callables interleaved whose runners' idle workers spin ``spins`` seconds after a run (ONNX
    Runtime's: ``Runner.idle_spin_s``): each turn opens with untimed runs for the longest of them, so no timed run
    shares the cores with the previous callable's workers. One callable alone keeps its own spin, as deployed."""
    spin = max(spins, default=0.0) if len(spins) > 1 else 0.0
    return dataclasses.replace(plan, settle_s=max(plan.settle_s, spin))


def warm_up(fns: Mapping[K, TimedFn], runs: int, seconds: float | None = None) -> dict[K, list[float]]:
    """Run each callable ``runs`` times (or for ``seconds``), one callable after the other; the seconds each run took."""
    times: dict[K, list[float]] = {}
    for key, fn in fns.items():
        end = None if seconds is None else time.perf_counter() + seconds
        times[key] = []
        while (time.perf_counter() < end) if end is not None else len(times[key]) < runs:
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return times


def _fitted_turn(
    plan: TimingPlan, per_run_s: float, rounds_left: int, seconds_left: float, runs_left: int | None
) -> int:
    """The plan's turn, shortened (to 1 at least) where the rounds owed would not fit the time (or runs) left."""
    if rounds_left <= 0 or not per_run_s > 0:
        return plan.turn
    fits = int(max(seconds_left, 0.0) / (rounds_left * per_run_s)) - plan.settle
    if runs_left is not None:
        fits = min(fits, runs_left // rounds_left)
    return max(1, min(plan.turn, fits))


def _floored(interval: Interval, center: float, floor: float) -> Interval:
    """``interval`` widened, where narrower, to ``center`` x (1 -+ ``floor``)."""
    low, high = min(interval.low, center * (1 - floor)), max(interval.high, center * (1 + floor))
    return Interval(low, high, interval.confidence)


def _intervals(
    rounds: Rounds, ratios: Sequence[tuple[str, str]], plan: TimingPlan, resamples: int
) -> tuple[dict[str, float], dict[str, Interval], dict[tuple[str, str], Interval]]:
    """Each callable's median, the floored intervals of the medians and of the ratios (empty with too few rounds)."""
    median = {n: float(np.median(np.concatenate(r))) for n, r in rounds.items()}
    boot = bootstrap_rounds(rounds, ratios, confidence=plan.confidence, resamples=resamples, seed=plan.seed)
    if boot is None:
        return median, {}, {}
    medians = {n: _floored(boot.medians[n], median[n], plan.noise_floor) for n in rounds}
    ratio = {(a, b): _floored(boot.ratios[(a, b)], median[a] / median[b], plan.noise_floor) for a, b in ratios}
    return median, medians, ratio


def _halves(
    rounds: Rounds, ratios: Sequence[tuple[str, str]], plan: TimingPlan
) -> tuple[dict[str, Halves], dict[tuple[str, str], Halves]]:
    """Each callable's median and each ratio on the first and on the second half of the rounds, with their intervals
    (empty with too few rounds for an interval of each half): what tells a drifting run."""
    count = min(len(r) for r in rounds.values())
    if count < 2 * MIN_ROUNDS_FOR_INTERVAL:
        return {}, {}
    first, second = (
        _intervals({n: r[part] for n, r in rounds.items()}, ratios, plan, plan.resamples)
        for part in (slice(0, count // 2), slice(count // 2, count))
    )
    (m1, i1, r1), (m2, i2, r2) = first, second
    medians = {n: Halves(m1[n], m2[n], i1[n], i2[n]) for n in rounds}
    ratio = {(a, b): Halves(m1[a] / m1[b], m2[a] / m2[b], r1[(a, b)], r2[(a, b)]) for a, b in ratios}
    return medians, ratio


def _widest(rounds: Rounds, pairs: Sequence[Pair], plan: TimingPlan, resamples: int) -> float:
    """The widest relative half-width among the intervals that end an adaptive run (inf: none yet)."""
    speedups = [(p.baseline, p.sb) for p in pairs]
    median, medians, ratios = _intervals(rounds, speedups, plan, resamples)
    if not medians:
        return math.inf
    paired = {n for pair in speedups for n in pair}
    widths = [ratios[(a, b)].halfwidth(median[a] / median[b]) for a, b in speedups]
    return max(widths + [medians[n].halfwidth(median[n]) for n in rounds if n not in paired])


def measure_group(
    fns: Mapping[str, TimedFn],
    plan: TimingPlan = TimingPlan(),
    *,
    pairs: Sequence[Pair] = (),
    ratios: Sequence[tuple[str, str]] = (),
    on_round: Callable[[RoundStatus], None] | None = None,
) -> GroupResult:
    """Warm up every callable (each runs one inference), then time them in rotating turns until the plan says stop;
    ``pairs``' speedups and ``ratios`` (numerator, denominator) get intervals from the same resamples."""
    names = list(fns)
    if not names:
        raise ValueError("nothing to time: give at least one callable")
    missing = sorted({n for p in pairs for n in (p.sb, p.baseline)}.union(*ratios) - set(names))
    if missing:
        raise ValueError(f"pairs name callables that are not timed: {missing}")
    warm = warm_up(fns, plan.warmup_iters, plan.warmup_s).values()
    # one run of every callable (the first warm-up run, with its one-off costs, left out)
    per_run_s = sum(float(np.mean(t[1:] or t)) for t in warm) if all(warm) else math.nan
    # the rounds the plan owes and the seconds it has for them (None: a fixed ``iters`` alone, no time limit)
    owed = (plan.min_turns, plan.budget_s) if plan.adaptive else None
    if plan.duration_s is not None:
        owed = (MIN_ROUNDS_FOR_INTERVAL, plan.duration_s)
    capped = plan.iters if plan.duration_s is not None else None  # a fixed time that may end on iters first
    settle_s = len(names) * plan.settle_s  # a round's seconds of timed settling, not the runs'
    turn = plan.turn if owed is None else _fitted_turn(plan, per_run_s, owed[0], owed[1] - owed[0] * settle_s, capped)
    rounds: dict[str, list[list[float]]] = {n: [] for n in names}
    compute: dict[str, list[float]] = {n: [] for n in names}
    before = machine.snapshot()
    start = time.perf_counter()
    done = count = executed = 0  # timed runs, rounds, and runs with the settle ones, per callable
    widest: float | None = None
    next_check = 0.0
    order, order_rng = list(names), np.random.default_rng(plan.seed)
    goal = plan.goal if plan.adaptive else None
    while True:
        elapsed = time.perf_counter() - start
        if plan.iters is not None and done >= plan.iters:
            stop = f"fixed length: {done} timed runs each"
            break
        if plan.duration_s is not None and done >= plan.min_iters and elapsed >= plan.duration_s:
            stop = f"fixed length: {plan.duration_s:g} s"
            break
        if plan.adaptive and count >= plan.min_turns:
            if elapsed >= next_check or elapsed >= plan.budget_s:
                tick = time.perf_counter()
                widest = _widest(rounds, pairs, plan, CHECK_RESAMPLES)
                narrow = widest <= plan.goal and elapsed >= plan.min_time_s
                if narrow:  # confirm with as many resamples as the final intervals
                    widest = _widest(rounds, pairs, plan, plan.resamples)
                    narrow = widest <= plan.goal
                # the checks take at most ~10% of the time
                next_check = (time.perf_counter() - start) + 10 * (time.perf_counter() - tick)
                if narrow:
                    stop = f"every interval within +-{plan.goal:.1%} after {count} turns"
                    break
            if elapsed >= plan.budget_s:
                known = widest is not None and math.isfinite(widest)
                width = f"widest interval +-{widest:.1%}" if known else "no interval yet"
                stop = f"budget of {plan.budget_s:g} s spent; {width} (goal +-{plan.goal:.1%})"
                break
        if owed is not None and count < owed[0] and executed:  # re-fit the turn to the runs' measured time
            runs_left = None if capped is None else capped - done
            rounds_left = owed[0] - count
            per_run_s = max(elapsed - count * settle_s, 0.0) / executed
            turn = _fitted_turn(plan, per_run_s, rounds_left, owed[1] - elapsed - rounds_left * settle_s, runs_left)
        runs = turn if plan.iters is None else min(turn, plan.iters - done)
        shift = count % len(names)
        if shift == 0 and count:  # a full rotation done: the next one starts from a shuffled order
            order = [order[i] for i in order_rng.permutation(len(order))]
        for name in order[shift:] + order[:shift]:
            fn, turn_runs = fns[name], []
            settled = time.perf_counter() + plan.settle_s
            for _ in range(plan.settle):
                fn()
            while time.perf_counter() < settled:
                fn()
            for _ in range(runs):
                tick = time.perf_counter()
                device_ms = fn()
                turn_runs.append((time.perf_counter() - tick) * 1e3)
                if device_ms is not None:
                    compute[name].append(float(device_ms))
            rounds[name].append(turn_runs)
        count, done, executed = count + 1, done + runs, executed + runs + plan.settle
        if on_round is not None:
            elapsed = time.perf_counter() - start
            fraction = done / plan.iters if plan.iters is not None else elapsed / (plan.duration_s or plan.budget_s)
            on_round(RoundStatus(count, done, elapsed, min(fraction, 1.0), widest, goal))
    usage = machine.usage_between(before, machine.snapshot())
    asked = list(dict.fromkeys([(p.baseline, p.sb) for p in pairs] + list(ratios)))
    median, medians, intervals = _intervals(rounds, asked, plan, plan.resamples)
    half_medians, half_ratios = _halves(rounds, asked, plan)
    stats = {
        n: LatencyStats.from_samples(
            [t / 1e3 for runs in rounds[n] for t in runs], compute[n] or None, medians.get(n), half_medians.get(n)
        )
        for n in names
    }
    speedups = {}
    for p in pairs:
        value = stats[p.baseline].median_ms / stats[p.sb].median_ms
        ratio = (p.baseline, p.sb)
        speedups[p.sb] = Speedup(p.sb, p.baseline, p.mac_ratio, value, intervals.get(ratio), half_ratios.get(ratio))
    longest = max((len(t) for r in rounds.values() for t in r), default=turn)
    record = GroupRecord(count, longest, usage.seconds, stop, plan.confidence, usage, plan.settle_s)
    runs_per_round = {n: tuple(map(tuple, r)) for n, r in rounds.items()}
    asked_ratios = {(a, b): (median[a] / median[b], intervals.get((a, b))) for a, b in ratios}
    return GroupResult(stats, speedups, record, runs_per_round, asked_ratios)


def round_progress(stage: str, on_progress: ProgressFn | None) -> Callable[[RoundStatus], None] | None:
    """A round callback for :func:`measure_group` that reports ``(stage: status, permille done, 1000)``."""
    if on_progress is None:
        return None
    return lambda status: on_progress(f"{stage}: {status.describe()}", round(1000 * status.fraction), 1000)


def measure_interleaved(fns: Mapping[str, TimedFn], plan: TimingPlan = TimingPlan()) -> dict[str, LatencyStats]:
    """:func:`measure_group` without pairs, returning only the stats per name."""
    return dict(measure_group(fns, plan).stats)
