"""The settings block of a bench report (sbdeploy.bench.run.bench_subjects): what it says about how each backend computed;
the MACs of a given file (subjects_from_files), by its metadata."""

from __future__ import annotations

from pathlib import Path

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


def test_a_mixed_networks_file_is_counted_with_its_placement(tmp_path: Path) -> None:
    from sbdeploy.bench.run import subjects_from_files
    from sbdeploy.export.onnx_export import export_onnx
    from sbdeploy.flops import count_macs
    from sbdeploy.models import create_model

    options = {"sampling": "single", "sb_stages": [2]}
    export_onnx("cifar_resnet20_sb", tmp_path / "mixed.onnx", input_size=(16, 16), options=options)
    (subject,) = subjects_from_files([tmp_path / "mixed.onnx"], ["ort-cpu"], [1])
    mixed, every = (
        count_macs(create_model("cifar_resnet20_sb", **o), (16, 16)) for o in (options, {"sampling": "single"})
    )
    assert subject.macs == mixed > every  # the file's metadata carries the placement into the MAC count
