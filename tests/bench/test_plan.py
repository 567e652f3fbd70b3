"""What a bench run builds before timing: each ONNX file and engine once, one engine per model for every batch."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from sbdeploy.bench.run import _make_artifact, engine_profile, plan_artifacts, resolve_models
from sbdeploy.errors import ConfigError

MODELS = ("net_sb", "net")


def test_one_engine_per_model_covers_every_batch() -> None:
    plans, uses = plan_artifacts(MODELS, ["trt"], [1, 8, 32])
    engines = [p for p in plans if p.kind == "engine"]
    assert [e.model for e in engines] == list(MODELS)
    assert all(e.profile == (1, 32, 32) and e.precision == "fp32" for e in engines)
    for e in engines:  # built from its model's fp32 ONNX, which comes first
        source = next(i for i, p in enumerate(plans) if p.filename == e.source)
        assert plans[source].model == e.model and plans[source].precision == "fp32" and source < plans.index(e)
        assert uses[(e.model, "trt", 1)] == uses[(e.model, "trt", 32)] == e.filename


def test_backends_running_the_same_deploy_form_share_one_export_and_torch_needs_none() -> None:
    plans, uses = plan_artifacts(MODELS, ["torch", "ort-cpu", "ort-cuda", "ort-trt", "trt"], [1, 4])
    assert len(plans) == 8  # per model: the ort-cpu form per batch, the GPU form (ort-cuda, ort-trt, engine build), one engine
    onnx_net = {(p.target, p.batch): p for p in plans if p.kind == "onnx" and p.model == "net"}
    assert set(onnx_net) == {("ort-cpu", 1), ("ort-cpu", 4), ("ort-cuda", None)}
    assert onnx_net[("ort-cpu", 1)].lowering == "subpixel+phase-runs" and onnx_net[("ort-cpu", 4)].backends == ("ort-cpu",)
    assert uses[("net", "ort-cpu", 1)] == onnx_net[("ort-cpu", 1)].filename != uses[("net", "ort-cpu", 4)]
    assert onnx_net[("ort-cuda", None)].lowering == "strided"
    assert onnx_net[("ort-cuda", None)].backends == ("ort-cuda", "ort-trt", "trt")
    gpu_form = onnx_net[("ort-cuda", None)].filename
    assert uses[("net", "ort-cuda", 4)] == uses[("net", "ort-trt", 1)] == gpu_form != uses[("net", "ort-cpu", 1)]
    assert not any(backend == "torch" for _, backend, _ in uses)


def test_a_forced_lowering_means_one_canonical_export_for_every_backend() -> None:
    plans, uses = plan_artifacts(["net"], ["ort-cpu", "ort-cuda", "trt"], [1], lowering="grouped")
    onnx_plans = [p for p in plans if p.kind == "onnx"]
    assert len(onnx_plans) == 1 and onnx_plans[0].target is None and onnx_plans[0].lowering == "grouped"
    assert uses[("net", "ort-cpu", 1)] == uses[("net", "ort-cuda", 1)] == onnx_plans[0].filename


def test_fp16_means_fp16_onnx_for_ort_and_an_fp16_engine_from_the_fp32_onnx() -> None:
    plans, uses = plan_artifacts(["net"], ["ort-cpu", "trt"], [2], fp16=True)
    by_name = {p.filename: p for p in plans}
    assert by_name[uses[("net", "ort-cpu", 2)]].precision == "fp16"
    engine = by_name[uses[("net", "trt", 2)]]
    assert engine.precision == "fp16" and by_name[engine.source or ""].precision == "fp32"
    assert engine.profile == (1, 2, 2)


def test_lowering_is_part_of_an_exports_identity() -> None:
    default, _ = plan_artifacts(["net"], ["ort-cpu"], [1])
    naive, _ = plan_artifacts(["net"], ["ort-cpu"], [1], lowering="naive")
    assert default[0].lowering == "subpixel+phase-runs" and default[0].target == "ort-cpu"
    assert naive[0].lowering == "naive" and naive[0].target is None and default[0].filename != naive[0].filename


def test_engine_profile_refuses_bad_batches() -> None:
    assert engine_profile([4, 1, 16]) == (1, 16, 16)
    for bad in ([], [0, 4]):
        with pytest.raises(ConfigError):
            engine_profile(bad)


def test_fp16_export_keeps_fp32_io(tmp_path: Path) -> None:
    model = resolve_models(["cifar_resnet20"], input_size=(16, 16))[0]
    plans, _ = plan_artifacts([model.label], ["ort-cpu"], [1], fp16=True)
    _make_artifact(plans[0], model, tmp_path, None)
    proto = onnx.load(str(tmp_path / plans[0].filename))
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert any(init.data_type == fp16 for init in proto.graph.initializer)
    assert [v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.output)] == [fp32, fp32]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1  # the ort-cpu form at its bench batch
