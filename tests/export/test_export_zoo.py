"""Registered zoo networks through ``export_onnx``: graph shape, metadata, determinism, parity.

``cifar_resnet20_sb`` (the smallest SB network) runs always; the larger registered
networks of the other families (``cifar_resnet164_sb``, ``resnet18_sb``, ``resnet50_sb``,
``cifar_pyramidnet110_a48_sb``) are exported and checked by onnxruntime at an odd size
under the ``slow`` marker, at 1e-4 relative to their logits' scale (random weights give
logits up to ~240). Every family and sampling set is covered at block level by
``test_export_parity.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from sbdeploy.export.metadata import read_metadata
from sbdeploy.export.onnx_export import export_onnx
from sbdeploy.nn.sb import SpatialBottleneck
from sbdeploy.sources import resolve_source

TOL = 1e-4
SHAPE_OPS = {"Shape", "Gather", "ConstantOfShape", "Reshape", "Expand", "Range", "Squeeze", "Unsqueeze", "Size", "Tile"}


@pytest.fixture(scope="module")
def resnet20(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    path = tmp_path_factory.mktemp("zoo") / "cifar_resnet20_sb.onnx"
    return export_onnx("cifar_resnet20_sb", path)


def _shape_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The SHAPE_OPS nodes, less the weight views (a Tile/Expand of a stored SB weight into its Conv: weight data, kept)."""
    import onnx_ir as ir

    from sbdeploy.passes.constant_folding import weight_views

    views = {n.name for n in weight_views(ir.serde.deserialize_model(model))}
    return [n for n in model.graph.node if n.op_type in SHAPE_OPS and n.name not in views]


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def test_one_grouped_pair_per_chessboard_sb_and_no_batchnorm(resnet20) -> None:  # noqa: ANN001
    model = onnx.load(resnet20.path)
    sbs = [m for m in resolve_source("cifar_resnet20_sb").model.modules() if isinstance(m, SpatialBottleneck)]
    assert len(sbs) == 9
    grouped_convs = [n for n in model.graph.node if n.op_type == "Conv" and _group(n) == 2]
    grouped_deconvs = [n for n in model.graph.node if n.op_type == "ConvTranspose" and _group(n) == 2]
    assert len(grouped_convs) == len(sbs) and len(grouped_deconvs) == len(sbs)
    assert [n.op_type for n in model.graph.node].count("ConvTranspose") == len(sbs)
    strides = sorted(next(a.ints[0] for a in n.attribute if a.name == "strides") for n in grouped_convs)
    assert strides == [2] * 7 + [4] * 2  # two downsampling SB blocks
    assert all(next(a.ints for a in n.attribute if a.name == "strides") == [2, 2] for n in grouped_deconvs)
    assert all(a.name != "output_shape" for n in grouped_deconvs for a in n.attribute)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    onnx.checker.check_model(model, full_check=True)


def test_dynamic_batch_keeps_no_shape_arithmetic(resnet20) -> None:  # noqa: ANN001
    model = onnx.load(resnet20.path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    shape_nodes = _shape_nodes(model)
    # this network needs none; where a head flattens, only Shape(input)[0] may remain
    assert all(n.op_type != "Shape" or n.input[0] == "input" for n in shape_nodes), shape_nodes
    assert not [n for n in shape_nodes if n.op_type in ("ConstantOfShape", "Expand", "Tile", "Range")]


def test_metadata_read_back(resnet20) -> None:  # noqa: ANN001
    meta = read_metadata(resnet20.path)
    assert meta == resnet20.metadata
    assert meta["arch"] == "cifar_resnet20_sb" and meta["sampling"] == "chessboard"
    assert (
        meta["lowering"] == "grouped"
        and meta["target"] == "grouped"
        and meta["precision"] == "fp32"
        and meta["layout"] == "NCHW"
    )
    assert meta["input_shape"] == ["batch", 3, 32, 32]
    assert meta["passes"] == ["fold_constants", "eliminate", "fold_bn", "shape_inference"]
    assert len(meta["weights_sha256"]) == 64 and len(meta["class_names"]) == 10
    assert meta["normalization"]["mean"] and meta["version"]
    assert resnet20.warnings and "random weights" in resnet20.warnings[0]


def test_export_is_deterministic(resnet20, tmp_path: Path) -> None:  # noqa: ANN001
    again = export_onnx("cifar_resnet20_sb", tmp_path / "again.onnx")
    assert again.path.read_bytes() == resnet20.path.read_bytes()


def test_trt_check_clean_and_pass_reports(resnet20) -> None:  # noqa: ANN001
    assert resnet20.trt_check and not resnet20.trt_check.warnings
    names = [r.name for r in resnet20.pass_reports]
    assert names == ["fold_constants", "eliminate", "fold_bn", "shape_inference"]
    folding = resnet20.pass_reports[0]
    assert folding.nodes_after < folding.nodes_before
    assert resnet20.pass_reports[2].ops_before.get("BatchNormalization", 0) > 0


def test_fixed_batch_and_size_fold_all_shape_ops(tmp_path: Path) -> None:
    result = export_onnx(
        "cifar_resnet20_sb", tmp_path / "b2.onnx", batch=2, input_size=(33, 35), options={"sampling": "three"}
    )
    model = onnx.load(result.path)
    assert not [n.op_type for n in _shape_nodes(model)]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 33, 35]
    source = resolve_source("cifar_resnet20_sb", options={"sampling": "three"})
    x = np.random.default_rng(0).standard_normal((2, 3, 33, 35)).astype(np.float32)
    import onnxruntime as ort

    got = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        expected = source.model(torch.from_numpy(x)).numpy()
    assert float(np.abs(got - expected).max()) <= TOL
    assert sum(1 for n in model.graph.node if n.op_type == "Conv" and _group(n) == 3) == 9


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, size",
    [
        ("cifar_resnet164_sb", (33, 35)),
        ("cifar_pyramidnet110_a48_sb", (33, 35)),
        ("resnet18_sb", (97, 75)),
        ("resnet50_sb", (97, 75)),
    ],
)
def test_registered_networks_parity(name: str, size: tuple[int, int], tmp_path: Path) -> None:
    import onnxruntime as ort

    result = export_onnx(name, tmp_path / f"{name}.onnx", input_size=size)
    source = resolve_source(name)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, *size)).astype(np.float32)
        with torch.no_grad():
            expected = source.model(torch.from_numpy(x)).numpy()
        # random-init deep nets reach logits of ~1e2 (resnet50_sb: ~240), where float32's
        # rounding alone exceeds 1e-4 absolute; the error is compared at the logits' scale
        scale = max(1.0, float(np.abs(expected).max()))
        assert float(np.abs(session.run(None, {"input": x})[0] - expected).max()) <= TOL * scale
    sbs = [m for m in source.model.modules() if isinstance(m, SpatialBottleneck)]
    grouped = [n for n in onnx.load(result.path).graph.node if n.op_type == "ConvTranspose" and _group(n) == 2]
    assert len(grouped) == len(sbs)
