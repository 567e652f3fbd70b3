"""The sweep's judgments, pure: accuracy intervals, the accuracy / latency Pareto front, the ``--max-drop`` pick."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


def binomial_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of an accuracy ``correct / total`` (95% by default): never outside [0, 1], sound
    at 0% and 100%, where the normal approximation collapses to a point."""
    if total < 1:
        raise ValueError("an accuracy interval needs at least one image")
    p, n = correct / total, total
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (0.0 if correct == 0 else center - half), (1.0 if correct == total else center + half)


@dataclass(frozen=True)
class Point:
    """A candidate at one batch size, as the front and the pick see it."""

    name: str
    top1: float
    median_ms: float


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as accurate and as fast as ``b``, and better in one of the two."""
    return a.top1 >= b.top1 and a.median_ms <= b.median_ms and (a.top1 > b.top1 or a.median_ms < b.median_ms)


def pareto_front(points: Sequence[Point]) -> set[str]:
    """Names of the points no other point dominates (compare points of one batch size only)."""
    return {p.name for p in points if not any(dominates(q, p) for q in points)}


def fastest_within(points: Sequence[Point], reference: Point, max_drop: float) -> Point:
    """The fastest point whose top-1 is at most ``max_drop`` (a fraction: 0.01 is one point) below ``reference``'s;
    ``reference`` itself qualifies, so there is always one (ties: the more accurate, then the name)."""
    floor = reference.top1 - max_drop - 1e-12  # (points read back from JSON round to 1e-12 at worst)
    within = [p for p in points if p.top1 >= floor] or [reference]
    return min(within, key=lambda p: (p.median_ms, -p.top1, p.name))
