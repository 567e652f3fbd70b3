"""CIFAR pre-activation ResNets (He et al. 2016) and their SB variants.

Basic blocks for depth 6n+2 (20, 32, 44, 56, 110), bottleneck blocks for depth 9n+2
(164); three stages of 16/32/64 channels (x4 after a bottleneck).
"""

from __future__ import annotations

from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.models._registry import register_model
from sbdeploy.nn.blocks import PreActBasicBlock, PreActBottleneck, SBPreActBasicBlock, SBPreActBottleneck


class CifarResNet(nn.Module):
    """Pre-activation ResNet for 32x32 inputs: stem conv, three stages, BN-ReLU, pool, fc."""

    def __init__(
        self, block: type[nn.Module], depth: int, *, num_classes: int = 10, in_chans: int = 3, **block_options: str
    ) -> None:
        super().__init__()
        per_block = 9 if block.expansion == 4 else 6
        if (depth - 2) % per_block:
            raise ValueError(f"depth must be {per_block}n+2 for {block.__name__}, got {depth}")
        n = (depth - 2) // per_block
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        make_block = partial(block, **block_options)
        layers: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(make_block(in_planes, planes, stride))
                in_planes = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        self.num_features = in_planes

    def forward_features(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.layers(self.conv1(x))))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("cifar")
def cifar_resnet20(*, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    return CifarResNet(PreActBasicBlock, 20, num_classes=num_classes, in_chans=in_chans)


@register_model("cifar", baseline="cifar_resnet20")
def cifar_resnet20_sb(*, num_classes: int = 10, in_chans: int = 3, sampling: str = "chessboard") -> nn.Module:
    return CifarResNet(SBPreActBasicBlock, 20, num_classes=num_classes, in_chans=in_chans, sampling=sampling)


@register_model("cifar")
def cifar_resnet32(*, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    return CifarResNet(PreActBasicBlock, 32, num_classes=num_classes, in_chans=in_chans)


@register_model("cifar", baseline="cifar_resnet32")
def cifar_resnet32_sb(*, num_classes: int = 10, in_chans: int = 3, sampling: str = "chessboard") -> nn.Module:
    return CifarResNet(SBPreActBasicBlock, 32, num_classes=num_classes, in_chans=in_chans, sampling=sampling)


@register_model("cifar")
def cifar_resnet44(*, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    return CifarResNet(PreActBasicBlock, 44, num_classes=num_classes, in_chans=in_chans)


@register_model("cifar", baseline="cifar_resnet44")
def cifar_resnet44_sb(*, num_classes: int = 10, in_chans: int = 3, sampling: str = "chessboard") -> nn.Module:
    return CifarResNet(SBPreActBasicBlock, 44, num_classes=num_classes, in_chans=in_chans, sampling=sampling)


@register_model("cifar")
def cifar_resnet56(*, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    return CifarResNet(PreActBasicBlock, 56, num_classes=num_classes, in_chans=in_chans)


@register_model("cifar", baseline="cifar_resnet56")
def cifar_resnet56_sb(*, num_classes: int = 10, in_chans: int = 3, sampling: str = "chessboard") -> nn.Module:
    return CifarResNet(SBPreActBasicBlock, 56, num_classes=num_classes, in_chans=in_chans, sampling=sampling)


@register_model("cifar")
def cifar_resnet110(*, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    return CifarResNet(PreActBasicBlock, 110, num_classes=num_classes, in_chans=in_chans)


@register_model("cifar", baseline="cifar_resnet110")
def cifar_resnet110_sb(*, num_classes: int = 10, in_chans: int = 3, sampling: str = "chessboard") -> nn.Module:
    return CifarResNet(SBPreActBasicBlock, 110, num_classes=num_classes, in_chans=in_chans, sampling=sampling)


@register_model("cifar")
def cifar_resnet164(*, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    return CifarResNet(PreActBottleneck, 164, num_classes=num_classes, in_chans=in_chans)


@register_model("cifar", baseline="cifar_resnet164")
def cifar_resnet164_sb(*, num_classes: int = 10, in_chans: int = 3, sampling: str = "chessboard") -> nn.Module:
    return CifarResNet(SBPreActBottleneck, 164, num_classes=num_classes, in_chans=in_chans, sampling=sampling)
