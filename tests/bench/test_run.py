"""The settings block of a bench report (sbdeploy.bench.run.bench_subjects): what it says about how each backend computed."""

from __future__ import annotations

from sbdeploy.backends.ort import TF32_NOTES
from sbdeploy.bench.run import bench_subjects
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
