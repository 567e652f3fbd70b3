"""The deploy lowerings of the SB operator against the dense masked reference (float64, 1e-10)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sbdeploy.errors import ConfigError
from sbdeploy.nn.lowering import conv_taps, deconv_taps, fold_mid, sb_strided, sb_subpixel
from sbdeploy.nn.sb import SAMPLINGS, sb_reference

LOWERINGS = {"subpixel": sb_subpixel, "strided": sb_strided}
SIZES = [(8, 8), (7, 9), (5, 6), (1, 1), (2, 3), (4, 1)]


def _mid(channels: int, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    bn.running_mean.copy_(torch.randn(channels, generator=g))
    bn.running_var.copy_(torch.rand(channels, generator=g) + 0.5)
    bn.weight.data.copy_(torch.randn(channels, generator=g))
    bn.bias.data.copy_(torch.randn(channels, generator=g))
    return nn.Sequential(bn, nn.ReLU()).double().eval()


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("regular", [True, False], ids=["bn_relu", "linear"])
def test_lowering_matches_reference(lowering: str, sampling: str, stride: int, regular: bool) -> None:
    g = torch.Generator().manual_seed(0)
    mid = _mid(4, 1) if regular else None
    for height, width in SIZES:
        x = torch.randn(2, 3, height, width, generator=g, dtype=torch.float64)
        w1 = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
        w2 = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
        ref = sb_reference(x, w1, w2, stride=stride, sampling=sampling, mid=mid)
        with torch.no_grad():
            out = LOWERINGS[lowering](x, w1, w2, stride=stride, sampling=sampling, mid=mid)
        assert out.shape == ref.shape, (height, width)
        assert (out - ref).abs().max().item() < 1e-10, (height, width)


def test_taps_cover_each_kernel_index_once() -> None:
    # every W2 / W1 index reaches each (output parity, subgroup parity) pair exactly once overall
    for a in (0, 1):
        assert sorted(k for r in (0, 1) for _, k in deconv_taps(r, a)) == [0, 1, 2]
        assert sorted(d for p in (0, 1) for _, d in conv_taps(p, a)) == [0, 1, 2]


def test_fold_mid_refuses_training_mode_and_unknown_modules() -> None:
    with pytest.raises(ConfigError, match="eval"):
        fold_mid(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()).train())
    with pytest.raises(ConfigError, match="Sigmoid"):
        fold_mid(nn.Sequential(nn.BatchNorm2d(3).eval(), nn.Sigmoid()))
