"""The fast strided SB form equals the dense masked reference (float64, 1e-10)."""

from __future__ import annotations

import pytest
import torch

from sbdeploy.errors import ConfigError
from sbdeploy.nn.blocks import bn_relu
from sbdeploy.nn.sampling import SAMPLINGS, resolve_sampling, sampled_positions, sampling_mask
from sbdeploy.nn.sb import SpatialBottleneck

TOL = 1e-10
SIZES = [(1, 1), (2, 3), (3, 2), (4, 4), (5, 5), (7, 9), (8, 6)]


def randomize_bn(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.5, 0.5)


@pytest.mark.parametrize("sampling", list(SAMPLINGS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("with_mid", [False, True], ids=["linear", "bn_relu"])
def test_fast_equals_reference_eval(sampling: str, stride: int, with_mid: bool) -> None:
    torch.manual_seed(0)
    sb = SpatialBottleneck(3, 5, 4, stride=stride, sampling=sampling, mid=bn_relu(5) if with_mid else None)
    randomize_bn(sb)
    sb = sb.double().eval()
    for h, w in SIZES:
        x = torch.randn(3, 3, h, w, dtype=torch.float64)
        fast, ref = sb(x), sb.reference_forward(x)
        assert fast.shape == ref.shape == (3, 4, (h - 1) // stride + 1, (w - 1) // stride + 1)
        assert torch.allclose(fast, ref, atol=TOL, rtol=0), f"{h}x{w}: {(fast - ref).abs().max()}"


@pytest.mark.parametrize("sampling", list(SAMPLINGS))
@pytest.mark.parametrize("stride", [1, 2])
def test_train_mode_bn_statistics_and_gradients_agree(sampling: str, stride: int) -> None:
    torch.manual_seed(1)
    fast_sb = SpatialBottleneck(3, 4, 3, stride=stride, sampling=sampling, mid=bn_relu(4)).double().train()
    ref_sb = SpatialBottleneck(3, 4, 3, stride=stride, sampling=sampling, mid=bn_relu(4)).double().train()
    ref_sb.load_state_dict(fast_sb.state_dict())
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast, ref = fast_sb(x_fast), ref_sb.reference_forward(x_ref)
    assert torch.allclose(fast, ref, atol=TOL, rtol=0)
    weights = torch.randn_like(fast)
    (fast * weights).sum().backward()
    (ref * weights).sum().backward()
    assert torch.allclose(x_fast.grad, x_ref.grad, atol=TOL, rtol=0)
    for (name, p_fast), p_ref in zip(fast_sb.named_parameters(), ref_sb.parameters()):
        assert torch.allclose(p_fast.grad, p_ref.grad, atol=TOL, rtol=0), name
    bn_fast, bn_ref = fast_sb.mid[0], ref_sb.mid[0]
    assert torch.allclose(bn_fast.running_mean, bn_ref.running_mean, atol=TOL, rtol=0)
    assert torch.allclose(bn_fast.running_var, bn_ref.running_var, atol=TOL, rtol=0)


def test_train_mode_statistics_cover_sampled_positions_only() -> None:
    """BN's batch mean equals the mean of the conv output over the sampled positions."""
    torch.manual_seed(2)
    sb = SpatialBottleneck(2, 3, 2, sampling="chessboard", mid=bn_relu(3)).double().train()
    sb.mid[0].momentum = 1.0  # running_mean becomes the last batch mean
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    sb(x)
    z = torch.nn.functional.conv2d(x, sb.conv.weight, padding=1)
    mask = sampling_mask(5, 5, "chessboard")
    expected = z[:, :, mask].mean(dim=(0, 2))
    assert torch.allclose(sb.mid[0].running_mean, expected, atol=TOL)
    assert not torch.allclose(sb.mid[0].running_mean, z.mean(dim=(0, 2, 3)), atol=1e-3)


def test_public_shape() -> None:
    sb = SpatialBottleneck(8, 6, 10, stride=2)
    assert sb.conv.weight.shape == (6, 8, 3, 3) and sb.conv.bias is None
    assert sb.deconv.weight.shape == (6, 10, 3, 3) and sb.deconv.bias is None
    assert sb.sampling == "chessboard"


@pytest.mark.parametrize(
    ("sampling", "density"), [("single", 0.25), ("chessboard", 0.5), ("three", 0.75), ("dense", 1.0)]
)
def test_sampled_positions(sampling: str, density: float) -> None:
    assert sampled_positions(8, 8, sampling) == int(64 * density)
    assert sampled_positions(7, 5, sampling) == int(sampling_mask(7, 5, sampling).sum())


def test_aliases_and_bad_sampling() -> None:
    assert resolve_sampling("sb2") == "chessboard"
    with pytest.raises(ConfigError, match="choose one of"):
        SpatialBottleneck(2, 2, 2, sampling="checkers")
    with pytest.raises(ConfigError, match="stride"):
        SpatialBottleneck(2, 2, 2, stride=3)
