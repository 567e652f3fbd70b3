"""Each structural pass alone: its report, its effect, and unchanged outputs (onnxruntime, 1e-5)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from sbdeploy.errors import ConfigError
from sbdeploy.export import export_module
from sbdeploy.passes import PASSES, op_counts, run_pass, run_passes
from tests.export.families import build

TOL = 1e-5


@pytest.fixture(scope="module")
def raw():  # noqa: ANN201
    """A small SB network exported with no passes (the torch exporter's graph as is)."""
    model = build("imagenet_basic", "chessboard")
    proto, reports = export_module(model, in_chans=3, input_size=(33, 29), passes=(), opset=18)
    assert reports == []
    x = np.random.default_rng(0).standard_normal((3, 3, 33, 29)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    return proto, x, expected


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.mark.parametrize("name", list(PASSES))
def test_each_pass_alone_keeps_outputs(raw, name: str) -> None:  # noqa: ANN001
    proto, x, expected = raw
    out, report = run_pass(proto, name)
    assert report.name == name and report.ops_before == op_counts(proto) and report.ops_after == op_counts(out)
    assert out is not proto
    onnx.checker.check_model(out, full_check=True)
    assert float(np.abs(run(out, x) - expected).max()) <= TOL


def test_fold_constants_removes_shape_arithmetic(raw) -> None:  # noqa: ANN001
    out, report = run_pass(raw[0], "fold_constants")
    before, after = report.ops_before, report.ops_after
    assert before.get("Tile", 0) > 0 and after.get("Tile", 0) == 0  # repeated SB weights
    assert after.get("Cast", 0) == 0 and after.get("SplitToSequence", 0) == 0
    assert report.nodes_after < report.nodes_before


def test_eliminate_drops_constants_and_merges_slices(raw) -> None:  # noqa: ANN001
    folded, _ = run_pass(raw[0], "fold_constants")
    out, report = run_pass(folded, "eliminate")
    assert report.ops_after.get("Constant", 0) == 0 and report.ops_after.get("Identity", 0) == 0
    assert report.ops_after["Slice"] < report.ops_before["Slice"]


def test_fold_bn_leaves_no_batchnorm(raw) -> None:  # noqa: ANN001
    folded, _ = run_passes(raw[0], ["fold_constants", "eliminate"])
    out, report = run_pass(folded, "fold_bn")
    assert report.ops_before["BatchNormalization"] > 0 and "BatchNormalization" not in report.ops_after
    # post-activation network: the deploy copy already folded the BNs of the SB blocks (sbdeploy.nn.fold:
    # the mid BN into the grouped conv, the BN after the SB into its deconv); the pass folds the stem's
    # BN into its conv, so nothing is left as Mul + Add
    assert report.ops_after.get("Mul", 0) == 0
    x, expected = raw[1], raw[2]
    assert float(np.abs(run(out, x) - expected).max()) <= TOL


def test_shape_inference_annotates_every_value(raw) -> None:  # noqa: ANN001
    out, _ = run_passes(raw[0], ["fold_constants", "eliminate", "shape_inference"])
    known = {v.name for v in (*out.graph.value_info, *out.graph.output, *out.graph.input)}
    outputs = {o for n in out.graph.node for o in n.output}
    assert outputs <= known


def test_unknown_pass() -> None:
    with pytest.raises(ConfigError, match="unknown pass"):
        run_pass(onnx.ModelProto(), "fold_everything")
