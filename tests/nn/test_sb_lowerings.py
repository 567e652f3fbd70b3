"""Every named SB lowering (``LOWERINGS``) equals the dense masked reference (float64, 1e-10).

Covers, in torch: the grouped export lowering for every sampling set, stride 1 and 2,
with and without the BN-ReLU ``mid``, at sizes from 1x1 and 2x3 to odd/even mixes; and
every SB block type of the zoo under ``lowering_mode`` against ``reference_mode``.
The ONNX side of the same lowerings is tested in ``tests/export``.
"""

from __future__ import annotations

import pytest
import torch

from sbdeploy.errors import ConfigError
from sbdeploy.nn import blocks
from sbdeploy.nn.blocks import bn_relu
from sbdeploy.nn.sb import LOWERINGS, SAMPLINGS, SpatialBottleneck, lowering_mode, reference_mode, sb_grouped
from tests.nn.test_sb import randomize_bn

TOL = 1e-10
SIZES = [(1, 1), (2, 3), (3, 2), (4, 4), (5, 5), (7, 9), (8, 6)]
SB_BLOCKS = [
    blocks.SBPreActBasicBlock,
    blocks.SBPreActBottleneck,
    blocks.SBBasicBlock,
    blocks.SBBottleneck,
    blocks.SBPyramidBasicBlock,
    blocks.SBPyramidBottleneck,
]


@pytest.mark.parametrize("lowering", [name for name in LOWERINGS if name != "reference"])
@pytest.mark.parametrize("sampling", list(SAMPLINGS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("with_mid", [False, True], ids=["linear", "bn_relu"])
def test_lowering_equals_reference(lowering: str, sampling: str, stride: int, with_mid: bool) -> None:
    torch.manual_seed(0)
    sb = SpatialBottleneck(3, 5, 4, stride=stride, sampling=sampling, mid=bn_relu(5) if with_mid else None)
    randomize_bn(sb)
    sb = sb.double().eval()
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        ref = sb.reference_forward(x)
        out = LOWERINGS[lowering](x, sb.conv.weight, sb.deconv.weight, stride=stride, sampling=sampling, mid=sb.mid)
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=TOL, rtol=0), f"{h}x{w}: {(out - ref).abs().max()}"


def test_grouped_really_groups() -> None:
    """The grouped form calls conv2d/conv_transpose2d once each with groups = subgroups present."""
    calls = []
    conv, deconv = torch.nn.functional.conv2d, torch.nn.functional.conv_transpose2d

    def spy(fn, kind):  # noqa: ANN001, ANN202
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls.append((kind, kwargs.get("groups", 1)))
            return fn(*args, **kwargs)

        return wrapped

    sb = SpatialBottleneck(2, 3, 2, sampling="three").double().eval()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    torch.nn.functional.conv2d, torch.nn.functional.conv_transpose2d = spy(conv, "conv"), spy(deconv, "deconv")
    try:
        sb_grouped(x, sb.conv.weight, sb.deconv.weight, stride=1, sampling="three")
        sb_grouped(x[:, :, :1, :1], sb.conv.weight, sb.deconv.weight, stride=1, sampling="three")
    finally:
        torch.nn.functional.conv2d, torch.nn.functional.conv_transpose2d = conv, deconv
    # 6x5 grid: all three subgroups; 1x1 grid: only (0, 0) exists
    assert calls == [("conv", 3), ("deconv", 3), ("conv", 1), ("deconv", 1)]


@pytest.mark.parametrize("block_type", SB_BLOCKS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("sampling", list(SAMPLINGS))
@pytest.mark.parametrize("stride", [1, 2])
def test_blocks_grouped_equal_reference(block_type: type, sampling: str, stride: int) -> None:
    torch.manual_seed(2)
    block = block_type(4, 6, stride, sampling=sampling)
    randomize_bn(block)
    block = block.double().eval()
    for h, w in [(1, 1), (2, 3), (7, 6), (8, 8)]:
        x = torch.randn(2, 4, h, w, dtype=torch.float64)
        with reference_mode(block):
            ref = block(x)
        with lowering_mode(block, "grouped"):
            out = block(x)
        assert torch.allclose(out, ref, atol=TOL, rtol=0), f"{h}x{w}: {(out - ref).abs().max()}"


def test_lowering_mode_restores_and_rejects_unknown() -> None:
    sb = SpatialBottleneck(2, 2, 2)
    with lowering_mode(sb, "grouped"):
        assert sb.lowering == "grouped"
    assert sb.lowering is None
    with pytest.raises(ConfigError, match="unknown SB lowering"):
        with lowering_mode(sb, "magic"):
            pass


def test_grouped_refuses_training_mode_bn() -> None:
    sb = SpatialBottleneck(2, 3, 2, mid=bn_relu(3)).train()
    with pytest.raises(ConfigError, match="eval"):
        sb_grouped(torch.randn(1, 2, 4, 4), sb.conv.weight, sb.deconv.weight, stride=1, sampling="chessboard", mid=sb.mid)
