"""CIFAR PyramidNets (Han et al. 2017): additive widening by ``alpha`` over all blocks.

Basic blocks for depth 6n+2, bottleneck blocks for depth 9n+2. The widths grow by
``alpha / (3n)`` per block; shortcuts pool and zero-pad, so they carry no parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.models._registry import check_sb_stages, register_pair, stage_block
from sbdeploy.nn.blocks import PyramidBasicBlock, PyramidBottleneck, SBPyramidBasicBlock, SBPyramidBottleneck


class PyramidNet(nn.Module):
    """PyramidNet for 32x32 inputs: stem conv+BN, three stages, BN-ReLU, pool, fc."""

    def __init__(
        self,
        block: type[nn.Module],
        depth: int,
        alpha: int,
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
        add_rate = alpha / (3 * n)
        stages = check_sb_stages(sb_stages, 3)
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers: list[nn.Module] = []
        width, in_planes = 16.0, 16
        for stage in range(3):
            make_block = stage_block(block, stage + 1, stages, block_options)
            for i in range(n):
                width += add_rate
                layers.append(make_block(in_planes, int(round(width)), 2 if stage > 0 and i == 0 else 1))
                in_planes = int(round(width)) * block.expansion
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        self.num_features = in_planes

    def forward_features(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.layers(self.bn1(self.conv1(x)))))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


register_pair(
    "cifar",
    "cifar_pyramidnet110_a48",
    partial(PyramidNet, PyramidBasicBlock, 110, 48),
    partial(PyramidNet, SBPyramidBasicBlock, 110, 48),
)
register_pair(
    "cifar",
    "cifar_pyramidnet164_a48_bottleneck",
    partial(PyramidNet, PyramidBottleneck, 164, 48),
    partial(PyramidNet, SBPyramidBottleneck, 164, 48),
)
