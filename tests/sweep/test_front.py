"""The sweep's pure judgments: the Wilson interval, the Pareto front, the ``--max-drop`` pick."""

from __future__ import annotations

import itertools
import math

import pytest

from sbdeploy.sweep.front import Point, binomial_interval, dominates, fastest_within, pareto_front


def test_wilson_interval_matches_its_formula_and_stays_in_zero_one() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, n in ((354, 359), (7, 20), (1, 3)):  # the digits baseline: 98.61% of 359 test images
        reference = stats.binomtest(k, n).proportion_ci(method="wilson")  # an independent implementation
        assert binomial_interval(k, n) == pytest.approx((reference.low, reference.high), abs=1e-8)
    assert binomial_interval(0, 10)[0] == 0.0 and binomial_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert binomial_interval(10, 10)[1] == 1.0 and binomial_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    for k in range(0, 21):  # always around the estimate, narrower with more images
        low, high = binomial_interval(k, 20)
        assert 0 <= low <= k / 20 <= high <= 1
        wide, narrow = binomial_interval(k, 20), binomial_interval(5 * k, 100)
        assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with pytest.raises(ValueError):
        binomial_interval(0, 0)


def test_front_is_the_non_dominated_set() -> None:
    points = [
        Point("base", 0.99, 10.0),
        Point("a", 0.98, 7.0),
        Point("b", 0.97, 8.0),  # dominated by a
        Point("c", 0.90, 5.0),
        Point("d", 0.90, 5.0),  # tie with c: neither dominates
        Point("e", 0.99, 11.0),  # dominated by base
    ]
    assert pareto_front(points) == {"base", "a", "c", "d"}
    for p, q in itertools.permutations(points, 2):
        assert not (dominates(p, q) and dominates(q, p))


def test_pick_is_the_fastest_within_the_drop_and_the_baseline_qualifies() -> None:
    base = Point("base", 0.986, 10.0)
    points = [base, Point("a", 0.980, 7.0), Point("b", 0.970, 5.0), Point("c", 0.985, 9.0)]
    assert fastest_within(points, base, 0.01).name == "a"  # b loses 1.6 points
    assert fastest_within(points, base, 0.02).name == "b"
    assert fastest_within(points, base, 0.0).name == "base"  # nothing faster loses nothing
    assert fastest_within([Point("slow", 0.99, 12.0), base], base, 0.01).name == "base"
    assert math.isclose(fastest_within(points, base, 0.016).top1, 0.970)  # exactly at the limit qualifies
