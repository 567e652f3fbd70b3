"""How sure a latency figure is: bootstrap intervals over the rounds of the interleaved schedule.

A resample draws whole rounds (one turn of every callable) with replacement; the ratio of two
medians in one resample gives a *paired* speedup interval. Percentile intervals from a seeded
generator; none from fewer than :data:`MIN_ROUNDS_FOR_INTERVAL` rounds (docs/bench.md says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_ROUNDS_FOR_INTERVAL = 8

_CHUNK_ELEMENTS = 4_000_000  # resamples x runs processed at once (at most 32 MB per int64 array)


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]`` at ``confidence`` (e.g. 0.95; None: not kept with it)."""

    low: float
    high: float
    confidence: float | None = None

    @classmethod
    def of(cls, low: float | None, high: float | None) -> Interval | None:
        """``Interval(low, high)``, or None where a bound is missing."""
        return None if low is None or high is None else cls(low, high)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def halfwidth(self, center: float) -> float:
        """Half the interval's width relative to ``center`` (0.03: +-3%)."""
        return (self.high - self.low) / 2 / center if center > 0 else float("inf")

    def scaled(self, factor: float) -> Interval:
        """The interval of ``factor`` x the quantity (e.g. efficiency = speedup x MAC ratio)."""
        low, high = sorted((self.low * factor, self.high * factor))
        return Interval(low, high, self.confidence)


@dataclass(frozen=True)
class Halves:
    """A figure measured on the first and on the second half of a run's rounds, each with its interval."""

    first: float
    second: float
    first_interval: Interval
    second_interval: Interval

    @property
    def change(self) -> float:
        """The second half's figure relative to the first's, minus 1 (0.05: 5% higher)."""
        return self.second / self.first - 1 if self.first > 0 else float("inf")

    @property
    def apart(self) -> bool:
        """Whether the two halves' intervals do not overlap."""
        return (
            self.first_interval.high < self.second_interval.low or self.second_interval.high < self.first_interval.low
        )


@dataclass(frozen=True)
class RoundBootstrap:
    """Intervals of each callable's median and of ratios of medians (numerator, denominator), from the same resamples."""

    medians: Mapping[str, Interval]
    ratios: Mapping[tuple[str, str], Interval]


def bounds(interval: Interval | None) -> tuple[float | None, float | None]:
    """``(low, high)``, or ``(None, None)`` without an interval (the inverse of :meth:`Interval.of`)."""
    return (None, None) if interval is None else (interval.low, interval.high)


def with_interval(value: float | None, spec: str, interval: Interval | None = None) -> str:
    """``value`` in ``spec`` (``-`` for None), with `` (low-high)`` when it has an interval."""
    if value is None:
        return "-"
    return f"{value:{spec}}" + (f" ({interval.low:{spec}}-{interval.high:{spec}})" if interval is not None else "")


def coefficient_of_variation(samples: Sequence[float] | np.ndarray) -> float:
    """Sample standard deviation over the mean (Google Benchmark's and pyperf's CV); 0 for one sample."""
    values = np.asarray(samples, dtype=np.float64)
    if len(values) < 2 or values.mean() == 0:
        return 0.0
    return float(values.std(ddof=1) / values.mean())


def bootstrap_rounds(
    rounds: Mapping[str, Sequence[Sequence[float]]],
    ratios: Sequence[tuple[str, str]] = (),
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> RoundBootstrap | None:
    """Percentile intervals of medians and of ``ratios`` of medians (``(baseline, sb)``: a speedup), resampling whole
    rounds (``rounds[name][r]``: that callable's turn in round ``r``); None with too few rounds."""
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError(f"confidence must lie in (0, 1) and resamples be >= 1, got {confidence}, {resamples}")
    counts = {len(turns) for turns in rounds.values()}
    if len(counts) > 1:
        raise ValueError(f"every callable needs the same number of rounds, got {sorted(counts)}")
    n_rounds = counts.pop() if counts else 0
    if n_rounds < MIN_ROUNDS_FOR_INTERVAL:
        return None
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (sorted runs, the round of each)
    for name, turns in rounds.items():
        if any(len(t) == 0 for t in turns):
            raise ValueError(f"{name}: a round without timed runs")
        values = np.concatenate([np.asarray(t, dtype=np.float64) for t in turns])
        owner = np.concatenate([np.full(len(t), r, dtype=np.intp) for r, t in enumerate(turns)])
        order = np.argsort(values, kind="stable")
        pooled[name] = (values[order], owner[order])
    rng = np.random.default_rng(seed)
    medians = {name: np.empty(resamples) for name in rounds}
    chunk = max(1, _CHUNK_ELEMENTS // max(len(v) for v, _ in pooled.values()))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        drawn = rng.integers(0, n_rounds, size=(size, n_rounds))
        # times each round was drawn, per resample: the weight of its runs in the pooled median
        weights = np.bincount((drawn + n_rounds * np.arange(size)[:, None]).ravel(), minlength=size * n_rounds)
        weights = weights.reshape(size, n_rounds)
        for name, (values, owner) in pooled.items():
            medians[name][start : start + size] = _weighted_medians(values, owner, weights)
    alpha = (1 - confidence) / 2

    def interval(samples: np.ndarray) -> Interval:
        low, high = np.quantile(samples, [alpha, 1 - alpha])
        return Interval(float(low), float(high), confidence)

    return RoundBootstrap(
        medians={name: interval(m) for name, m in medians.items()},
        ratios={(num, den): interval(medians[num] / medians[den]) for num, den in ratios},
    )


def _weighted_medians(values: np.ndarray, owner: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per resample (row of ``weights``, the times each round was drawn): the median of the sorted pooled
    ``values`` (``owner``: the round of each), scanning a band of ranks around the middle first."""
    runs_per_round = np.bincount(owner, minlength=weights.shape[1])
    total = weights @ runs_per_round
    lower_rank, upper_rank = (total + 1) // 2, total // 2 + 1  # 1-based ranks of the two middle elements
    reach = int(8 * np.sqrt(float((runs_per_round.astype(np.float64) ** 2).sum()))) + 2
    start, stop = max(0, len(values) // 2 - reach), min(len(values), len(values) // 2 + reach + 1)
    below = weights @ np.bincount(owner[:start], minlength=weights.shape[1])  # weight of the runs before the band
    cumulative = below[:, None] + np.cumsum(weights[:, owner[start:stop]], axis=1)
    lower = start + (cumulative < lower_rank[:, None]).sum(axis=1)
    upper = start + (cumulative < upper_rank[:, None]).sum(axis=1)
    outside = (below >= lower_rank) | (cumulative[:, -1] < upper_rank)
    if outside.any():
        full = np.cumsum(weights[outside][:, owner], axis=1)
        lower[outside] = (full < lower_rank[outside][:, None]).sum(axis=1)
        upper[outside] = (full < upper_rank[outside][:, None]).sum(axis=1)
    return (values[lower] + values[upper]) / 2
