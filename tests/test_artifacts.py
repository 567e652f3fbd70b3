"""The one artifact code path: what a run plans, and making each file once (reading one back: tests/test_files.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from sbdeploy.artifacts import canonical_plan, engine_profile, make_artifacts, plan_artifacts
from sbdeploy.calibration import load_calibration
from sbdeploy.errors import BackendUnavailableError, ConfigError
from sbdeploy.files import describe_file
from sbdeploy.int8_recipe import ORT_CPU_INT8, TRT_INT8
from sbdeploy.sources import resolve_source
from tests.serve._artifacts import fake_engine

MODELS = (("net_sb", "model"), ("net", "baseline"))


def test_one_engine_per_model_covers_every_batch_and_is_built_from_the_fp32_onnx() -> None:
    plans, uses = plan_artifacts(MODELS, ["trt"], [1, 8, 32], precisions=("fp32", "fp16"))
    engines = [p for p in plans if p.kind == "engine"]
    assert [e.filename for e in engines] == [
        "model.trt.fp32.engine",
        "model.trt.fp16.engine",
        "baseline.trt.fp32.engine",
        "baseline.trt.fp16.engine",
    ]
    assert all(e.profile == (1, 32, 32) and e.target == "trt" and e.backends == ("trt",) for e in engines)
    for e in engines:  # from its model's fp32 ONNX of the same target, which comes first
        source = next(i for i, p in enumerate(plans) if p.filename == e.source)
        assert plans[source].precision == "fp32" and plans[source].model == e.model and source < plans.index(e)
        assert uses[(e.model, "trt", 1, e.precision)] == uses[(e.model, "trt", 32, e.precision)] == e.filename
    assert {p.filename for p in plans if p.kind == "onnx"} == {"model.trt.fp32.onnx", "baseline.trt.fp32.onnx"}


def test_each_backend_gets_its_targets_form_and_torch_needs_no_file() -> None:
    plans, uses = plan_artifacts(MODELS, ["torch", "ort-cpu", "ort-cuda", "ort-trt", "trt"], [1, 4])
    by_name = {p.filename: p for p in plans}
    assert set(by_name) == {
        f"{stem}.{name}"
        for stem in ("model", "baseline")
        for name in (
            "ort-cpu.b1.fp32.onnx",
            "ort-cpu.b4.fp32.onnx",
            "ort-cuda.fp32.onnx",
            "trt.fp32.onnx",
            "trt.fp32.engine",
        )
    }
    assert (
        uses[("net_sb", "ort-cpu", 1, "fp32")] == "model.ort-cpu.b1.fp32.onnx" != uses[("net_sb", "ort-cpu", 4, "fp32")]
    )
    assert (
        uses[("net_sb", "ort-trt", 4, "fp32")] == "model.trt.fp32.onnx"
    )  # ORT's TensorRT provider runs the engine's source
    assert by_name["model.trt.fp32.onnx"].backends == ("ort-trt",) and by_name["model.ort-cuda.fp32.onnx"].batch is None
    assert not any(backend == "torch" for _, backend, _, _ in uses)


def test_a_forced_target_means_one_form_for_every_backend_or_a_refusal() -> None:
    plans, uses = plan_artifacts([("net", "model")], ["ort-cpu", "ort-cuda", "trt"], [1], target="grouped")
    onnx_plans = [p for p in plans if p.kind == "onnx"]
    assert [p.filename for p in onnx_plans] == ["model.onnx"] and onnx_plans[0].backends == ("ort-cpu", "ort-cuda")
    assert uses[("net", "trt", 1, "fp32")] == "model.grouped.fp32.engine"
    with pytest.raises(ConfigError, match="target ort-cpu is run by ort-cpu, not by ort-cuda"):
        plan_artifacts([("net", "model")], ["ort-cuda"], [1], target="ort-cpu")
    with pytest.raises(ConfigError, match="offers fp32, fp16, int8, not 'bf16'"):
        plan_artifacts([("net", "model")], ["ort-cuda"], [1], precisions=("bf16",))
    assert canonical_plan("net", "model").filename == "model.onnx"


def test_engine_profile_refuses_bad_batches() -> None:
    assert engine_profile([4, 1, 16]) == (1, 16, 16)
    for bad in ([], [0, 4]):
        with pytest.raises(ConfigError):
            engine_profile(bad)


def test_make_artifacts_writes_each_planned_file_once_with_its_metadata(tmp_path: Path) -> None:
    src = resolve_source("cifar_resnet20_sb")
    plans, uses = plan_artifacts([("net", "model")], ["ort-cpu"], [1, 2], precisions=("fp32", "fp16"))
    made = make_artifacts(
        [canonical_plan("net", "model"), *plans], {"net": src}, tmp_path, input_sizes={"net": (16, 16)}
    )
    assert (
        set(made)
        == {
            "model.onnx",
            "model.ort-cpu.b1.fp32.onnx",
            "model.ort-cpu.b1.fp16.onnx",
            "model.ort-cpu.b2.fp32.onnx",
            "model.ort-cpu.b2.fp16.onnx",
        }
        == {p.name for p in tmp_path.iterdir()}
    )
    b1 = made["model.ort-cpu.b1.fp16.onnx"]
    assert (b1.kind, b1.target, b1.precision, b1.batch, b1.arch, b1.input_shape) == (
        "onnx",
        "ort-cpu",
        "fp16",
        1,
        "cifar_resnet20_sb",
        (3, 16, 16),
    )
    assert (
        made["model.onnx"].target == "grouped"
        and made["model.onnx"].batch is None
        and made["model.onnx"].precision == "fp32"
    )
    fp16 = onnx.load(str(b1.path))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16.graph.initializer)
    again = describe_file(b1.path)
    assert again == b1 and len(again.sha256) == 64
    assert again.batch_sizes([1, 2, 8]) == (1,) and made["model.onnx"].batch_sizes([1, 8]) == (1, 8)
    assert again.default_backend() == "ort-cpu" and again.runs_on("ort-cuda") and not again.runs_on("trt")


def test_engines_are_built_with_the_targets_options_or_refused_without_tensorrt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sbdeploy.backends.tensorrt import builder
    from sbdeploy.backends.tensorrt._compat import tensorrt_available
    from sbdeploy.export.metadata import read_metadata

    plans, _ = plan_artifacts([("net", "model")], ["trt"], [1, 4], precisions=("fp32", "fp16"))
    src = resolve_source("cifar_resnet20_sb")
    if not tensorrt_available():  # what a user without TensorRT sees: one clear error, after the ONNX is written
        with pytest.raises(BackendUnavailableError, match="TensorRT"):
            make_artifacts(plans, {"net": src}, tmp_path / "real", input_sizes={"net": (16, 16)})
        assert (tmp_path / "real" / "model.trt.fp32.onnx").is_file()
    seen = {}

    def record(onnx_path, engine_path, options, progress=None):  # noqa: ANN001, ANN202  (TensorRT's build, around which this is tested)
        seen[Path(engine_path).name] = (Path(onnx_path).name, options)
        fake_engine(
            Path(engine_path), [(1, 4, 4)], size=16, precision=options.precision, onnx_metadata=read_metadata(onnx_path)
        )

    monkeypatch.setattr(builder, "build_engine", record)
    made = make_artifacts(plans, {"net": src}, tmp_path / "fake", input_sizes={"net": (16, 16)})
    assert (
        made["model.trt.fp16.engine"].precision == "fp16" and made["model.trt.fp16.engine"].arch == "cifar_resnet20_sb"
    )
    assert {
        name: (source, o.precision, o.tf32, (o.min_batch, o.opt_batch, o.max_batch))
        for name, (source, o) in seen.items()
    } == {
        "model.trt.fp32.engine": ("model.trt.fp32.onnx", "fp32", False, (1, 4, 4)),  # the fp32 parity engine: no TF32
        "model.trt.fp16.engine": ("model.trt.fp32.onnx", "fp16", True, (1, 4, 4)),
    }


def test_int8_files_take_their_targets_recipe_and_an_int8_engine_is_built_from_the_qdq_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import onnxruntime as ort

    from sbdeploy import kernels
    from sbdeploy.backends.tensorrt import builder
    from sbdeploy.export.metadata import onnx_precision, read_metadata
    from sbdeploy.export.onnx_export import FUSED_INT8

    plans, uses = plan_artifacts([("net", "model")], ["ort-cpu", "trt"], [1], precisions=("fp32", "int8"))
    by_name = {p.filename: p for p in plans}
    assert set(by_name) == {
        "model.ort-cpu.b1.fp32.onnx",
        "model.ort-cpu.b1.int8.onnx",
        "model.trt.fp32.onnx",
        "model.trt.int8.onnx",
        "model.trt.fp32.engine",
        "model.trt.int8.engine",
    }
    assert (
        by_name["model.trt.int8.engine"].source == "model.trt.int8.onnx"
        and by_name["model.trt.fp32.engine"].source == "model.trt.fp32.onnx"
    )
    assert uses[("net", "ort-cpu", 1, "int8")] == "model.ort-cpu.b1.int8.onnx"
    src = resolve_source("cifar_resnet20_sb")
    with pytest.raises(ConfigError, match="needs calibration data"):  # refused before anything is written
        make_artifacts(plans, {"net": src}, tmp_path / "none", input_sizes={"net": (16, 16)})
    assert not (tmp_path / "none").exists()  # not even the folder
    calibration = load_calibration("synthetic", src.config, input_size=(16, 16), limit=16)
    seen = {}

    def record(onnx_path, engine_path, options, progress=None):  # noqa: ANN001, ANN202  (TensorRT's build, around which this is tested)
        seen[Path(engine_path).name] = (Path(onnx_path).name, options.precision)
        fake_engine(
            Path(engine_path), [(1, 1, 1)], size=16, precision=options.precision, onnx_metadata=read_metadata(onnx_path)
        )

    monkeypatch.setattr(builder, "build_engine", record)
    made = make_artifacts(
        plans, {"net": src}, tmp_path, input_sizes={"net": (16, 16)}, calibration={"net": calibration}
    )
    assert (
        seen["model.trt.int8.engine"] == ("model.trt.int8.onnx", "int8")
        and made["model.trt.int8.engine"].precision == "int8"
    )
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16), dtype=np.float32)
    for name, recipe, zero_point in (
        ("model.ort-cpu.b1.int8.onnx", ORT_CPU_INT8, onnx.TensorProto.UINT8),
        ("model.trt.int8.onnx", TRT_INT8, onnx.TensorProto.INT8),
    ):
        file = made[name]
        assert (file.precision, file.target, file.batch) == ("int8", name.split(".")[1], 1 if "b1" in name else None)
        calibration_record = {"source": "synthetic", "kind": "data", "images": 16, "split": "train split"}
        model = onnx.load(str(file.path))
        options = ort.SessionOptions()
        if file.uses_kernels:  # an SB network's ort-cpu int8 file where the kernel library is built: its SB nodes
            assert file.metadata["int8"] == {"recipe": "fused", "form": FUSED_INT8, "calibration": calibration_record}
            assert {n.op_type for n in model.graph.node} >= {"SBConv"} and onnx_precision(model) == "int8"
            options.register_custom_ops_library(str(kernels.library_path()))
        else:
            assert file.metadata["int8"] == {
                "recipe": recipe.name,
                "form": recipe.describe(),
                "calibration": calibration_record,
            }
            inits = {i.name: i for i in model.graph.initializer}
            quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
            assert quantize and all(
                inits[n.input[2]].data_type == zero_point for n in quantize if len(n.input) > 2 and n.input[2] in inits
            )
        out = ort.InferenceSession(str(file.path), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[
            0
        ]
        assert out.shape == (1, 10) and np.isfinite(out).all()
