"""The interval statistics on synthetic samples of known distributions (no timing: exact, seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from sbdeploy.bench import stats
from sbdeploy.bench.stats import MIN_ROUNDS_FOR_INTERVAL, Interval, bootstrap_rounds, coefficient_of_variation

TRUE_SPEEDUP = 1.5


def paired_rounds(
    rng: np.random.Generator,
    rounds: int,
    runs: int = 10,
    *,
    machine_sd: float = 0.0,
    run_sd: float = 0.05,
    spikes: float = 0.0,
) -> dict[str, list[np.ndarray]]:
    """Runs of a baseline TRUE_SPEEDUP times slower than its SB, per round.

    Each round has one machine factor (lognormal, ``machine_sd``) that scales both turns of
    the round alike, each run its own lognormal noise, and a share ``spikes`` of runs are
    slowed by 1 + Exp(1) (preemption). The population median of the baseline's runs is then
    exactly TRUE_SPEEDUP x the SB's.
    """
    base, sb = [], []
    for _ in range(rounds):
        factor = rng.lognormal(0, machine_sd)
        for side, scale in ((base, TRUE_SPEEDUP), (sb, 1.0)):
            t = scale * factor * rng.lognormal(0, run_sd, runs)
            hit = rng.random(runs) < spikes
            t[hit] *= 1 + rng.exponential(1.0, hit.sum())
            side.append(t)
    return {"base": base, "sb": sb}


def speedup_interval(data: dict[str, list[np.ndarray]], seed: int = 0, resamples: int = 1000) -> Interval:
    boot = bootstrap_rounds(data, [("base", "sb")], resamples=resamples, seed=seed)
    assert boot is not None
    return boot.ratios[("base", "sb")]


@pytest.mark.parametrize(("machine_sd", "spikes"), [(0.0, 0.0), (0.02, 0.05)])
def test_the_speedup_interval_covers_the_true_ratio_at_about_its_nominal_rate(machine_sd: float, spikes: float) -> None:
    rng = np.random.default_rng(1)
    trials = 200
    hits = sum(
        speedup_interval(paired_rounds(rng, 20, machine_sd=machine_sd, spikes=spikes), seed=i).contains(TRUE_SPEEDUP)
        for i in range(trials)
    )
    # 95% nominal; a percentile bootstrap of medians from 20 rounds runs a little under (iid runs, 0.93 here) or over it.
    assert 0.88 <= hits / trials <= 0.99, hits / trials


def test_the_interval_narrows_with_more_turns() -> None:
    rng = np.random.default_rng(2)
    widths = {
        n: np.mean(
            [speedup_interval(paired_rounds(rng, n), seed=i, resamples=500).halfwidth(TRUE_SPEEDUP) for i in range(30)]
        )
        for n in (10, 40, 160)
    }
    assert widths[160] < widths[40] < widths[10]
    assert 0.35 < widths[40] / widths[10] < 0.7  # about 1/sqrt(4): the interval shrinks like 1/sqrt(turns)
    assert 0.35 < widths[160] / widths[40] < 0.7


def test_turns_are_resampled_together_so_machine_drift_cancels_in_the_ratio() -> None:
    # Strong round-to-round machine drift (sd 30%) and little run noise: each median alone is
    # unsure, their ratio in the same resample is not.
    data = paired_rounds(np.random.default_rng(3), 30, machine_sd=0.3, run_sd=0.02)
    boot = bootstrap_rounds(data, [("base", "sb")], seed=0)
    assert boot is not None
    speedup = float(np.median(np.concatenate(data["base"])) / np.median(np.concatenate(data["sb"])))
    assert boot.medians["sb"].halfwidth(float(np.median(np.concatenate(data["sb"])))) > 0.05
    assert boot.ratios[("base", "sb")].halfwidth(speedup) < 0.02
    assert boot.ratios[("base", "sb")].contains(TRUE_SPEEDUP)


def test_seeded_and_deterministic() -> None:
    data = paired_rounds(np.random.default_rng(4), 12)
    assert speedup_interval(data, seed=7) == speedup_interval(data, seed=7)
    assert speedup_interval(data, seed=7) != speedup_interval(data, seed=8)


def test_too_few_rounds_give_no_interval_and_bad_input_is_refused() -> None:
    data = paired_rounds(np.random.default_rng(5), MIN_ROUNDS_FOR_INTERVAL - 1)
    assert bootstrap_rounds(data, [("base", "sb")]) is None
    assert (
        bootstrap_rounds(paired_rounds(np.random.default_rng(5), MIN_ROUNDS_FOR_INTERVAL), [("base", "sb")]) is not None
    )
    with pytest.raises(ValueError, match="same number of rounds"):
        bootstrap_rounds({"a": [[1.0]] * 9, "b": [[1.0]] * 10})
    with pytest.raises(ValueError, match="without timed runs"):
        bootstrap_rounds({"a": [[1.0]] * 8 + [[]]})


@pytest.mark.parametrize("rounds", [1, 7, 30, 400])
def test_weighted_median_equals_numpy_median_of_the_resample(rounds: int) -> None:
    # 400 rounds of 10 runs: the scanned band (+-8 sqrt(sum of squared turn lengths) = +-1600 ranks)
    # is narrower than the 4000 runs, so both the band and the fall-back over all runs are exercised.
    rng = np.random.default_rng(rounds)
    turns = [
        rng.lognormal(0, 1, rng.integers(1, 12) if rounds < 400 else 10) * (50 if rng.random() < 0.3 else 1)
        for _ in range(rounds)
    ]
    values, owner = np.concatenate(turns), np.concatenate([[r] * len(t) for r, t in enumerate(turns)])
    order = np.argsort(values)
    weights = rng.integers(0, 3, size=(16, rounds))
    weights[:, 0] += 1
    slowest = np.argsort([np.median(t) for t in turns])[-max(1, rounds // 20) :]
    weights[:8] = 0  # draws of only the slowest rounds: the median lies far above the middle band
    weights[:8, slowest] = 3
    got = stats._weighted_medians(values[order], owner[order], weights)
    expected = [np.median(np.concatenate([np.repeat(t, k) for t, k in zip(turns, row)])) for row in weights]
    np.testing.assert_allclose(got, expected, rtol=0, atol=0)


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([2.0, 2.0, 2.0]) == 0.0
    assert coefficient_of_variation([1.0]) == 0.0
    assert coefficient_of_variation([1.0, 3.0]) == pytest.approx(np.std([1.0, 3.0], ddof=1) / 2.0)


def test_interval_helpers() -> None:
    iv = Interval(0.9, 1.1, 0.95)
    assert iv.contains(1.0) and not iv.contains(1.2)
    assert iv.halfwidth(1.0) == pytest.approx(0.1)
    assert iv.scaled(0.5) == Interval(0.45, 0.55, 0.95)
