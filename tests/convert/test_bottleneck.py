"""The linear SB fitted to a bottleneck block's 3x3 conv: exact where an exact answer exists, least-squares optimal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sbdeploy import sbify
from sbdeploy.convert import convert
from sbdeploy.convert.bottleneck import NOISE_BATCH, NOISE_BATCHES, NOISE_SIZE, fit_linear_sbs
from sbdeploy.convert.mapping import map_bottleneck_block
from sbdeploy.nn import blocks as B
from sbdeploy.nn.lowering import sb_reference
from tests.export.families import randomize_bn

BOTTLENECKS = [B.PreActBottleneck, B.Bottleneck, B.PyramidBottleneck]


def _block(kind: type[nn.Module], stride: int, *, rank: int | None = None) -> nn.Sequential:
    torch.manual_seed(10 + stride)
    block = randomize_bn(kind(16, 8, stride)).double().eval()
    if rank is not None:  # a 3x3 conv of rank <= C/2: the linear SB can hold it exactly
        c = block.conv2.out_channels
        with torch.no_grad():
            low = torch.randn(c, rank, dtype=torch.float64) @ torch.randn(rank, c * 9, dtype=torch.float64)
            block.conv2.weight.copy_(low.reshape(c, c, 3, 3))
    return nn.Sequential(block).eval()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kind", BOTTLENECKS, ids=lambda k: k.__name__)
def test_rank_half_conv_with_dense_sampling_is_fitted_exactly(kind: type[nn.Module], stride: int) -> None:
    base = _block(kind, stride, rank=4)  # C = 8 -> 4 mid channels
    x = torch.randn(2, 16, 9, 10, dtype=torch.float64)
    calibration = [torch.randn(4, 16, 10, 9, dtype=torch.float64)]
    with torch.no_grad():
        expected = base(x)
        for sb in (sbify(base, "dense"), sbify(base, "dense", calibration=calibration)):
            assert _relative(sb(x), expected) < 1e-8


def test_each_weight_of_a_bottleneck_block_is_mapped() -> None:
    base = _block(B.PreActBottleneck, 2)[0]
    fit = fit_linear_sbs(base, [("b", base.conv2)], "chessboard")["b"]
    sb = map_bottleneck_block(base, "chessboard", fit)
    assert torch.equal(sb.conv2.conv.weight, fit.conv) and torch.equal(sb.conv2.deconv.weight, fit.deconv)
    assert sb.conv2.conv.weight.shape == (4, 8, 3, 3) and sb.conv2.stride == 2 and sb.conv2.mid is None
    kept = {k: v for k, v in base.state_dict().items() if not k.startswith("conv2.")}
    assert all(torch.equal(sb.state_dict()[k], v) for k, v in kept.items())  # 1x1 convs, BNs, shortcut copied


def _noise(channels: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(NOISE_BATCH, channels, NOISE_SIZE, NOISE_SIZE, generator=generator, dtype=torch.float64)
        for _ in range(NOISE_BATCHES)
    ]


@pytest.mark.parametrize("sampling", ["single", "chessboard", "three"])
def test_deconv_is_the_least_squares_optimum_and_the_error_is_reported(sampling: str) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, padding=1, bias=False).double().requires_grad_(False)
    fit = fit_linear_sbs(nn.Sequential(conv), [("c", conv)], sampling)["c"]
    deconv = fit.deconv.clone().requires_grad_(True)
    inputs = _noise(8)  # the data-free fit's own inputs
    loss = sum(((sb_reference(x, fit.conv, deconv, stride=1, sampling=sampling) - conv(x)) ** 2).sum() for x in inputs)
    loss.backward()
    assert deconv.grad is not None
    assert deconv.grad.norm() < 1e-6 * float(loss.detach())  # a stationary point of a convex problem: the minimum
    energy = sum(float((conv(x) ** 2).sum()) for x in inputs)
    assert fit.relative_error == pytest.approx(float(loss.detach() / energy) ** 0.5, rel=1e-6)
    assert 0 < fit.relative_error < 1  # better than the zero map, yet no exact answer exists


def test_calibration_fit_uses_the_convs_real_inputs() -> None:
    base = _block(B.Bottleneck, 1)
    images = [torch.randn(8, 16, 8, 8, dtype=torch.float64).abs()]
    fitted = convert(base, "chessboard", calibration=images)
    noise = convert(base, "chessboard")
    assert set(fitted.bottleneck_fits) == {"0"} and fitted.bottleneck_fits["0"].inputs == "calibration"
    assert noise.bottleneck_fits["0"].inputs == "noise"
    with torch.no_grad():  # on the images it was fitted on, the calibrated fit is the closer one
        inner = F.relu(base[0].bn1(base[0].conv1(images[0])))
        target = base[0].conv2(inner)
        errors = [_relative(c.model[0].conv2(inner), target) for c in (fitted, noise)]
    assert errors[0] < errors[1]
    assert fitted.bottleneck_error == pytest.approx(fitted.bottleneck_fits["0"].relative_error)
