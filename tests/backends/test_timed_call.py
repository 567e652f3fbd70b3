"""``Runner.timed_call`` on the CPU backends, for real: the callable runs the feed, checks it once, and feeds the timing loop.

The IOBinding path that times the ONNX Runtime GPU providers (:meth:`OrtRunner.bound_call`)
is the same code with the buffers on the CPU here, so it is checked against ``infer``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from sbdeploy.backends import get_runner
from sbdeploy.bench.timing import TimingPlan, measure_interleaved
from sbdeploy.errors import InputError


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, 32), dtype=np.float32)


@pytest.mark.slow
def test_cpu_runners_time_end_to_end_without_compute_time(sb_model: nn.Module, sb_onnx: Path) -> None:
    with get_runner("torch", sb_model) as torch_runner, get_runner("ort-cpu", sb_onnx, threads=1) as ort_runner:
        calls = {"torch": torch_runner.timed_call({"input": _x(2)}), "ort-cpu": ort_runner.timed_call({"input": _x(2)})}
        assert all(call() is None for call in calls.values())
        stats = measure_interleaved(calls, TimingPlan(warmup_iters=1, iters=3))
    for s in stats.values():
        assert s.runs == 3 and s.median_ms > 0 and s.compute_median_ms is None


def test_timed_call_checks_the_feed_once_up_front(sb_model: nn.Module, sb_onnx: Path) -> None:
    for kind, artifact in (("torch", sb_model), ("ort-cpu", sb_onnx)):
        with get_runner(kind, artifact) as runner:
            with pytest.raises(InputError, match="dtype float64"):
                runner.timed_call({"input": _x(1).astype(np.float64)})
            with pytest.raises(InputError, match="missing"):
                runner.timed_call({"x": _x(1)})


def test_ort_bound_call_matches_infer_and_reports_the_bound_run(sb_onnx: Path) -> None:
    with get_runner("ort-cpu", sb_onnx, threads=1) as runner:
        for batch, seed in ((1, 1), (3, 2)):
            feed = {"input": _x(batch, seed)}
            run, outputs = runner.bound_call(feed, device="cpu")
            compute_ms = run()
            assert isinstance(compute_ms, float) and compute_ms > 0
            np.testing.assert_array_equal(outputs()["logits"], runner.infer(feed)["logits"])
        with pytest.raises(InputError, match="shape"):
            runner.bound_call({"input": _x(1)[:, :, :16]}, device="cpu")


def test_timed_call_needs_an_active_runner(sb_onnx: Path) -> None:
    runner = get_runner("ort-cpu", sb_onnx)
    with pytest.raises(RuntimeError, match="with"):
        runner.timed_call({"input": _x(1)})
