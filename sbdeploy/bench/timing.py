"""One timing method for every backend: warm-up, then interleaved turns until the figures are sure.

Callables take turns round-robin (A, B, C, then B, C, A, ...: the order rotates every
round) so that a noisy machine slows every candidate alike and their ratio stays
honest. After each full rotation (every callable first once) the order the rotation
starts from is shuffled (seeded by ``seed``), so a callable does not always follow the
same one: an ONNX Runtime session whose pool threads keep spinning after its turn slows
whichever session runs next (2 cores, four files in one group, the rotation alone: the
same file with the same settings timed 2.7x slower in one slot than in another). A turn is ``settle`` untimed runs, then ``turn`` timed runs of one callable:
switching on every call let the previous ONNX Runtime session's spinning pool threads
compete with the next run, which penalised graphs with many small nodes (2 cores,
ORT CPU 2 threads, cifar_resnet56 vs its SB twin at batch 1: 0.65x switching on every
call, 0.96x in turns of 25 with the first 3 runs of each dropped). A *round* is one turn
of every callable; the callables of one round saw the same machine, so the intervals
(:mod:`sbdeploy.bench.stats`) resample rounds.

How long: a fixed number of timed runs (``iters``), a fixed time (``duration_s``), or,
by default, *adaptive*: rounds go on until every interval is narrow enough (each
SB/baseline pair's speedup, and the median of every callable outside a pair, within
``+-goal`` relative half-width) or ``budget_s`` is spent; never fewer than ``min_turns``
rounds, and never stopping on a narrow interval before ``min_time_s``. Where the rounds
owed (``min_turns``; for a fixed time, the :data:`~sbdeploy.bench.stats.MIN_ROUNDS_FOR_INTERVAL`
an interval needs) would not fit at the runs' measured speed, turns get shorter. The machine's load
is recorded around the timed rounds (:mod:`sbdeploy.bench.machine`).

Why those minimums and the floor, from A/A runs (a 0.45 ms ONNX network against a copy of
itself, ONNX Runtime CPU, 1 thread, on this project's 2-core machine while other
processes used 1.0-1.5 of its cores; a good method says 1.0):

- stopping at the first narrow check after 10 turns, the interval missed 1.0 in 2 of 20
  runs; after 20 turns (about 0.3 s) in 3 of 60; after 20 turns and at least 1 s in 1 of
  60 (machine noise is correlated over longer than a round, so a short run sees few
  independent machine states);
- on long runs the two sessions of the same file really differ, by up to 1.3% (4 s of
  turns: 1.013, resampled interval 1.010-1.017), and a 0.05 ms network by 4%: resampling
  the turns of one run sees the noise *within* it, not the difference between two
  sessions. So every interval is at least ``+-noise_floor`` (1%) wide around its figure,
  the allowance criterion.rs calls its noise threshold.

The runs that still missed were on a machine the report flags as busy
(:mod:`sbdeploy.bench.stability`): a figure without a flag is the one to trust.

A callable may return the device compute time of its run in milliseconds; that is then
reported beside the end-to-end time. The bench gets its callables from
:meth:`sbdeploy.backends.base.Runner.timed_call`: CUDA events for ``torch-cuda`` and
``trt``, a device-bound IOBinding run for ``ort-cuda``/``ort-trt``, None on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sbdeploy.bench import machine
from sbdeploy.bench.defaults import DEFAULT_BUDGET_S, DEFAULT_GOAL
from sbdeploy.bench.stats import MIN_ROUNDS_FOR_INTERVAL, Interval, bootstrap_rounds, coefficient_of_variation

TimedFn = Callable[[], "float | None"]
ProgressFn = Callable[[str, int, int], None]
"""``(stage, done, total)``: the progress callback of the bench and pipeline library functions (total 0: unknown)."""

CHECK_RESAMPLES = 400
"""Bootstrap resamples of the stopping checks during an adaptive run (the final intervals use the plan's)."""


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics of one callable, in milliseconds.

    ``cv`` is the coefficient of variation (sample std / mean); ``median_low_ms`` and
    ``median_high_ms`` bound the median at the group's confidence (None: too few rounds).
    """

    runs: int
    median_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    p90_ms: float
    p99_ms: float
    compute_median_ms: float | None = None  # device compute time, where the backend reports it
    median_low_ms: float | None = None
    median_high_ms: float | None = None

    @classmethod
    def from_samples(cls, seconds: Sequence[float], compute_ms: Sequence[float] | None = None) -> LatencyStats:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
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
    """How long to warm up and to measure.

    With neither ``iters`` nor ``duration_s`` the plan is *adaptive* (the default).

    Attributes:
        warmup_iters: warm-up runs per callable (used when ``warmup_s`` is None).
        warmup_s: warm-up time per callable in seconds (overrides ``warmup_iters``).
        iters: a fixed number of timed runs per callable (with ``duration_s``: at most this many).
        duration_s: a fixed measuring time in seconds for all callables together (turns shortened
            so that the rounds an interval needs fit: see ``turn``).
        budget_s: adaptive: seconds of timed rounds after which the run stops, narrow or not.
        goal: adaptive: the relative half-width of every interval that ends the run (0.03: +-3%).
        min_turns: adaptive: fewest rounds, however long they take.
        min_time_s: adaptive: fewest seconds of rounds before the run may stop on a narrow interval
            (machine noise is correlated over longer than a round: see the module's docstring).
        noise_floor: the smallest relative half-width of any interval (see the module's docstring).
        min_iters: fewest timed runs per callable of a ``duration_s`` run.
        turn: timed runs of one callable in a row before the next one's turn (adaptive runs
            shorten it, down to 1, while the rounds owed to ``min_turns`` would not fit the budget
            at the runs' measured speed; ``duration_s`` runs likewise for the rounds an interval needs).
        settle: untimed runs at the start of each turn (after switching callables).
        confidence: of every interval.
        resamples: bootstrap resamples of the final intervals.
        seed: of the bootstrap.
    """

    warmup_iters: int = 10
    warmup_s: float | None = None
    iters: int | None = None
    duration_s: float | None = None
    budget_s: float = DEFAULT_BUDGET_S
    goal: float = DEFAULT_GOAL
    min_turns: int = 20
    min_time_s: float = 1.0
    noise_floor: float = 0.01
    min_iters: int = 5
    turn: int = 10
    settle: int = 2
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if (
            (self.iters is not None and self.iters < 1)
            or self.min_iters < 1
            or self.turn < 1
            or self.settle < 0
            or self.min_turns < 1
        ):
            raise ValueError("iters, min_iters, min_turns and turn must be >= 1, settle >= 0")
        if (
            self.budget_s <= 0
            or self.goal <= 0
            or not 0 < self.confidence < 1
            or self.resamples < 1
            or self.noise_floor < 0
        ):
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
                f"adaptive: until every {self.confidence:.0%} interval is within +-{self.goal:.1%} or {self.budget_s:g} s per group, "
                f"at least {self.min_turns} turns and {self.min_time_s:g} s"
            )
        if self.duration_s is not None:
            cap = f" (at most {self.iters} runs each)" if self.iters is not None else ""
            return f"fixed: {self.duration_s:g} s per group{cap}"
        return f"fixed: {self.iters} timed runs each"

    def settings(self) -> dict[str, object]:
        """The plan as a report's settings."""
        return {
            "length": self.describe(),
            "warmup": self.warmup_s if self.warmup_s is not None else self.warmup_iters,
            "iters": self.iters,
            "duration_s": self.duration_s,
            "budget_s": self.budget_s if self.adaptive else None,
            "goal": self.goal if self.adaptive else None,
            "min_turns": self.min_turns if self.adaptive else None,
            "min_time_s": self.min_time_s if self.adaptive else None,
            "noise_floor": self.noise_floor,
            "turn": self.turn,
            "settle": self.settle,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Pair:
    """An SB callable and its baseline, timed in the same group; ``mac_ratio`` = SB MACs / baseline MACs."""

    sb: str
    baseline: str
    mac_ratio: float


@dataclass(frozen=True)
class Speedup:
    """A pair's speedup (baseline median / SB median) with its interval, and the efficiency that follows.

    Efficiency = speedup x MAC ratio = realized speedup / ideal speedup (1 / MAC ratio).
    """

    sb: str
    baseline: str
    mac_ratio: float
    value: float
    interval: Interval | None

    @property
    def efficiency(self) -> float:
        return self.value * self.mac_ratio

    @property
    def efficiency_interval(self) -> Interval | None:
        return self.interval.scaled(self.mac_ratio) if self.interval else None


@dataclass(frozen=True)
class RoundStatus:
    """Where a group's measurement stands after a round (for progress displays).

    Attributes:
        rounds: rounds done.
        runs: timed runs per callable so far.
        elapsed_s: seconds of timed rounds so far.
        fraction: share of the plan done (runs / iters, elapsed / duration, elapsed / budget).
        widest: adaptive: the widest relative half-width at the last check (None before one).
        goal: adaptive: the half-width that ends the run.
    """

    rounds: int
    runs: int
    elapsed_s: float
    fraction: float
    widest: float | None = None
    goal: float | None = None

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

    def to_dict(self) -> dict[str, object]:
        return {
            "rounds": self.rounds,
            "turn": self.turn,
            "seconds": self.seconds,
            "stop": self.stop,
            "confidence": self.confidence,
            "machine": self.machine.to_dict(),
        }


@dataclass(frozen=True)
class GroupResult:
    """Everything one interleaved group measured.

    Attributes:
        stats: per callable, with the interval of its median.
        speedups: per pair, by the SB callable's name.
        record: length, stop reason, machine load.
        rounds: per callable, its timed runs (ms) per round, for further statistics.
    """

    stats: Mapping[str, LatencyStats]
    speedups: Mapping[str, Speedup]
    record: GroupRecord
    rounds: Mapping[str, tuple[tuple[float, ...], ...]]


def _warm_up(fns: Mapping[str, TimedFn], plan: TimingPlan) -> float:
    """Run every callable's warm-up; return the seconds one run of every callable takes (mean after the first; nan: none)."""
    total = 0.0
    for fn in fns.values():
        times: list[float] = []
        end = None if plan.warmup_s is None else time.perf_counter() + plan.warmup_s
        while (time.perf_counter() < end) if end is not None else len(times) < plan.warmup_iters:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        if not times:
            return math.nan
        total += float(np.mean(times[1:] or times))
    return total


def _owed_rounds(plan: TimingPlan) -> tuple[int, float] | None:
    """The rounds a plan owes and the seconds it has for them: adaptive, ``min_turns`` in the
    budget; a fixed ``duration_s``, the :data:`~sbdeploy.bench.stats.MIN_ROUNDS_FOR_INTERVAL`
    an interval needs in that time; a fixed ``iters`` alone has no time limit (None)."""
    if plan.adaptive:
        return plan.min_turns, plan.budget_s
    if plan.duration_s is not None:
        return MIN_ROUNDS_FOR_INTERVAL, plan.duration_s
    return None


def _fitted_turn(
    plan: TimingPlan, per_run_s: float, rounds_left: int, seconds_left: float, runs_left: int | None
) -> int:
    """The plan's turn, shortened (to 1 at least) where the rounds still owed (:func:`_owed_rounds`)
    would not fit the time left, or (``runs_left``: a fixed time capped at ``iters``) the timed runs left.

    ``per_run_s`` is the time of one run of every callable (settle runs cost the same).
    """
    if rounds_left <= 0 or not per_run_s > 0:
        return plan.turn
    fits = int(max(seconds_left, 0.0) / (rounds_left * per_run_s)) - plan.settle
    if runs_left is not None:
        fits = min(fits, runs_left // rounds_left)
    return max(1, min(plan.turn, fits))


def _floored(interval: Interval, center: float, floor: float) -> Interval:
    """``interval`` widened, where narrower, to ``center`` x (1 -+ ``floor``)."""
    return Interval(
        min(interval.low, center * (1 - floor)), max(interval.high, center * (1 + floor)), interval.confidence
    )


def _intervals(
    rounds: Mapping[str, Sequence[Sequence[float]]], pairs: Sequence[Pair], plan: TimingPlan, resamples: int
) -> tuple[dict[str, Interval], dict[str, Interval]]:
    """Median intervals per callable and speedup intervals per SB name, floored (empty with too few rounds)."""
    boot = bootstrap_rounds(
        rounds, [(p.baseline, p.sb) for p in pairs], confidence=plan.confidence, resamples=resamples, seed=plan.seed
    )
    if boot is None:
        return {}, {}
    median = {n: float(np.median(np.concatenate(r))) for n, r in rounds.items()}
    medians = {n: _floored(boot.medians[n], median[n], plan.noise_floor) for n in rounds}
    speedups = {
        p.sb: _floored(boot.ratios[(p.baseline, p.sb)], median[p.baseline] / median[p.sb], plan.noise_floor)
        for p in pairs
    }
    return medians, speedups


def ratio_intervals(
    rounds: Mapping[str, Sequence[Sequence[float]]], ratios: Sequence[tuple[str, str]], plan: TimingPlan
) -> dict[tuple[str, str], tuple[float, Interval | None]]:
    """(numerator, denominator) -> numerator median / denominator median, with its paired-turn interval (floored).

    For two callables of one group other than an SB/baseline pair, e.g. a model's fp32 and
    int8 files (fp32 / int8: the int8 file's speedup); the interval is None with too few rounds.
    """
    boot = bootstrap_rounds(rounds, ratios, confidence=plan.confidence, resamples=plan.resamples, seed=plan.seed)
    median = {n: float(np.median(np.concatenate(r))) for n, r in rounds.items()}
    out: dict[tuple[str, str], tuple[float, Interval | None]] = {}
    for num, den in ratios:
        value = median[num] / median[den]
        out[(num, den)] = (value, None if boot is None else _floored(boot.ratios[(num, den)], value, plan.noise_floor))
    return out


def _widest(
    rounds: Mapping[str, Sequence[Sequence[float]]], pairs: Sequence[Pair], plan: TimingPlan, resamples: int
) -> float:
    """The widest relative half-width among the intervals that end an adaptive run (inf: none yet)."""
    medians, speedups = _intervals(rounds, pairs, plan, resamples)
    if not medians:
        return math.inf
    median = {n: float(np.median(np.concatenate(r))) for n, r in rounds.items()}
    widths = [speedups[p.sb].halfwidth(median[p.baseline] / median[p.sb]) for p in pairs]
    paired = {n for p in pairs for n in (p.sb, p.baseline)}
    widths += [medians[n].halfwidth(median[n]) for n in rounds if n not in paired]
    return max(widths)


def measure_group(
    fns: Mapping[str, TimedFn],
    plan: TimingPlan = TimingPlan(),
    *,
    pairs: Sequence[Pair] = (),
    on_round: Callable[[RoundStatus], None] | None = None,
) -> GroupResult:
    """Warm up every callable, then time them in rotating turns until the plan says stop.

    Args:
        fns: callables to time, by name; each runs one inference to completion.
        plan: warm-up, length (fixed or adaptive), turn length, confidence.
        pairs: SB/baseline pairs among ``fns`` whose speedup to bound (and, adaptive, to narrow).
        on_round: called after each round with the measurement's status (progress).

    Raises:
        ValueError: no callables, or a pair naming a callable that is not in ``fns``.
    """
    names = list(fns)
    if not names:
        raise ValueError("nothing to time: give at least one callable")
    missing = sorted({n for p in pairs for n in (p.sb, p.baseline)} - set(names))
    if missing:
        raise ValueError(f"pairs name callables that are not timed: {missing}")
    per_run_s = _warm_up(fns, plan)
    owed = _owed_rounds(plan)
    capped = plan.iters if plan.duration_s is not None else None  # a fixed time that may end on iters first
    turn = plan.turn if owed is None else _fitted_turn(plan, per_run_s, *owed, capped)
    rounds: dict[str, list[list[float]]] = {n: [] for n in names}
    compute: dict[str, list[float]] = {n: [] for n in names}
    before = machine.snapshot()
    start = time.perf_counter()
    done = count = executed = 0  # timed runs, rounds, and runs with the settle ones, per callable
    widest: float | None = None
    next_check, check_cost = 0.0, 0.0
    order, order_rng = list(names), np.random.default_rng(plan.seed)
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
                if (
                    widest <= plan.goal and elapsed >= plan.min_time_s
                ):  # confirm with as many resamples as the final intervals
                    widest = _widest(rounds, pairs, plan, plan.resamples)
                check_cost = time.perf_counter() - tick
                next_check = (time.perf_counter() - start) + 10 * check_cost  # checks take at most ~10% of the time
                if widest <= plan.goal and elapsed >= plan.min_time_s:
                    stop = f"every interval within +-{plan.goal:.1%} after {count} turns"
                    break
            if elapsed >= plan.budget_s:
                width = (
                    f"widest interval +-{widest:.1%}"
                    if widest is not None and math.isfinite(widest)
                    else "no interval yet"
                )
                stop = f"budget of {plan.budget_s:g} s spent; {width} (goal +-{plan.goal:.1%})"
                break
        if owed is not None and count < owed[0] and executed:  # re-fit the turn to the runs' measured time
            turn = _fitted_turn(
                plan, elapsed / executed, owed[0] - count, owed[1] - elapsed, None if capped is None else capped - done
            )
        runs = turn if plan.iters is None else min(turn, plan.iters - done)
        shift = count % len(names)
        if shift == 0 and count:  # a full rotation done: the next one starts from a shuffled order
            order = [order[i] for i in order_rng.permutation(len(order))]
        for name in order[shift:] + order[:shift]:
            fn, turn_runs = fns[name], []
            for _ in range(plan.settle):
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
            if plan.duration_s is not None and plan.iters is not None:
                fraction = max(fraction, done / plan.iters)
            on_round(
                RoundStatus(count, done, elapsed, min(fraction, 1.0), widest, plan.goal if plan.adaptive else None)
            )
    usage = machine.usage_between(before, machine.snapshot())
    medians, intervals = _intervals(rounds, pairs, plan, plan.resamples)
    stats = {}
    for n in names:
        s = LatencyStats.from_samples([t / 1e3 for turn_runs in rounds[n] for t in turn_runs], compute[n] or None)
        if n in medians:
            s = dataclasses.replace(s, median_low_ms=medians[n].low, median_high_ms=medians[n].high)
        stats[n] = s
    speedups = {
        p.sb: Speedup(
            p.sb, p.baseline, p.mac_ratio, stats[p.baseline].median_ms / stats[p.sb].median_ms, intervals.get(p.sb)
        )
        for p in pairs
    }
    longest = max((len(t) for r in rounds.values() for t in r), default=turn)
    record = GroupRecord(
        rounds=count, turn=longest, seconds=usage.seconds, stop=stop, confidence=plan.confidence, machine=usage
    )
    return GroupResult(
        stats=stats, speedups=speedups, record=record, rounds={n: tuple(map(tuple, r)) for n, r in rounds.items()}
    )


def round_progress(stage: str, on_progress: ProgressFn | None) -> Callable[[RoundStatus], None] | None:
    """A round callback for :func:`measure_group` that reports ``(stage: status, permille done, 1000)``."""
    if on_progress is None:
        return None
    return lambda status: on_progress(f"{stage}: {status.describe()}", round(1000 * status.fraction), 1000)


def measure_interleaved(
    fns: Mapping[str, TimedFn],
    plan: TimingPlan = TimingPlan(),
    *,
    on_round: Callable[[int], None] | None = None,
    samples_out: dict[str, list[float]] | None = None,
) -> dict[str, LatencyStats]:
    """:func:`measure_group` without pairs, returning only the stats per name.

    Args:
        fns: callables to time, by name; each runs one inference to completion.
        plan: warm-up and measurement lengths, turn length.
        on_round: called after each round with the timed runs per callable so far (progress).
        samples_out: if given, filled with each callable's timed runs in milliseconds.
    """
    report = (lambda status: on_round(status.runs)) if on_round is not None else None
    result = measure_group(fns, plan, on_round=report)
    if samples_out is not None:
        samples_out.update({n: [t for turn in r for t in turn] for n, r in result.rounds.items()})
    return dict(result.stats)
