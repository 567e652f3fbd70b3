"""build_engine and the engine loading against a stand-in for TensorRT (tests/backends/fake_tensorrt.py).

TensorRT cannot run here, so these check what sbdeploy asks of it, on the code paths a
GPU machine takes: the parser gets the model's path (not its folder), TF32 is left on
(TensorRT's default) or cleared with ``--no-tf32`` and the choice lands in the sidecar,
a version-compatible plan is deserialized with ``engine_host_code_allowed`` set first
(for the read-back and for the runner), a read-back that fails stops the build instead
of writing ``{"unknown": 0}``, and the read-back parses the TensorRT 11 inspector schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sbdeploy import environment
from sbdeploy.backends.tensorrt import _compat
from sbdeploy.backends.tensorrt.builder import BuildOptions, build_engine
from sbdeploy.backends.tensorrt.sidecar import read_sidecar
from sbdeploy.errors import EngineBuildError
from tests.backends import fake_tensorrt

DATA = Path(__file__).resolve().parents[1] / "data" / "tensorrt"


def _stack(version: str) -> environment.GpuStack:
    return environment.GpuStack(
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        gpu_found_by="pycuda",
        driver="580.95.05",
        cuda_runtime="13.0",
        cuda_driver="13.0",
        torch_cuda=None,
        tensorrt=version,
        tensorrt_problem=None,
        pycuda="2025.1",
        pycuda_problem=None,
    )


@pytest.fixture(params=["10.13.0.35", "11.4.0.106"])
def fake_trt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> object:
    schema = "inspector_10x.json" if request.param.startswith("10.") else "inspector_11x.json"
    info = json.dumps(json.loads((DATA / schema).read_text())["engine_information"])
    module = fake_tensorrt.install(request.param, info)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(environment, "gpu_stack", lambda: _stack(request.param))
    return module


def _state() -> dict:
    return fake_tensorrt.STATE


def test_the_parser_gets_the_models_path(fake_trt: object, sb_onnx: Path, tmp_path: Path) -> None:
    build_engine(sb_onnx, tmp_path / "m.engine", BuildOptions(min_batch=1, opt_batch=4, max_batch=8))
    ((model, path),) = _state()["parse"]
    assert path == str(sb_onnx) and model[:2] == sb_onnx.read_bytes()[:2]


@pytest.mark.parametrize("tf32", [True, False])
def test_tf32_is_trtexecs_default_and_recorded(fake_trt: object, sb_onnx: Path, tmp_path: Path, tf32: bool) -> None:
    result = build_engine(sb_onnx, tmp_path / "m.engine", BuildOptions(tf32=tf32))
    assert (fake_tensorrt.BuilderFlag.TF32 in _state()["config"].flags) == tf32
    sidecar = read_sidecar(tmp_path / "m.engine")
    assert sidecar is not None and sidecar == result.sidecar
    assert sidecar.tf32 is tf32 and sidecar.builder_options["tf32"] is tf32


def test_read_back_parses_each_versions_inspector(fake_trt: object, sb_onnx: Path, tmp_path: Path) -> None:
    sidecar = build_engine(sb_onnx, tmp_path / "m.engine", BuildOptions()).sidecar
    assert "unknown" not in sidecar.actual_precisions or sidecar.built_on.tensorrt_version.startswith("10.")
    assert sum(sidecar.actual_precisions.values()) >= 4
    assert _state()["input_shapes"] == [("input", (8, 3, 32, 32))]  # the inspector's context is at the opt shape


def test_version_compatible_read_back_allows_host_code(fake_trt: object, sb_onnx: Path, tmp_path: Path) -> None:
    sidecar = build_engine(sb_onnx, tmp_path / "m.engine", BuildOptions(version_compatible=True)).sidecar
    assert fake_tensorrt.BuilderFlag.VERSION_COMPATIBLE in _state()["config"].flags
    assert _state()["deserialized"] == [True]  # engine_host_code_allowed was set before deserializing
    assert sum(sidecar.actual_precisions.values()) >= 4 and sidecar.actual_precisions != {"unknown": 0}


def test_a_failed_read_back_stops_the_build(
    fake_trt: object, sb_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_tensorrt.Builder, "build_serialized_network", lambda self, network, config: b"JUNK")
    with pytest.raises(EngineBuildError, match="cannot load the engine it just built"):
        build_engine(sb_onnx, tmp_path / "m.engine", BuildOptions())
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()


@pytest.mark.parametrize("version_compatible", [False, True])
def test_engines_are_deserialized_with_host_code_only_when_version_compatible(
    fake_trt: object, version_compatible: bool
) -> None:
    plan = b"VC-PLAN x" if version_compatible else b"PLAN x"
    messages: list[str] = []
    logger = _compat.make_logger(messages)
    runtime, engine = _compat.deserialize_engine(plan, logger, host_code=version_compatible)
    assert engine is not None and runtime.engine_host_code_allowed is version_compatible
    assert _state()["deserialized"] == [version_compatible]  # set before deserializing, not after


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_weights_stored_once_reach_the_parser_as_initializers(precision: str) -> None:
    """A Tile of a stored weight (the grouped form) is folded before parsing, as polygraphy's sanitize would."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from sbdeploy.backends.tensorrt.builder import prepare_model

    w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    reps = numpy_helper.from_array(np.array([2, 1, 1, 1], np.int64), "reps")
    graph = helper.make_graph(
        [helper.make_node("Tile", ["w", "reps"], ["w2"]), helper.make_node("Conv", ["x", "w2"], ["y"], group=2)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, reps],
    )
    prepared = prepare_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), BuildOptions(precision=precision)
    )
    nodes = prepared.model.graph.node
    conv = next(n for n in nodes if n.op_type == "Conv")
    weights = {t.name: t for t in prepared.model.graph.initializer}
    assert "Tile" not in [n.op_type for n in nodes] and (conv.input[1] in weights or precision == "fp16")
    assert onnx.numpy_helper.to_array(next(t for t in prepared.model.graph.initializer if t.dims[:1] == [4])).shape == (
        4,
        2,
        3,
        3,
    )
