"""`sbdeploy triton-repo` run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.serve._artifacts import fake_engine, tiny_onnx


def test_writes_a_repository(tmp_path: Path) -> None:
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx")
    engine = fake_engine(tmp_path / "tiny_trt.engine", [(1, 4, 8)])
    out = tmp_path / "repo"
    result = run_cli(
        "triton-repo",
        str(onnx_path),
        str(engine),
        "--out",
        str(out),
        "--preferred-batch",
        "2",
        "--preferred-batch",
        "4",
        "--instances",
        "2",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(m["name"], m["platform"], m["max_batch_size"]) for m in report["models"]] == [
        ("tiny", "onnxruntime_onnx", 32),
        ("tiny_trt", "tensorrt_plan", 8),
    ]
    for name, model_file in (("tiny", "model.onnx"), ("tiny_trt", "model.plan")):
        assert (out / name / "config.pbtxt").is_file() and (out / name / "1" / model_file).is_file()
    if report["validated_with"] is None:
        pytest.skip("tritonclient absent: the configs were written but not checked")
    assert "preferred_batch_size: [ 2, 4 ]" in (out / "tiny_trt" / "config.pbtxt").read_text()


def test_check_with_triton(tmp_path: Path) -> None:
    from sbdeploy.serve.pytriton_server import find_pytriton_python

    if find_pytriton_python() is None:
        pytest.skip("no PyTriton interpreter: run `bash scripts/setup.sh --with-triton` (makes .venv-triton)")
    engine = fake_engine(tmp_path / "m.engine", [(1, 8, 16)])
    result = run_cli("triton-repo", str(engine), "--out", str(tmp_path / "repo"), "--check-with-triton", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accepted_by_tritonserver"] == ["m"]


def test_max_batch_beyond_the_profile_is_one_clear_error(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path / "m.engine", [(1, 8, 16)])
    result = run_cli("triton-repo", str(engine), "--out", str(tmp_path / "repo"), "--max-batch", "64")
    assert result.returncode == 2
    assert "--max-batch 64 is outside" in result.stderr and "1..16" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "repo").exists()


def test_missing_sidecar_is_one_clear_error(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path / "m.engine", [(1, 8, 16)])
    engine.with_name("m.engine.json").unlink()
    result = run_cli("triton-repo", str(engine), "--out", str(tmp_path / "repo"))
    assert result.returncode == 2 and "sidecar m.engine.json is missing" in result.stderr
    assert "Traceback" not in result.stderr


def _without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`sbdeploy ARGS` in a process where importing ``modules`` fails as it does when they are not installed."""
    code = f"import sys\nfor m in {modules!r}: sys.modules[m] = None\nfrom sbdeploy.cli import main\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_says_once_that_the_configs_were_checked(tmp_path: Path) -> None:
    pytest.importorskip(
        "tritonclient.grpc.model_config_pb2", reason="tritonclient absent: pip install 'sbdeploy[serve]'"
    )
    result = run_cli("triton-repo", str(tiny_onnx(tmp_path / "tiny.onnx")), "--out", str(tmp_path / "repo"))
    assert result.returncode == 0, result.stderr
    assert "configs checked against tritonclient" in result.stdout
    assert "not checked" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("blocked", "hint"),
    [(["grpc"], "pip install 'tritonclient[grpc]'"), (["tritonclient"], "pip install 'sbdeploy[serve]'")],
    ids=["tritonclient without grpc", "no tritonclient"],
)
def test_without_tritonclient_grpc_one_line_says_what_to_install(tmp_path: Path, blocked: list[str], hint: str) -> None:
    out = tmp_path / "repo"
    result = _without(blocked, "triton-repo", str(tiny_onnx(tmp_path / "tiny.onnx")), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: configs not checked") and hint in lines[0], result.stderr
    assert "configs checked" not in result.stdout
    assert hint in (out / "tiny" / "README.md").read_text()  # the model folder says it too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--onnx-backend", "tvm"], "--onnx-backend must be onnxruntime or openvino"),
        (["--bf16"], "serves none of these: add --onnx-backend openvino"),
        (["--onnx-backend", "openvino", "--onnx-device", "gpu"], "CPU instances only"),
    ],
    ids=["unknown backend", "bf16 without openvino", "openvino on gpu"],
)
def test_openvino_options_refused_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("triton-repo", str(tiny_onnx(tmp_path / "tiny.onnx")), "--out", str(tmp_path / "repo"), *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "repo").exists()


def test_openvino_json_names_the_backend(tmp_path: Path) -> None:
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx", batch=1)
    result = run_cli(
        "triton-repo", str(onnx_path), "--out", str(tmp_path / "repo"), "--onnx-backend", "openvino", "--json"
    )
    assert result.returncode == 0, result.stderr
    (model,) = json.loads(result.stdout)["models"]
    assert model["platform"] == "openvino" and any("inference threads" in n for n in model["notes"])
