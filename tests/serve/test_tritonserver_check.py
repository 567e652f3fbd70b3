"""A real Triton (PyTriton's bundled tritonserver) reads and validates the configs triton-repo writes.

Triton validates each config.pbtxt when it polls the repository, before it looks for
the backend; the bundled server has no TensorRT/ONNX Runtime backend, so "accepted"
means the config passed Triton's own checks. Skipped without the PyTriton interpreter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sbdeploy.serve.pytriton_server import check_with_tritonserver, find_pytriton_python
from sbdeploy.serve.triton_repo import TritonOptions, write_triton_repo
from tests.serve._artifacts import fake_engine, tiny_onnx

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient absent: pip install sbdeploy[serve]")
if find_pytriton_python() is None:
    pytest.skip(
        "no PyTriton interpreter: run `bash scripts/setup.sh --with-triton` (makes .venv-triton) or set SBDEPLOY_PYTRITON_PYTHON",
        allow_module_level=True,
    )


def test_triton_accepts_every_kind_of_generated_config(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_triton_repo(
        [fake_engine(tmp_path / "engine.engine", [(1, 2, 4), (5, 8, 16)]), tiny_onnx(tmp_path / "dynamic.onnx")],
        repo,
        options=TritonOptions(instances=2, preferred_batch=(2, 4)),
    )
    write_triton_repo([tiny_onnx(tmp_path / "fixed.onnx", batch=3)], repo)  # max_batch_size 0, no batching
    write_triton_repo(
        [tiny_onnx(tmp_path / "half.onnx", fp16=True)], repo, name="fp16", options=TritonOptions(onnx_trt_fp16=True)
    )
    write_triton_repo([tmp_path / "engine.engine"], repo, name="unbatched", options=TritonOptions(max_batch=0))
    openvino = TritonOptions(onnx_backend="openvino", bf16=True, threads=2, max_batch=4)
    write_triton_repo([tmp_path / "dynamic.onnx"], repo, name="openvino", options=openvino)
    assert check_with_tritonserver(repo) == {
        "dynamic": None,
        "engine": None,
        "fixed": None,
        "fp16": None,
        "openvino": None,
        "unbatched": None,
    }


def test_triton_refuses_a_config_we_would_refuse(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    folder = (
        write_triton_repo([tiny_onnx(tmp_path / "m.onnx")], repo, options=TritonOptions(max_batch=8)).models[0].folder
    )
    config = folder / "config.pbtxt"
    config.write_text(config.read_text().replace("max_queue_delay_microseconds: 100", "preferred_batch_size: [ 64 ]"))
    verdict = check_with_tritonserver(repo)["m"]
    assert verdict is not None and "preferred size must be <= max batch size" in verdict
