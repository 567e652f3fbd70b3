"""The int8 artifact of the shipped SB model, per target: validate's int8 gate on digits, top-1 within 1 point of fp32.

``models/digits_resnet20_sb`` (trained on digits, PyTorch fp32 top-1 98.6% on the 359 test
images) is made int8 the way users make it: its own dataset's training images as
calibration (the default), each target's recipe (:attr:`sbdeploy.targets.Target.int8`),
through :mod:`sbdeploy.artifacts`. validate then runs PyTorch and the file on its random
batches and the digits test split; int8 is judged on the test split (per-sample cosine
>= 0.98, top-1 agreement >= 90%), its random-batch runs are reported, not judged.

* ``ort-cpu`` at batch 1 (the stacked layout, :data:`~sbdeploy.int8_recipe.ORT_CPU_INT8`)
  through the CLI in subprocesses: ``sbdeploy export --int8 --target ort-cpu`` then
  ``sbdeploy validate --onnx``, as a user runs them;
* ``ort-cpu`` at batch 8 (the phase layout), ``trt`` (the strided form, with
  :data:`~sbdeploy.int8_recipe.TRT_INT8`: the same graph ``ort-cuda`` gets, asserted) and
  the canonical ``grouped`` and the ``separate`` forms at the library level, run on ONNX Runtime CPU;
* the TensorRT engine built from the ``trt`` int8 file (``gpu``: skipped elsewhere).

Each case makes one artifact (module fixtures) on 64 calibration images: the CI cost is one
export and one quantization per target.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbdeploy.artifacts import make_artifacts, plan_artifacts
from sbdeploy.backends import get_runner
from sbdeploy.calibration import load_calibration
from sbdeploy.checkpoint import load_checkpoint
from sbdeploy.sources import resolve_source
from sbdeploy.targets import get_target
from sbdeploy.tolerance import DEFAULT_TOLERANCES
from sbdeploy.validate.run import artifact_of, dataset_case, validate
from tests.conftest import REPO, run_cli

SHIPPED = REPO / "models" / "digits_resnet20_sb"
CALIBRATION_IMAGES = 64

LIBRARY_CASES = {
    "ort-cpu b8": ("ort-cpu", 8),
    "trt": ("trt", 1),
    "grouped": ("grouped", 1),
    "separate": ("separate", 1),
}
"""Case -> (target, batch planned: ort-cpu's files have a fixed batch, 8 takes the phase layout; the others are dynamic)."""


def assert_int8_gate_and_top1(report: dict, case: str) -> None:
    """The int8 file passed validate on the test split, and its top-1 is within 1 point of PyTorch's fp32."""
    test = [c for c in report["checks"] if c["case"] == "digits test"]
    assert report["passed"] and test and all(c["passed"] and c["judged"] for c in test), [c["reason"] for c in test]
    assert {c["precision"] for c in report["checks"]} == {"int8"} and all(
        c["tolerance"] == DEFAULT_TOLERANCES["int8"].describe() for c in report["checks"]
    )
    assert all(not c["judged"] for c in report["checks"] if c["case"].startswith("random"))
    torch_top1, int8_top1 = (a["top1"] for a in report["accuracy"])
    assert torch_top1 > 0.95, "the shipped model is trained"
    assert abs(int8_top1 - torch_top1) <= 0.01, f"{case}: int8 top-1 {int8_top1:.2%} vs fp32 {torch_top1:.2%}"
    assert min(c["stats"]["top1_agreement"] for c in test) >= 0.97, (
        f"{case}: int8 and PyTorch disagree on over 3% of the digits"
    )


@pytest.fixture(scope="module")
def shipped():  # noqa: ANN201
    if not SHIPPED.is_dir():
        pytest.skip(f"{SHIPPED} is not in this checkout")
    return load_checkpoint(SHIPPED)


@pytest.mark.slow
def test_ort_cpu_int8_through_the_cli(shipped, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "model.ort-cpu.b1.int8.onnx"
    done = run_cli("export", str(SHIPPED), "--int8", "--target", "ort-cpu", "--batch", "1", "--json", "-o", str(out))
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)["metadata"]
    recipe = "fused" if "kernels" in meta else "ort-cpu"  # the fused form's SB nodes where the library is built
    assert meta["precision"] == "int8" and meta["target"] == "ort-cpu" and meta["int8"]["recipe"] == recipe
    assert meta["int8"]["calibration"] == {
        "source": "digits",
        "kind": "data",
        "images": 256,
        "split": "train split",
    }  # the default
    checked = run_cli("validate", str(SHIPPED), "--onnx", str(out), "--report", str(tmp_path / "report"), "--json")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr
    report = json.loads(checked.stdout)
    assert (
        report["artifacts"][0]["sha256"] == json.loads(done.stdout)["sha256"]
    )  # the file validated is the file written
    assert_int8_gate_and_top1(report, "ort-cpu b1 (CLI)")
    markdown = (tmp_path / "report" / "validate.md").read_text()
    assert "| ort-cpu int8 | digits test | 359 |" in markdown and "int8 is judged on real images" in markdown


@pytest.mark.slow
def test_validate_int8_makes_and_judges_fp32_and_int8_side_by_side(shipped, tmp_path: Path) -> None:  # noqa: ANN001
    """``validate CKPT --int8`` without files: the fp32 and int8 files bench would time, int8 accuracy next to fp32's in validate.md."""
    report_dir = tmp_path / "report"
    done = run_cli(
        "validate",
        str(SHIPPED),
        "--int8",
        "--batch",
        "1",
        "--limit",
        "96",
        "--artifacts",
        str(tmp_path / "files"),
        "--report",
        str(report_dir),
        "--json",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    report = json.loads(done.stdout)
    assert {(c["file"], c["precision"]) for c in report["checks"]} == {
        ("model.ort-cpu.b1.fp32.onnx", "fp32"),
        ("model.ort-cpu.b1.int8.onnx", "int8"),
    }
    top1 = {a["file"]: a["top1"] for a in report["accuracy"]}
    assert abs(top1["model.ort-cpu.b1.int8.onnx"] - top1["model.ort-cpu.b1.fp32.onnx"]) <= 0.01 and top1[None] > 0.95
    rows = [line for line in (report_dir / "validate.md").read_text().splitlines() if "| digits test | 96 |" in line]
    assert [("fp32" in r, "int8" in r) for r in rows] == [
        (False, False),
        (True, False),
        (False, True),
    ]  # PyTorch, fp32, int8


@pytest.fixture(scope="module", params=list(LIBRARY_CASES))
def library_artifact(request: pytest.FixtureRequest, shipped, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    target, batch = LIBRARY_CASES[request.param]
    backend = get_target(target).backends[0] if target != "trt" else "ort-trt"
    plans, _ = plan_artifacts([("sb", "model")], [backend], [batch], precisions=("int8",), target=target)
    plans = [p for p in plans if p.kind == "onnx"]  # the trt target's engine is built below, on a GPU
    calibration = load_calibration(None, shipped.config, limit=CALIBRATION_IMAGES)
    folder = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    made = make_artifacts(plans, {"sb": resolve_source(SHIPPED)}, folder, calibration={"sb": calibration})
    (file,) = made.values()
    return request.param, file


@pytest.mark.slow
def test_every_targets_int8_artifact_passes_the_gate(library_artifact, shipped) -> None:  # noqa: ANN001
    case, file = library_artifact
    recipe = "fused" if file.uses_kernels else get_target(file.target).int8.name  # ort-cpu's fused SB nodes
    assert file.precision == "int8" and file.metadata["int8"]["recipe"] == recipe
    if file.target == "trt":  # ort-cuda takes the same form, passes and recipe: the same graph
        cuda, trt = get_target("ort-cuda"), get_target("trt")
        assert (cuda.form, cuda.passes, cuda.int8) == (trt.form, trt.passes, trt.int8)
    dataset = dataset_case("digits", shipped.config)
    report = validate(
        shipped, [artifact_of(file, "ort-cpu")], runner_factory=lambda a: get_runner(a.backend, a.path), dataset=dataset
    )
    assert_int8_gate_and_top1(report.to_dict(), case)


@pytest.mark.gpu
def test_the_tensorrt_int8_engine_of_the_shipped_model(shipped, tmp_path: Path) -> None:  # noqa: ANN001
    from sbdeploy import environment

    stack = environment.gpu_stack()
    if not stack.trt_ready:
        pytest.skip(f"a TensorRT int8 engine needs TensorRT, pycuda and an NVIDIA GPU: {stack.why_not_trt()}")
    plans, _ = plan_artifacts([("sb", "model")], ["trt"], [1, 8], precisions=("int8",))
    calibration = load_calibration(None, shipped.config, limit=CALIBRATION_IMAGES)
    made = make_artifacts(plans, {"sb": resolve_source(SHIPPED)}, tmp_path, calibration={"sb": calibration})
    engine = made["model.trt.int8.engine"]
    assert engine.kind == "engine" and engine.precision == "int8"
    report = validate(
        shipped,
        [artifact_of(engine)],
        runner_factory=lambda a: get_runner(a.backend, a.path),
        dataset=dataset_case("digits", shipped.config),
    )
    assert_int8_gate_and_top1(report.to_dict(), "trt engine")
