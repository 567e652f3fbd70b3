"""ImageNet ResNets in torchvision's layout (post-activation) and their SB variants.

ResNet-18/34 use basic blocks, ResNet-50/101 bottleneck blocks (stride on the 3x3).
State-dict keys of the baselines match torchvision's ``resnetNN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import Tensor, nn

from sbdeploy.models._registry import check_sb_stages, register_pair, stage_block
from sbdeploy.nn.blocks import BasicBlock, Bottleneck, SBBasicBlock, SBBottleneck


class ResNet(nn.Module):
    """torchvision ResNet: 7x7/2 stem, 3x3/2 max pool, four stages, pool, fc."""

    sequential_stages = ("layer1", "layer2", "layer3", "layer4")
    """Stages that ``forward`` applies one after the other with nothing between them
    (:func:`sbdeploy.nn.deploy.deploy_form` keeps them in one phase-layout run)."""

    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        sb_stages: Sequence[int] | None = None,
        **block_options: str,
    ) -> None:
        """``sb_stages``: the stages (1-4) of an SB network that hold SB blocks, the others baseline ones (None: all)."""
        super().__init__()
        stages = check_sb_stages(sb_stages, 4)
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_planes = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            make_block = stage_block(block, index, stages, block_options)
            blocks = []
            for i in range(count):
                blocks.append(make_block(in_planes, planes, 2 if index > 1 and i == 0 else 1))
                in_planes = planes * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        self.fc = nn.Linear(in_planes, num_classes)
        self.num_features = in_planes
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


for _name, _blocks, _sb_blocks, _layers in (
    ("resnet18", BasicBlock, SBBasicBlock, (2, 2, 2, 2)),
    ("resnet34", BasicBlock, SBBasicBlock, (3, 4, 6, 3)),
    ("resnet50", Bottleneck, SBBottleneck, (3, 4, 6, 3)),
    ("resnet101", Bottleneck, SBBottleneck, (3, 4, 23, 3)),
):
    register_pair("imagenet", _name, partial(ResNet, _blocks, _layers), partial(ResNet, _sb_blocks, _layers))
