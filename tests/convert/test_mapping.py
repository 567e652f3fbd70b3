"""Baseline -> SB weight mapping: each weight on its own, and dense sampling computing the baseline exactly (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sbdeploy import create_model, list_models, sbify
from sbdeploy.convert.bottleneck import conv_as_deconv
from sbdeploy.convert.mapping import BLOCK_MAPS, convert, map_regular_block, sb_counterpart
from sbdeploy.errors import ConfigError
from sbdeploy.models._registry import model_info
from sbdeploy.models.pyramidnet import PyramidNet
from sbdeploy.models.resnet_cifar import CifarResNet
from sbdeploy.models.resnet_imagenet import ResNet
from sbdeploy.nn import blocks as B
from sbdeploy.nn.sb import SpatialBottleneck
from tests.export.families import randomize_bn

TOL = 1e-10
REGULAR = {  # baseline block -> (BN between the two convs, BNs outside the SB)
    B.PreActBasicBlock: ("bn2", ("bn1",)),
    B.BasicBlock: ("bn1", ("bn2",)),
    B.PyramidBasicBlock: ("bn2", ("bn1", "bn3")),
}
SIZES = [(8, 8), (9, 7)]  # even and odd


def _block(kind: type[nn.Module], stride: int, in_planes: int = 6, planes: int = 8) -> nn.Module:
    torch.manual_seed(stride)
    return randomize_bn(kind(in_planes, planes, stride), seed=stride).double().eval()


def test_conv_as_deconv_is_the_issues_formula_and_computes_the_conv() -> None:
    k = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    w2 = conv_as_deconv(k)
    assert w2.shape == (3, 5, 3, 3)
    for i, o, a, b in torch.cartesian_prod(*(torch.arange(n) for n in (3, 5, 3, 3))).tolist():
        assert w2[i, o, a, b] == k[o, i, 2 - a, 2 - b]
    z = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    assert torch.allclose(F.conv_transpose2d(z, w2, padding=1), F.conv2d(z, k, padding=1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kind", list(REGULAR), ids=lambda k: k.__name__)
def test_each_weight_of_a_regular_block_is_mapped(kind: type[nn.Module], stride: int) -> None:
    base = _block(kind, stride)
    sb = map_regular_block(base, "chessboard")
    assert type(sb) is BLOCK_MAPS[kind].sb_block and isinstance(sb.sb, SpatialBottleneck)
    assert sb.sb.stride == stride and sb.sb.sampling == "chessboard"
    assert torch.equal(sb.sb.conv.weight, base.conv1.weight)  # SB conv := conv1, same stride
    assert sb.sb.conv.stride == base.conv1.stride
    w2, k2 = sb.sb.deconv.weight, base.conv2.weight
    assert torch.equal(w2, k2.permute(1, 0, 2, 3).flip(2, 3))  # W2[i, o, a, b] = conv2[o, i, 2-a, 2-b]
    mid_bn, outer = REGULAR[kind]
    assert all(
        torch.equal(a, b)
        for a, b in zip(sb.sb.mid[0].state_dict().values(), getattr(base, mid_bn).state_dict().values())
    )
    assert isinstance(sb.sb.mid[1], nn.ReLU)
    for name in outer:
        assert all(
            torch.equal(a, b)
            for a, b in zip(getattr(sb, name).state_dict().values(), getattr(base, name).state_dict().values())
        )
    for name in ("shortcut", "downsample"):  # projection shortcuts copied (stride 2 changes channels too)
        if getattr(base, name, None) is not None:
            assert all(
                torch.equal(a, b)
                for a, b in zip(getattr(sb, name).state_dict().values(), getattr(base, name).state_dict().values())
            )
    mapped = sum(p.numel() for p in sb.state_dict().values())
    assert mapped == sum(p.numel() for p in base.state_dict().values())  # nothing added, nothing dropped


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kind", list(REGULAR), ids=lambda k: k.__name__)
def test_dense_block_equals_the_baseline(kind: type[nn.Module], stride: int, size: tuple[int, int]) -> None:
    base = _block(kind, stride)
    sb = map_regular_block(base, "dense").eval()
    x = torch.randn(3, 6, *size, dtype=torch.float64)
    with torch.no_grad():
        expected, got = base(x), sb(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < TOL
    chess = map_regular_block(base, "chessboard").eval()
    with torch.no_grad():
        assert (chess(x) - expected).abs().max() > 1e-3  # sparse sampling does change the function


NETWORKS = {  # one small network per regular family, every block type with and without downsampling
    "cifar_preact": (lambda: CifarResNet(PreActBasicBlock, 8, num_classes=7), 3),
    "torchvision": (lambda: ResNet(BasicBlock, (1, 1, 1, 1), num_classes=7), 3),
    "pyramidnet": (lambda: PyramidNet(PyramidBasicBlock, 8, 12, num_classes=7), 3),
}


@pytest.mark.parametrize("size", [(32, 32), (33, 35)], ids=["even", "odd"])
@pytest.mark.parametrize("family", list(NETWORKS))
def test_dense_network_equals_the_baseline(family: str, size: tuple[int, int]) -> None:
    build, chans = NETWORKS[family]
    torch.manual_seed(0)
    base = randomize_bn(build()).double().eval()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    sb = sbify(base, sampling="dense")
    assert not any(type(m) in BLOCK_MAPS for m in sb.modules())
    x = torch.randn(2, chans, *size, dtype=torch.float64)
    with torch.no_grad():
        expected, got = base(x), sb(x)
    assert (got - expected).abs().max() < TOL, float((got - expected).abs().max())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the baseline is left alone
    assert not sb.training and next(sb.parameters()).dtype == torch.float64


PreActBasicBlock, BasicBlock, PyramidBasicBlock = B.PreActBasicBlock, B.BasicBlock, B.PyramidBasicBlock


@pytest.mark.parametrize("placement", [(), (1,), (2,), (1, 3), None], ids=["none", "s1", "s2", "s1+3", "all"])
@pytest.mark.parametrize("family", list(NETWORKS))
def test_dense_mixed_network_equals_the_baseline(family: str, placement: tuple[int, ...] | None) -> None:
    build, chans = NETWORKS[family]
    torch.manual_seed(0)
    base = randomize_bn(build()).double().eval()
    mixed = sbify(base, sampling="dense", stages=placement)
    stage_of = B.block_stages(mixed)
    for name, stage in stage_of.items():  # SB blocks exactly where placed, the other blocks the baseline's own
        is_sb = type(mixed.get_submodule(name)) not in BLOCK_MAPS
        assert is_sb == (placement is None or stage in placement), name
        if not is_sb:
            block, original = mixed.get_submodule(name), base.get_submodule(name)
            assert all(torch.equal(a, b) for a, b in zip(block.state_dict().values(), original.state_dict().values()))
    x = torch.randn(2, chans, 33, 35, dtype=torch.float64)
    with torch.no_grad():
        assert (mixed(x) - base(x)).abs().max() < TOL


def test_a_mixed_bottleneck_network_fits_only_its_placed_blocks() -> None:
    torch.manual_seed(0)
    base = randomize_bn(CifarResNet(B.PreActBottleneck, 20, num_classes=7)).double().eval()
    every, one = convert(base, "chessboard"), convert(base, "chessboard", stages=(2,))
    assert set(one.bottleneck_fits) == {n for n, s in B.block_stages(base).items() if s == 2}
    for name in one.bottleneck_fits:  # the same fit as in the all-SB network, so the same stated error
        assert one.bottleneck_fits[name].relative_error == pytest.approx(every.bottleneck_fits[name].relative_error)
    dense = convert(base, "dense", stages=(2,))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():  # rank C/2 cannot be exact: the error is the fit's, bounded by it block by block
        assert 0 < dense.bottleneck_error < 1 and (dense.model(x) - base(x)).abs().max() > 0


@pytest.mark.parametrize(("name", "stages"), [("cifar_resnet20", (2, 3)), ("resnet18", (1,)), ("resnet50", (4,))])
def test_sbified_stages_are_the_registered_mixed_network(name: str, stages: tuple[int, ...]) -> None:
    base = create_model(name, num_classes=10)
    sb = sbify(base, sampling="single", stages=stages)
    twin = create_model(sb_counterpart(name), num_classes=10, sampling="single", sb_stages=stages)
    assert list(sb.state_dict()) == list(twin.state_dict())
    twin.load_state_dict(sb.state_dict(), strict=True)
    with pytest.raises(ConfigError, match="has stages"):
        sbify(base, stages=(5,))


@pytest.mark.parametrize("name", ["cifar_resnet20", "resnet18", "cifar_pyramidnet110_a48"])
def test_sbified_zoo_baseline_is_its_registered_sb_network(name: str) -> None:
    base = create_model(name, num_classes=10)
    sb = sbify(base, sampling="three")
    twin = create_model(sb_counterpart(name), num_classes=10, sampling="three")
    assert list(sb.state_dict()) == list(twin.state_dict())
    twin.load_state_dict(sb.state_dict(), strict=True)
    assert all(m.sampling == "three" for m in sb.modules() if isinstance(m, SpatialBottleneck))


def test_every_baseline_has_an_sb_twin() -> None:
    baselines = [n for n in list_models() if not model_info(n).is_sb]
    assert baselines and all(model_info(sb_counterpart(n)).baseline == n for n in baselines)
    with pytest.raises(ConfigError, match="SB network already"):
        sb_counterpart("cifar_resnet20_sb")


def test_refuses_an_sb_network_and_unknown_sampling() -> None:
    with pytest.raises(ConfigError, match="SB network already"):
        sbify(create_model("cifar_resnet20_sb"))
    with pytest.raises(ConfigError, match="unknown sampling"):
        sbify(create_model("cifar_resnet20"), sampling="diagonal")
