"""The settings block of a bench report (sbdeploy.bench.run.bench_settings): what it says about how each backend computed."""

from __future__ import annotations

from sbdeploy.backends.ort import TF32_NOTES
from sbdeploy.bench.run import bench_settings
from sbdeploy.bench.timing import TimingPlan


def test_gpu_onnx_backends_say_how_their_fp32_runs_computed() -> None:
    """ort-cuda is timed with TF32 off (use_tf32=0), as validate judges it; ort-trt with TF32 on, which it cannot clear."""
    settings = bench_settings(
        [],
        ["torch", "ort-cpu", "ort-cuda", "ort-trt"],
        [1],
        ["fp32", "fp16"],
        TimingPlan(),
        None,
        None,
        False,
        ["given note"],
    )
    assert settings["notes"] == ["given note", TF32_NOTES["ort-cuda"], TF32_NOTES["ort-trt"]]
    assert "use_tf32=0" in TF32_NOTES["ort-cuda"] and "TF32 tolerance" in TF32_NOTES["ort-trt"]
    assert (
        bench_settings([], ["ort-cuda"], [1], ["fp16"], TimingPlan(), None, None, False, [])["notes"] == []
    )  # no fp32 run
    assert bench_settings([], ["ort-cpu"], [1], ["fp32"], TimingPlan(), None, None, False, [])["notes"] == []
