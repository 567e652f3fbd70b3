"""``export --target``: the exported deploy forms run in onnxruntime and match torch, and the canonical form stays.

Each form is exported with a dynamic batch and run at batch 1 and 3 against the
PyTorch network in eval mode (the SB training code, dense semantics). Tolerance:
1e-4 at the logits' scale (float32 sums in another order). ``ort-cuda`` and ``trt``
get the same form (``strided``), so ``trt`` stands for both; ONNX Runtime CPU runs it.
"""

from __future__ import annotations

import collections

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from sbdeploy.export import export_module
from sbdeploy.models import create_model
from sbdeploy.nn.phase import TARGETS, target_lowering
from sbdeploy.nn.sb import SAMPLINGS
from sbdeploy.passes import TARGET_PASSES
from tests.export.families import FAMILIES, randomize_bn

BATCHES = (1, 3)


def _max_error(model: nn.Module, size: tuple[int, int], target: str, in_chans: int = 3) -> tuple[float, float, dict[str, int]]:
    """Largest |ORT - torch| over both batches, the logits' scale, and the exported op census."""
    model = model.eval()
    proto, reports = export_module(model, in_chans=in_chans, input_size=size, target=target)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    error, scale = 0.0, 1.0
    generator = torch.Generator().manual_seed(1)
    for batch in BATCHES:
        x = torch.randn(batch, in_chans, *size, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape
        error, scale = max(error, float(np.abs(got - expected).max())), max(scale, float(np.abs(expected).max()))
    assert tuple(r.name for r in reports[-len(TARGET_PASSES):]) == TARGET_PASSES
    return error, scale, reports[-1].ops_after


@pytest.mark.parametrize("target", ["ort-cpu", "trt"])
@pytest.mark.parametrize("sampling", list(SAMPLINGS))
def test_cifar_resnet20_sb_target_forms_match_torch(sampling: str, target: str) -> None:
    model = randomize_bn(create_model("cifar_resnet20_sb", sampling=sampling))
    error, scale, ops = _max_error(model, (32, 32), target)
    assert error <= 1e-4 * scale, f"{sampling} {target}: max |diff| {error:.3g} at logits scale {scale:.3g}"
    assert ops.get("Pad", 0) == 0 and ops.get("Mul", 0) == 0  # Pads folded, pre-activation BNs as depthwise Convs
    if target == "ort-cpu":  # no ConvTranspose; every block in one phase run (32 -> 16 -> 8): a single interleave
        assert ops.get("ConvTranspose", 0) == 0 and ops.get("DepthToSpace", 0) == 1
    else:
        assert ops.get("ConvTranspose", 0) == 9 * len(SAMPLINGS[sampling])


@pytest.mark.parametrize("sampling", list(SAMPLINGS))
def test_fixed_batch_1_takes_the_stacked_layout_and_matches_torch(sampling: str) -> None:
    """At batch 1 CIFAR sizes every node is small: the run is exported in the stacked layout."""
    model = randomize_bn(create_model("cifar_resnet20_sb", sampling=sampling)).eval()
    proto, _ = export_module(model, in_chans=3, input_size=(32, 32), batch=1, target="ort-cpu")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    error = float(np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max())
    assert error <= 1e-4 * max(1.0, float(np.abs(expected).max())), f"{sampling}: max |diff| {error:.3g}"
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    parities = len(SAMPLINGS[sampling])
    # stem, split, head BN as a depthwise conv; per block BN1 as one and 2 convs per parity; 2 projections
    assert ops["Conv"] == 3 + 9 * (1 + 2 * parities) + 2 and ops.get("DepthToSpace", 0) == 0, ops


@pytest.mark.parametrize("target", ["ort-cpu", "trt"])
def test_resnet18_sb_at_an_odd_size_matches_torch(target: str) -> None:
    model = randomize_bn(create_model("resnet18_sb", num_classes=10))
    error, scale, _ = _max_error(model, (97, 75), target)
    assert error <= 1e-4 * scale, f"{target}: max |diff| {error:.3g} at logits scale {scale:.3g}"


@pytest.mark.parametrize("target", ["ort-cpu", "trt"])
@pytest.mark.parametrize("family", ["cifar_preact_bottleneck", "imagenet_bottleneck"])
def test_bottleneck_nets_at_odd_sizes_match_torch(family: str, target: str) -> None:
    build, _, odd = FAMILIES[family]
    size = odd if family.startswith("cifar") else (49, 37)  # an odd size that keeps the ImageNet net quick
    error, scale, ops = _max_error(randomize_bn(build("chessboard")), size, target)
    assert error <= 1e-4 * scale, f"{family} {target}: max |diff| {error:.3g} at logits scale {scale:.3g}"
    assert ops.get("BatchNormalization", 0) == 0  # the BN after each SB is folded into its deconv part


def test_target_metadata_and_the_canonical_default(tmp_path) -> None:  # noqa: ANN001
    from sbdeploy.export import export_onnx, read_metadata
    from sbdeploy.export import load_onnx

    canonical = export_onnx("cifar_resnet20_sb", tmp_path / "c.onnx", input_size=(16, 16))
    deployed = export_onnx("cifar_resnet20_sb", tmp_path / "d.onnx", input_size=(16, 16), target="ort-cpu")
    assert canonical.metadata["target"] == "none" and canonical.metadata["lowering"] == "grouped"
    assert "fuse_pads" not in canonical.metadata["passes"] and canonical.ops.get("ConvTranspose", 0) == 9
    meta = read_metadata(load_onnx(deployed.path))
    assert meta["target"] == "ort-cpu" and meta["lowering"] == target_lowering("ort-cpu") == "subpixel+phase-runs"
    assert tuple(meta["passes"][-len(TARGET_PASSES):]) == TARGET_PASSES and deployed.ops.get("ConvTranspose", 0) == 0
    assert set(TARGETS) == {"ort-cpu", "ort-cuda", "trt"}
