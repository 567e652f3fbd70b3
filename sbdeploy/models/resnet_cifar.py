"""CIFAR pre-activation ResNets (He et al. 2016) and their SB variants.

Basic blocks for depth 6n+2 (20, 32, 44, 56, 110), bottleneck blocks for depth 9n+2
(164); three stages of 16/32/64 channels (x4 after a bottleneck).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.models._registry import check_sb_stages, register_pair, stage_block
from sbdeploy.nn.blocks import PreActBasicBlock, PreActBottleneck, SBPreActBasicBlock, SBPreActBottleneck


class CifarResNet(nn.Module):
    """Pre-activation ResNet for 32x32 inputs: stem conv, three stages, BN-ReLU, pool, fc."""

    def __init__(
        self,
        block: type[nn.Module],
        depth: int,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        sb_stages: Sequence[int] | None = None,
        **block_options: str,
    ) -> None:
        """``sb_stages``: the stages (1-3) of an SB network that hold SB blocks, the others baseline ones (None: all)."""
        super().__init__()
        per_block = 9 if block.expansion == 4 else 6
        if (depth - 2) % per_block:
            raise ValueError(f"depth must be {per_block}n+2 for {block.__name__}, got {depth}")
        n = (depth - 2) // per_block
        stages = check_sb_stages(sb_stages, 3)
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64)):
            make_block = stage_block(block, stage + 1, stages, block_options)
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


for _depth in (20, 32, 44, 56, 110):
    register_pair(
        "cifar",
        f"cifar_resnet{_depth}",
        partial(CifarResNet, PreActBasicBlock, _depth),
        partial(CifarResNet, SBPreActBasicBlock, _depth),
    )
register_pair(
    "cifar",
    "cifar_resnet164",
    partial(CifarResNet, PreActBottleneck, 164),
    partial(CifarResNet, SBPreActBottleneck, 164),
)
