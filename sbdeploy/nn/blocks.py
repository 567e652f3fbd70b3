"""Residual blocks, each with its spatial-bottleneck (SB) twin (``SB_SPEC.md`` section 2).

Pre-activation (CIFAR ResNets), post-activation (torchvision ImageNet ResNets) and PyramidNet
blocks, basic and bottleneck. An SB basic block replaces both 3x3 convs by one SB with BN +
ReLU inside; an SB bottleneck replaces its 3x3 conv by a linear SB with C_mid = C / 2. Every
SB block describes itself (:class:`BlockDescription`) for the deploy forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.nn.sb import SpatialBottleneck


@dataclass(frozen=True)
class Shortcut:
    """The shortcut branch of a residual block: ``identity``, ``projection`` (1x1 conv, ``bn`` unless folded), ``pyramid``.

    ``reads`` ``entry``: the output of the block's entry ops (a pre-activation projection reads ``ReLU(BN(x))``).
    """

    kind: Literal["identity", "projection", "pyramid"]
    reads: Literal["input", "entry"] = "input"
    conv: nn.Conv2d | None = None
    bn: nn.BatchNorm2d | None = None
    stride: int = 1
    out_channels: int = 0


@dataclass(frozen=True)
class BlockDescription:
    """An SB block as data: ``final(after(SB(before(entry(x)))) + shortcut(x or entry(x)))``, point-wise or 1x1 ops."""

    entry: tuple[nn.Module, ...]
    before: tuple[nn.Module, ...]
    sb: SpatialBottleneck
    after: tuple[nn.Module, ...]
    shortcut: Shortcut
    final: tuple[nn.Module, ...]


_RELU = nn.ReLU()


def ops(*modules: nn.Module | None) -> tuple[nn.Module, ...]:
    """The listed modules, without the Identity ones (and Nones) a folded BN leaves."""
    return tuple(m for m in modules if m is not None and not isinstance(m, nn.Identity))


def apply_ops(modules: Sequence[nn.Module], x: Tensor) -> Tensor:
    """Run ``modules`` one after the other."""
    for m in modules:
        x = m(x)
    return x


def _preact_shortcut(conv: nn.Conv2d | None) -> Shortcut:
    return Shortcut("identity") if conv is None else Shortcut("projection", reads="entry", conv=conv)


def _torchvision_shortcut(downsample: nn.Sequential | None) -> Shortcut:
    if downsample is None:
        return Shortcut("identity")
    bn = downsample[1] if len(downsample) > 1 and isinstance(downsample[1], nn.BatchNorm2d) else None
    return Shortcut("projection", conv=downsample[0], bn=bn)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm followed by ReLU: the non-linearity kept inside an SB regular block."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def sb_regular(in_planes: int, planes: int, stride: int, sampling: str) -> SpatialBottleneck:
    """SB replacing two 3x3 convs, BN + ReLU between them on the sampled positions."""
    return SpatialBottleneck(in_planes, planes, planes, stride=stride, sampling=sampling, mid=bn_relu(planes))


def sb_linear(planes: int, stride: int, sampling: str) -> SpatialBottleneck:
    """Linear SB replacing one 3x3 conv, C_mid = C / 2 so the parameter count is kept."""
    return SpatialBottleneck(planes, max(1, planes // 2), planes, stride=stride, sampling=sampling)


class _LinearSBSpatial:
    """Mixin for a bottleneck block whose 3x3 conv (``_make_spatial``) is a linear SB."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, sampling: str = "chessboard") -> None:
        self.sampling = sampling
        super().__init__(in_planes, planes, stride)  # type: ignore[call-arg]

    def _make_spatial(self, planes: int, stride: int) -> nn.Module:
        return sb_linear(planes, stride, self.sampling)


# --- pre-activation (CIFAR) -------------------------------------------------------------


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, projection on change."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.shortcut = conv1x1(in_planes, planes, stride) if stride != 1 or in_planes != planes else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class SBPreActBasicBlock(nn.Module):
    """``x + Deconv(S(ReLU(BN2(S(Conv(ReLU(BN1(x))))))))``."""

    expansion = 1
    dense = PreActBasicBlock  # the baseline block it replaces (in a mixed network's other stages)

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, sampling: str = "chessboard") -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.sb = sb_regular(in_planes, planes, stride, sampling)
        self.shortcut = conv1x1(in_planes, planes, stride) if stride != 1 or in_planes != planes else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        return self.sb(out) + shortcut

    def describe(self) -> BlockDescription:
        return BlockDescription(ops(self.bn1, _RELU), (), self.sb, (), _preact_shortcut(self.shortcut), ())


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 (x4 channels)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = self._make_spatial(planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.shortcut = conv1x1(in_planes, out_planes, stride) if stride != 1 or in_planes != out_planes else None

    def _make_spatial(self, planes: int, stride: int) -> nn.Module:
        return conv3x3(planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class SBPreActBottleneck(_LinearSBSpatial, PreActBottleneck):
    """Pre-activation bottleneck whose 3x3 conv is a linear SB (C_mid = C / 2)."""

    dense = PreActBottleneck

    def describe(self) -> BlockDescription:
        assert isinstance(self.conv2, SpatialBottleneck)
        before, after = ops(self.conv1, self.bn2, _RELU), ops(self.bn3, _RELU, self.conv3)
        return BlockDescription(ops(self.bn1, _RELU), before, self.conv2, after, _preact_shortcut(self.shortcut), ())


# --- post-activation (ImageNet, torchvision layout) -------------------------------------


def projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential | None:
    """torchvision's downsample branch (1x1 conv + BN), or None when shapes match."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    """torchvision basic block: conv3x3-BN-ReLU-conv3x3-BN, add, ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = projection(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


class SBBasicBlock(nn.Module):
    """``ReLU(shortcut(x) + BN2(Deconv(S(ReLU(BN1(S(Conv(x))))))))``."""

    expansion = 1
    dense = BasicBlock  # the baseline block it replaces (in a mixed network's other stages)

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, sampling: str = "chessboard") -> None:
        super().__init__()
        self.sb = sb_regular(in_planes, planes, stride, sampling)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = projection(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn2(self.sb(x)) + identity)

    def describe(self) -> BlockDescription:
        return BlockDescription((), (), self.sb, ops(self.bn2), _torchvision_shortcut(self.downsample), (_RELU,))


class Bottleneck(nn.Module):
    """torchvision bottleneck (stride on the 3x3): 1x1-BN-ReLU-3x3-BN-ReLU-1x1-BN, add, ReLU."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = self._make_spatial(planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.downsample = projection(in_planes, out_planes, stride)

    def _make_spatial(self, planes: int, stride: int) -> nn.Module:
        return conv3x3(planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + identity)


class SBBottleneck(_LinearSBSpatial, Bottleneck):
    """torchvision bottleneck whose 3x3 conv is a linear SB (C_mid = C / 2)."""

    dense = Bottleneck

    def describe(self) -> BlockDescription:
        assert isinstance(self.conv2, SpatialBottleneck)
        before, after = ops(self.conv1, self.bn1, _RELU), ops(self.bn2, _RELU, self.conv3, self.bn3)
        return BlockDescription((), before, self.conv2, after, _torchvision_shortcut(self.downsample), (_RELU,))


# --- PyramidNet (additive widening) ----------------------------------------------------


def pad_channels(x: Tensor, channels: int) -> Tensor:
    """Zero channels (axis -3) appended up to ``channels``: PyramidNet's widening shortcut."""
    missing = channels - int(x.shape[-3])
    return F.pad(x, (0, 0, 0, 0, 0, missing)) if missing > 0 else x


def pyramid_shortcut(x: Tensor, out_planes: int, stride: int) -> Tensor:
    """PyramidNet's parameter-free shortcut: 2x2 average pool when strided, zero channels."""
    if stride != 1:
        x = F.avg_pool2d(x, 2, stride=2, ceil_mode=True)
    return pad_channels(x, out_planes)


class PyramidBasicBlock(nn.Module):
    """PyramidNet basic block: BN-conv3x3-BN-ReLU-conv3x3-BN, add the padded shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn3 = nn.BatchNorm2d(planes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.bn1(x))
        out = self.bn3(self.conv2(F.relu(self.bn2(out))))
        return out + pyramid_shortcut(x, out.shape[1], self.stride)


class SBPyramidBasicBlock(nn.Module):
    """``shortcut(x) + BN3(Deconv(S(ReLU(BN2(S(Conv(BN1(x))))))))``."""

    expansion = 1
    dense = PyramidBasicBlock  # the baseline block it replaces (in a mixed network's other stages)

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, sampling: str = "chessboard") -> None:
        super().__init__()
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.sb = sb_regular(in_planes, planes, stride, sampling)
        self.bn3 = nn.BatchNorm2d(planes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.sb(self.bn1(x)))
        return out + pyramid_shortcut(x, out.shape[1], self.stride)

    def describe(self) -> BlockDescription:
        shortcut = Shortcut("pyramid", stride=self.stride, out_channels=self.sb.deconv.out_channels)
        return BlockDescription((), ops(self.bn1), self.sb, ops(self.bn3), shortcut, ())


class PyramidBottleneck(nn.Module):
    """PyramidNet bottleneck: BN-1x1-BN-ReLU-3x3-BN-ReLU-1x1-BN (x4), add padded shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = self._make_spatial(planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn4 = nn.BatchNorm2d(planes * self.expansion)

    def _make_spatial(self, planes: int, stride: int) -> nn.Module:
        return conv3x3(planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn2(self.conv1(self.bn1(x))))
        out = F.relu(self.bn3(self.conv2(out)))
        out = self.bn4(self.conv3(out))
        return out + pyramid_shortcut(x, out.shape[1], self.stride)


class SBPyramidBottleneck(_LinearSBSpatial, PyramidBottleneck):
    """PyramidNet bottleneck whose 3x3 conv is a linear SB (C_mid = C / 2)."""

    dense = PyramidBottleneck

    def describe(self) -> BlockDescription:
        assert isinstance(self.conv2, SpatialBottleneck)
        shortcut = Shortcut("pyramid", stride=self.stride, out_channels=self.conv3.out_channels)
        before, after = ops(self.bn1, self.conv1, self.bn2, _RELU), ops(self.bn3, _RELU, self.conv3, self.bn4)
        return BlockDescription((), before, self.conv2, after, shortcut, ())


def block_stages(model: nn.Module) -> dict[str, int]:
    """The stage (numbered from 1) of each residual block of a zoo network, by module name: a strided block starts
    the next stage (torchvision's first stage follows a pooling, CIFAR's the stem: neither is strided)."""
    stages: dict[str, int] = {}
    stage = 1
    for name, module in model.named_modules():
        if hasattr(type(module), "expansion"):
            strided = any(m.stride[0] > 1 for m in module.modules() if isinstance(m, nn.Conv2d))
            stage += bool(stages) and strided
            stages[name] = stage
    return stages


def describe_block(module: nn.Module) -> BlockDescription | None:
    """The description of an SB block (a module with ``describe()``), None for anything else."""
    describe = getattr(module, "describe", None)
    return describe() if callable(describe) else None
