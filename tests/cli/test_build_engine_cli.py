"""``sbdeploy build-engine`` and ``sbdeploy doctor`` in a subprocess: clear refusals without TensorRT, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbdeploy import environment
from sbdeploy.backends.tensorrt._compat import tensorrt_available
from sbdeploy.environment import NO_TENSORRT
from tests.backends.conftest import export_for_tests
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sbdeploy

    model = sbdeploy.create_model("cifar_resnet20", num_classes=10).eval()
    return export_for_tests(model, tmp_path_factory.mktemp("cli") / "r20.onnx")


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")
def test_without_tensorrt_one_sentence(onnx_file: Path, tmp_path: Path) -> None:
    result = run_cli("build-engine", str(onnx_file), "--fp16", "-o", str(tmp_path / "r20.engine"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {NO_TENSORRT}"
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fp16", "--int8"], "choose one of --fp16 and --int8"),
        (["--min-batch", "8", "--opt-batch", "4"], "1 <= min <= opt <= max"),
        (["--int8"], "--int8 needs calibration data"),
    ],
)
def test_bad_options(onnx_file: Path, args: list[str], message: str) -> None:
    result = run_cli("build-engine", str(onnx_file), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_corrupt_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    result = run_cli("build-engine", str(bad))
    assert result.returncode == 2 and "not a readable ONNX model" in result.stderr and "Traceback" not in result.stderr


def test_doctor_json_matches_this_machine() -> None:
    import onnxruntime

    result = run_cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["onnxruntime"] == onnxruntime.__version__
    assert report["ort_providers"] == onnxruntime.get_available_providers()
    backends = {b["name"]: b for b in report["backends"]}
    assert set(backends) == {"torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "trt", "ov-cpu"}
    assert backends["ort-cpu"]["available"] and backends["torch"]["available"]
    assert backends["ov-cpu"]["available"] == (report["openvino"] is not None)
    assert backends["trt"]["available"] == environment.gpu_stack().trt_ready
    if not tensorrt_available():
        assert report["tensorrt"] is None and backends["trt"]["reason"] == NO_TENSORRT


def test_doctor_table() -> None:
    result = run_cli("doctor")
    assert result.returncode == 0, result.stderr
    for word in (
        "onnxruntime",
        "tensorrt",
        "pycuda",
        "ort-cpu",
        "trt",
        "sbdeploy[gpu]" if not tensorrt_available() else "TensorRT",
    ):
        assert word in result.stdout
