"""Pad -> Conv folding, and the ort-cpu deploy form run by onnxruntime against torch."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from sbdeploy.models import create_model
from sbdeploy.passes.pad_fusion import fuse_pads
from sbdeploy.targets import get_target


def _pad_conv_model(pad_value: float, pads: list[int]) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Pad", ["x", "pads", "value"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[2, 2], pads=[0, 1, 0, 0]),
    ]
    inits = [
        numpy_helper.from_array(np.array(pads, np.int64), "pads"),
        numpy_helper.from_array(np.array(pad_value, np.float32), "value"),
        numpy_helper.from_array(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), "w"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # test our pass, not ORT's
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]


def test_zero_pad_folds_into_conv_pads() -> None:
    model = _pad_conv_model(0.0, [0, 0, 1, 0, 0, 0, 0, 2])
    fused, removed = fuse_pads(model)
    assert removed == 1 and [n.op_type for n in fused.graph.node] == ["Conv"]
    conv = fused.graph.node[0]
    assert list(next(a for a in conv.attribute if a.name == "pads").ints) == [1, 1, 0, 2]
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(_run(fused, x), _run(model, x))


@pytest.mark.parametrize(
    "value, pads", [(1.0, [0, 0, 1, 0, 0, 0, 0, 2]), (0.0, [0, 1, 1, 0, 0, 0, 0, 0]), (0.0, [0, 0, -1, 0, 0, 0, 0, 0])]
)
def test_other_pads_stay(value: float, pads: list[int]) -> None:
    _, removed = fuse_pads(_pad_conv_model(value, pads))  # non-zero value, channel pad, crop
    assert removed == 0


def test_ort_cpu_deploy_form_runs_in_onnxruntime_without_pads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("cifar_resnet20_sb").eval()
    deployed = get_target("ort-cpu").deploy_form(model)
    x = torch.randn(2, 3, 16, 16)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(deployed, (x,), buf, input_names=["x"], opset_version=17, dynamo=False)
        expected = model(x).numpy()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # constant-fold the pads
    so.optimized_model_filepath = str(tmp_path / "basic.onnx")
    raw = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    fused, removed = fuse_pads(onnx.load(str(tmp_path / "basic.onnx")))
    assert removed > 0
    assert Counter(n.op_type for n in fused.graph.node)["Pad"] == 0
    onnx.checker.check_model(fused)
    out = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()}
    )[0]
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(raw.run(None, {"x": x.numpy()})[0], expected, atol=1e-4, rtol=1e-4)


def test_fuse_pads_is_a_named_pass_with_a_report() -> None:
    from sbdeploy.passes import DEFAULT_PASSES, PASSES, run_pass

    model = _pad_conv_model(0.0, [0, 0, 1, 0, 0, 0, 0, 2])
    fused, report = run_pass(model, "fuse_pads")
    assert "fuse_pads" in PASSES and "fuse_pads" not in DEFAULT_PASSES  # the canonical export does not run it
    assert report.ops_before == {"Pad": 1, "Conv": 1} and report.ops_after == {"Conv": 1}
    assert len(model.graph.node) == 2  # the input is not modified
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(_run(fused, x), _run(model, x))


def test_affine_to_conv_is_exact_and_leaves_other_muls() -> None:
    from sbdeploy.passes import run_pass

    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["m"]),
        helper.make_node("Add", ["t", "m"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Mul", ["r", "k"], ["y"]),  # a scalar factor: not a channel affine map, stays
    ]
    inits = [numpy_helper.from_array(rng.standard_normal((3, 1, 1)).astype(np.float32), n) for n in ("s", "t")]
    inits.append(numpy_helper.from_array(np.array(2.0, np.float32), "k"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    out, report = run_pass(model, "affine_to_conv")
    assert report.ops_before == {"Mul": 2, "Add": 1, "Relu": 1} and report.ops_after == {"Conv": 1, "Relu": 1, "Mul": 1}
    onnx.checker.check_model(out, full_check=True)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(model, x), rtol=1e-6, atol=1e-6)


def _stale_value_info(model: onnx.ModelProto) -> list[str]:
    """value_info entries of tensors that no node produces or reads (and that are no graph input, output or initializer)."""
    g = model.graph
    used = (
        {v.name for v in (*g.input, *g.output)}
        | {t.name for t in g.initializer}
        | {n for node in g.node for n in (*node.input, *node.output)}
    )
    return [v.name for v in g.value_info if v.name not in used]


def test_the_rewriting_passes_leave_no_value_info_of_removed_tensors() -> None:
    """Pad folding removes the Pad's output, the affine rewrite the Mul's: their shape entries go with them."""
    from sbdeploy.passes import run_pass

    padded = onnx.shape_inference.infer_shapes(_pad_conv_model(0.0, [0, 0, 1, 0, 0, 0, 0, 2]))
    assert [v.name for v in padded.graph.value_info] == ["p"]
    assert _stale_value_info(run_pass(padded, "fuse_pads")[0]) == []
    rng = np.random.default_rng(2)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "t"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.standard_normal((3, 1, 1)).astype(np.float32), n) for n in ("s", "t")],
    )
    affine = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert "m" in [v.name for v in affine.graph.value_info]
    rewritten = run_pass(affine, "affine_to_conv")[0]
    assert [n.op_type for n in rewritten.graph.node] == ["Conv"] and _stale_value_info(rewritten) == []


def test_drop_stale_value_info_keeps_every_entry_in_use() -> None:
    from sbdeploy.passes.cleanup import drop_stale_value_info

    model = onnx.shape_inference.infer_shapes(_pad_conv_model(0.0, [0, 0, 1, 0, 0, 0, 0, 2]))
    model.graph.value_info.append(helper.make_tensor_value_info("gone", TensorProto.FLOAT, [1]))
    assert drop_stale_value_info(model) == 1 and [v.name for v in model.graph.value_info] == ["p"]
