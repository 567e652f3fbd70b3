"""Everything around TensorRT that runs without it: options, profiles, model preparation, sidecars and the
mismatch check, and the clear refusals. The read-back, parser errors and compatibility rules are checked on
NVIDIA's documented formats in test_tensorrt_docs.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sbdeploy.backends.tensorrt import _compat
from sbdeploy.backends.tensorrt.builder import (
    BuildOptions,
    build_engine,
    compute_profiles,
    has_qdq,
    onnx_input_shapes,
    prepare_model,
)
from sbdeploy.backends.tensorrt.runner import ProfileRange, TrtRunner
from sbdeploy.backends.tensorrt.sidecar import (
    EngineSidecar,
    MachineInfo,
    check_compatible,
    check_engine_hash,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from sbdeploy.checkpoint import sha256_file
from sbdeploy.errors import BackendUnavailableError, ConfigError, EngineMismatchError, InputError, OnnxModelError
from sbdeploy.export.metadata import load_onnx

no_tensorrt = pytest.mark.skipif(_compat.tensorrt_available(), reason="TensorRT is installed here")


def _tiny_model(batch: int | str = "batch", hw: int | str = 8) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3, hw, hw])
    return helper.make_model(helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g", [x], [y]))


# ---- options and profiles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"min_batch": 4, "opt_batch": 2}, "1 <= min <= opt <= max"),
        ({"min_batch": 0}, "1 <= min"),
        ({"opt_level": 6}, "0..5"),
        ({"workspace_mib": 0}, "workspace"),
        ({"fp16_flag": True}, "--fp16-flag only"),
        ({"precision": "bf16"}, "precision must be one of fp32, fp16, int8"),
    ],
)
def test_bad_options_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BuildOptions(**options)


def test_profiles_from_the_exported_network(sb_onnx: Path) -> None:
    model = load_onnx(sb_onnx)
    assert onnx_input_shapes(model) == {"input": (None, 3, 32, 32)}
    profiles, notes = compute_profiles(model, BuildOptions(min_batch=1, opt_batch=8, max_batch=32))
    assert [(p.name, p.min, p.opt, p.max) for p in profiles] == [
        ("input", (1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))
    ]
    assert notes == []
    assert profiles[0].to_json() == {"min": [1, 3, 32, 32], "opt": [8, 3, 32, 32], "max": [32, 3, 32, 32]}


def test_fixed_batch_wins_with_a_note() -> None:
    profiles, notes = compute_profiles(_tiny_model(batch=4), BuildOptions())
    assert (profiles[0].min, profiles[0].max) == ((4, 3, 8, 8), (4, 3, 8, 8))
    assert "fixed batch of 4" in notes[0]


def test_dynamic_spatial_dims_are_refused() -> None:
    with pytest.raises(ConfigError, match="only the batch dimension may be dynamic"):
        compute_profiles(_tiny_model(hw="h"), BuildOptions())


def test_initializers_are_not_inputs() -> None:
    model = _tiny_model()
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    model.graph.initializer.append(weight)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]))
    assert list(onnx_input_shapes(model)) == ["input"]


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not protobuf"])
def test_bad_onnx_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxModelError):
        load_onnx(path)
    with pytest.raises(OnnxModelError, match="does not exist"):
        load_onnx(tmp_path / "missing.onnx")


# ---- model preparation ----------------------------------------------------------------------------


def test_fp32_and_fp16_flag_keep_the_model(sb_onnx: Path) -> None:
    model = load_onnx(sb_onnx)
    assert prepare_model(model, BuildOptions()).route == "strongly-typed"
    prepared = prepare_model(model, BuildOptions(precision="fp16", fp16_flag=True))
    assert prepared.route == "fp16-flag" and prepared.model is model


def test_fp16_preparation_converts_weights_keeps_io(sb_onnx: Path) -> None:
    pytest.importorskip("sbdeploy.passes", reason="sbdeploy.passes comes with the export branch")
    import onnxruntime as ort

    model = load_onnx(sb_onnx)
    prepared = prepare_model(model, BuildOptions(precision="fp16"))
    assert prepared.route == "strongly-typed"
    conv_weights = {n.input[1] for n in prepared.model.graph.node if n.op_type == "Conv"}
    inits = {i.name: i.data_type for i in prepared.model.graph.initializer}
    assert conv_weights and all(inits.get(w) == TensorProto.FLOAT16 for w in conv_weights if w in inits)
    assert onnx_input_shapes(prepared.model) == onnx_input_shapes(model)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[
            0
        ]

    np.testing.assert_allclose(run(prepared.model), run(model), rtol=0.05, atol=0.05)


def test_int8_preparation(sb_onnx: Path) -> None:
    model = load_onnx(sb_onnx)
    assert not has_qdq(model)
    with pytest.raises(ConfigError, match="--calibration"):
        prepare_model(model, BuildOptions(precision="int8"))
    pytest.importorskip("sbdeploy.passes", reason="sbdeploy.passes comes with the export branch")
    calibration = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    prepared = prepare_model(model, BuildOptions(precision="int8"), calibration)
    assert has_qdq(prepared.model)
    again = prepare_model(prepared.model, BuildOptions(precision="int8"))  # a QDQ model is used as is
    assert again.model is prepared.model and "already holds QDQ" in again.notes[0]


# ---- sidecar ---------------------------------------------------------------------------------------

BUILT = MachineInfo("10.13.0.35", "NVIDIA A100-SXM4-80GB", "8.0", "12.8", "12.9")


def _sidecar(engine: Path, **builder_options: object) -> EngineSidecar:
    return EngineSidecar(
        built_on=BUILT,
        requested_precision="fp16",
        actual_precisions={"fp16": 30, "fp32": 2},
        profiles=[{"input": {"min": [1, 3, 32, 32], "opt": [8, 3, 32, 32], "max": [32, 3, 32, 32]}}],
        builder_options={"precision": "fp16", **builder_options},
        onnx_sha256="0" * 64,
        engine_sha256=sha256_file(engine),
        build_time_s=12.5,
        inputs=[{"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32"}],
        outputs=[{"name": "logits", "shape": [-1, 10], "dtype": "float32"}],
    )


def test_sidecar_round_trip(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan bytes")
    sidecar = _sidecar(engine)
    path = write_sidecar(engine, sidecar)
    assert path == sidecar_path(engine) == tmp_path / "m.engine.json"
    assert read_sidecar(engine) == sidecar
    assert engine.read_bytes() == b"plan bytes"  # nothing prepended to the plan
    assert [p.name for p in tmp_path.iterdir()] and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert read_sidecar(tmp_path / "other.engine") is None


@pytest.mark.parametrize(
    "content", ["{not json", '{"format": "something-else"}', '{"format": "sbdeploy-engine-sidecar"}']
)
def test_bad_sidecars(tmp_path: Path, content: str) -> None:
    engine = tmp_path / "m.engine"
    sidecar_path(engine).write_text(content)
    with pytest.raises(EngineMismatchError, match="rebuild the engine"):
        read_sidecar(engine)


def test_same_machine_is_compatible(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    check_compatible(engine, _sidecar(engine), BUILT)
    check_compatible(engine, _sidecar(engine), replace(BUILT, gpu_name="NVIDIA A100-PCIE-40GB", driver_version="13.0"))


@pytest.mark.parametrize(
    ("here", "why"),
    [
        (replace(BUILT, tensorrt_version="10.14.1.48"), "TensorRT version that built them"),
        (replace(BUILT, tensorrt_version="11.4.0.106"), "TensorRT version that built them"),
        (replace(BUILT, gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0"), "compute capability"),
    ],
)
def test_mismatch_names_both_sides(tmp_path: Path, here: MachineInfo, why: str) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(EngineMismatchError) as error:
        check_compatible(engine, _sidecar(engine), here)
    message = str(error.value)
    assert BUILT.describe() in message and here.describe() in message
    assert why in message and f"sbdeploy build-engine MODEL.onnx -o {engine}" in message


def test_replaced_engine_is_detected(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"original plan")
    sidecar = _sidecar(engine)
    check_engine_hash(engine, sidecar)
    engine.write_bytes(b"another plan")
    with pytest.raises(EngineMismatchError, match="does not match its sidecar"):
        check_engine_hash(engine, sidecar)


# ---- runner shape checks and refusals without TensorRT ---------------------------------------------


def test_profile_range() -> None:
    profile = ProfileRange("input", (1, 3, 32, 32), (32, 3, 32, 32))
    for batch in (1, 8, 32):
        profile.check((batch, 3, 32, 32))
    with pytest.raises(
        InputError, match=r"64x3x32x32 is outside the engine's profile \(min 1x3x32x32, max 32x3x32x32\)"
    ):
        profile.check((64, 3, 32, 32))
    with pytest.raises(InputError, match="outside"):
        profile.check((1, 3, 32))


def test_stubs_alone_are_not_tensorrt() -> None:
    import importlib.metadata
    import importlib.util

    names = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in importlib.metadata.distributions()}
    real = sorted(n for n in names if n.startswith("tensorrt") and n != "tensorrt-stubs")
    if "tensorrt-stubs" not in names or real:
        pytest.skip(f"needs tensorrt-stubs without TensorRT (installed: {real or 'no tensorrt-stubs'})")
    assert importlib.util.find_spec("tensorrt") is not None  # the stubs make `tensorrt` findable...
    assert not _compat.tensorrt_available()  # ...but a namespace of .pyi files is no TensorRT


@no_tensorrt
def test_build_engine_without_tensorrt(sb_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError) as error:
        build_engine(sb_onnx, tmp_path / "m.engine", BuildOptions())
    assert str(error.value) == _compat.NO_TENSORRT
    assert not (tmp_path / "m.engine").exists()


@no_tensorrt
def test_trt_runner_without_tensorrt(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed.*--backends ort-cpu"):
        with TrtRunner(tmp_path / "m.engine"):
            pass
