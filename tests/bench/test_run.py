"""The settings block of a bench report (sbdeploy.bench.run.bench_subjects): what it says about how each backend computed."""

from __future__ import annotations

from pathlib import Path

from sbdeploy.backends import get_runner
from sbdeploy.backends.ort import SPIN_S, TF32_NOTES, SessionSettings
from sbdeploy.bench.run import bench_subjects, fair_plan
from sbdeploy.bench.timing import TimingPlan


def _notes(backends: list[str], precisions: list[str], notes: tuple[str, ...] = ()) -> object:
    report = bench_subjects([], backends=backends, batches=[1], precisions=precisions, plan=TimingPlan(), notes=notes)
    return report.settings["notes"]


def test_gpu_onnx_backends_say_how_their_fp32_runs_computed() -> None:
    """ort-cuda is timed with TF32 off (use_tf32=0), as validate judges it; ort-trt with TF32 on, which it cannot clear."""
    notes = _notes(["torch", "ort-cpu", "ort-cuda", "ort-trt"], ["fp32", "fp16"], ("given note",))
    assert notes == ["given note", TF32_NOTES["ort-cuda"], TF32_NOTES["ort-trt"]]
    assert "use_tf32=0" in TF32_NOTES["ort-cuda"] and "TF32 tolerance" in TF32_NOTES["ort-trt"]
    assert _notes(["ort-cuda"], ["fp16"]) == []  # no fp32 run
    assert _notes(["ort-cpu"], ["fp32"]) == []


def test_interleaved_spinning_ort_sessions_settle_for_their_spin(tiny_onnx: Path) -> None:
    spinning, quiet = (SessionSettings(intra_op_threads=2, threads=2, spinning=s) for s in (True, False))
    with get_runner("ort-cpu", tiny_onnx, session=spinning) as a, get_runner("ort-cpu", tiny_onnx, session=quiet) as b:
        assert (a.idle_spin_s, b.idle_spin_s) == (SPIN_S, 0.0)
        assert fair_plan(TimingPlan(), [a, b]).settle_s == SPIN_S  # the longest spin of the group
        assert fair_plan(TimingPlan(), [a]).settle_s == 0.0  # alone: its own spin is what it costs deployed
        assert fair_plan(TimingPlan(), [b, b]).settle_s == 0.0
    with get_runner("ort-cpu", tiny_onnx, session=SessionSettings(intra_op_threads=1, threads=1)) as one:
        assert one.idle_spin_s == 0.0  # one thread: no pool worker to spin
