"""Time two given things as an SB/baseline pair: two callables, or two ONNX files on ONNX Runtime CPU.

The same method and report as ``sbdeploy bench``; a file against a copy of itself gives an interval holding 1.0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sbdeploy.backends import get_runner
from sbdeploy.backends.base import Runner
from sbdeploy.bench.report import BenchGroup, BenchReport, group_rows, judged, pairs_of
from sbdeploy.bench.stability import Limits
from sbdeploy.bench.timing import RoundStatus, TimedFn, TimingPlan, measure_group
from sbdeploy.environment import collect_environment
from sbdeploy.errors import ConfigError


def bench_pair(
    sb: TimedFn,
    baseline: TimedFn,
    *,
    sb_macs: int,
    baseline_macs: int,
    names: tuple[str, str] = ("sb", "baseline"),
    backend: str = "callable",
    batch: int = 1,
    plan: TimingPlan = TimingPlan(),
    on_round: Callable[[RoundStatus], None] | None = None,
) -> BenchReport:
    """Time ``sb`` against ``baseline`` (each runs one inference) interleaved; one report with both rows, the
    speedup's interval and flags. ``names`` label the rows (SB first); ``backend`` and ``batch`` say what ran."""
    sb_name, base_name = names
    if sb_name == base_name:
        raise ConfigError(f"the two sides of a pair need different names, got {sb_name!r} twice")
    if sb_macs <= 0 or baseline_macs <= 0:
        raise ConfigError(f"MAC counts must be positive, got {sb_macs} and {baseline_macs}")
    models = {sb_name: (sb_macs, base_name), base_name: (baseline_macs, None)}
    result = measure_group({sb_name: sb, base_name: baseline}, plan, pairs=pairs_of(models), on_round=on_round)
    groups = [BenchGroup.of(backend, batch, result.record, Limits.of(plan))]
    rows = judged(group_rows(result, backend=backend, batch=batch, models=models), groups, Limits.of(plan))
    settings = {
        "models": [sb_name, base_name],
        "backends": [backend],
        "batches": [batch],
        **plan.settings(),
        "notes": [],
    }
    return BenchReport(rows=rows, environment=collect_environment(), settings=settings, groups=groups)


def _random_feed(runner: Runner, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs for every input of an active runner, its dynamic dimensions set to ``batch``."""
    return {
        spec.name: rng.standard_normal(tuple(batch if d is None else d for d in spec.shape)).astype(spec.dtype)
        for spec in runner.input_specs()
    }


def bench_onnx_pair(
    sb: str | Path,
    baseline: str | Path,
    *,
    sb_macs: int,
    baseline_macs: int,
    batch: int = 1,
    threads: int | None = None,
    plan: TimingPlan = TimingPlan(),
    on_round: Callable[[RoundStatus], None] | None = None,
) -> BenchReport:
    """:func:`bench_pair` on two ONNX files on ``ort-cpu``, fed the same random input; rows labelled by file name."""
    sb, baseline = Path(sb), Path(baseline)
    names = (sb.name, baseline.name) if sb.name != baseline.name else (str(sb), str(baseline))
    options = {"threads": threads} if threads else {}
    rng = np.random.default_rng(0)
    with get_runner("ort-cpu", sb, **options) as sb_runner, get_runner("ort-cpu", baseline, **options) as base_runner:
        feed = _random_feed(sb_runner, batch, rng)
        base_feed = (
            feed if base_runner.input_specs() == sb_runner.input_specs() else _random_feed(base_runner, batch, rng)
        )
        return bench_pair(
            sb_runner.timed_call(feed),
            base_runner.timed_call(base_feed),
            sb_macs=sb_macs,
            baseline_macs=baseline_macs,
            names=names,
            backend="ort-cpu",
            batch=batch,
            plan=plan,
            on_round=on_round,
        )
