"""The int8 artifact of the shipped SB model, per target form: validate's int8 gate on digits, top-1 within 1 point of fp32.

At the library level (the CLI's ``export --int8`` / ``validate`` wiring comes with the
table of deploy targets): the shipped ``models/digits_resnet20_sb`` is exported in each
target's form, quantized by the target's recipe (``ort-cpu``: :data:`ORT_CPU_INT8`, the
``strided`` form of ``ort-cuda``/``trt``: :data:`TRT_INT8`, run here on ONNX Runtime CPU)
and calibrated on 256 digits training images, then :func:`sbdeploy.validate.run.validate`
runs PyTorch and the artifact on validate's random batches and the digits test split.
The canonical grouped form with the TensorRT recipe is ``tests/passes/test_precision.py``.

What is asserted of validate's report: every check on the test split passes (per-sample
cosine >= 0.98, top-1 agreement >= 90%), int8 top-1 accuracy is within 1 point of PyTorch's
fp32, and on the random batches the cosine criterion holds. Top-1 agreement on the random
batches is not asserted: standard-normal noise lies outside the calibration range (real
digits), the trained model's predictions on it are near ties, and with batches of 1, 2 and
8 one flipped sample is 50% or 12.5% (measured: one flip in ``random b2`` on every form).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from sbdeploy.backends.ort import OrtRunner
from sbdeploy.checkpoint import load_checkpoint
from sbdeploy.data import open_source, to_float
from sbdeploy.export import export_module
from sbdeploy.passes.int8 import ORT_CPU_INT8, TRT_INT8, Int8Recipe, quantize_int8
from sbdeploy.validate.compare import DEFAULT_TOLERANCES
from sbdeploy.validate.run import dataset_case, normalize, onnx_artifact, validate

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "digits_resnet20_sb"

TARGETS: dict[str, tuple[str, str | int, Int8Recipe]] = {
    "ort-cpu": ("ort-cpu", "dynamic", ORT_CPU_INT8),
    "ort-cpu-b1": ("ort-cpu", 1, ORT_CPU_INT8),
    "trt": ("trt", "dynamic", TRT_INT8),  # the strided form ort-cuda shares
}
"""Case -> (export target, batch, recipe)."""


@pytest.fixture(scope="module")
def shipped():  # noqa: ANN201
    if not SHIPPED.is_dir():
        pytest.skip(f"{SHIPPED} is not in this checkout")
    ckpt = load_checkpoint(SHIPPED)
    data = open_source("digits", size=ckpt.config.input_size[0])
    calibration = normalize(to_float(data.train_images[:256]).numpy(), ckpt.config.mean, ckpt.config.std)
    return ckpt, calibration, dataset_case("digits", ckpt.config)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TARGETS))
def test_shipped_sb_int8_passes_the_gate_and_keeps_top1(case: str, shipped, tmp_path: Path) -> None:  # noqa: ANN001
    ckpt, calibration, test = shipped
    target, batch, recipe = TARGETS[case]
    cfg = ckpt.config
    fp32, _ = export_module(ckpt.model, in_chans=cfg.in_chans, input_size=cfg.input_size, batch=batch, target=target)
    path = tmp_path / "model.int8.onnx"
    onnx.save(quantize_int8(fp32, calibration, recipe=recipe), path)
    artifact = onnx_artifact(path)
    assert artifact.precision == "int8"
    report = validate(ckpt, [artifact], runner_factory=lambda a: OrtRunner(a.path, threads=2), dataset=test)

    on_test = [c for c in report.checks if c.case == test.name]
    assert on_test and all(c.passed for c in on_test), [c.reason for c in on_test]
    torch_top1, int8_top1 = (a.top1 for a in report.accuracy)
    assert torch_top1 > 0.95, "the shipped model is trained"
    assert abs(int8_top1 - torch_top1) <= 0.01, f"{case}: int8 top-1 {int8_top1:.2%} vs fp32 {torch_top1:.2%}"
    gate = DEFAULT_TOLERANCES["int8"]
    assert gate.min_cosine is not None
    random = [c for c in report.checks if c.case.startswith("random")]
    assert random and all(c.stats.min_cosine >= gate.min_cosine and c.stats.nonfinite == 0 for c in random)
