"""Small members of every zoo family, for whole-network export tests.

Each family is built with its registered network class at the smallest depth the class
allows (one block per stage), so a test exercises the family's stem, every SB block
type with and without downsampling, the shortcut kind and the head, at a fraction of
the registered networks' export time. The registered networks themselves are exported
in ``test_export_zoo.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sbdeploy.models.pyramidnet import PyramidNet
from sbdeploy.models.resnet_cifar import CifarResNet
from sbdeploy.models.resnet_imagenet import ResNet
from sbdeploy.nn.blocks import (
    SBBasicBlock,
    SBBottleneck,
    SBPreActBasicBlock,
    SBPreActBottleneck,
    SBPyramidBasicBlock,
    SBPyramidBottleneck,
)
from sbdeploy.targets import TARGETS

# name -> (builder(sampling, sb_stages=None), default size, odd size)
FAMILIES: dict[str, tuple[Callable[..., nn.Module], tuple[int, int], tuple[int, int]]] = {
    "cifar_preact_basic": (
        lambda s, st=None: CifarResNet(SBPreActBasicBlock, 8, sampling=s, sb_stages=st),
        (32, 32),
        (33, 35),
    ),
    "cifar_preact_bottleneck": (
        lambda s, st=None: CifarResNet(SBPreActBottleneck, 11, sampling=s, sb_stages=st),
        (32, 32),
        (33, 35),
    ),
    "imagenet_basic": (
        lambda s, st=None: ResNet(SBBasicBlock, (1, 1, 1, 1), num_classes=10, sampling=s, sb_stages=st),
        (224, 224),
        (97, 75),
    ),
    "imagenet_bottleneck": (
        lambda s, st=None: ResNet(SBBottleneck, (1, 1, 1, 1), num_classes=10, sampling=s, sb_stages=st),
        (224, 224),
        (97, 75),
    ),
    "pyramid_basic": (
        lambda s, st=None: PyramidNet(SBPyramidBasicBlock, 8, 12, sampling=s, sb_stages=st),
        (32, 32),
        (33, 35),
    ),
    "pyramid_bottleneck": (
        lambda s, st=None: PyramidNet(SBPyramidBottleneck, 11, 12, sampling=s, sb_stages=st),
        (32, 32),
        (33, 35),
    ),
}

PLACEMENTS: dict[str, tuple[int, ...] | None] = {"all": None, "none": (), "one": (2,)}
"""Where a mixed network's SB blocks are (``sb_stages``): every stage (the paper's networks), none (the baseline's
blocks in an SB network), one stage between dense ones."""


def randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (in place)."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return module


def build(family: str, sampling: str, seed: int = 0, placement: str = "all") -> nn.Module:
    """The family's small member (its SB blocks where ``placement`` says) with fixed-seed weights and randomized BN,
    in eval mode."""
    torch.manual_seed(seed)
    return randomize_bn(FAMILIES[family][0](sampling, PLACEMENTS[placement]), seed).eval()


def distinct_forms(*, with_passes: bool = True) -> list[str]:
    """One target spec per distinct form of the table, every row's variants included (``ort-cpu:stacked``).

    Equal lowering, layout and, for ONNX, passes make one form: today ``ort-cuda`` and ``trt``
    share the strided form, so ``ort-cuda`` stands for both; if their rows ever differ, both
    get tested. Without passes (the torch-level matrix, which runs every phase run in each of
    its layouts itself) the layout counts only as phase runs or not.
    """
    forms: dict[tuple[object, ...], str] = {}
    for target in TARGETS.values():
        for form in target.candidates(kernels_built=True):  # the fused form's tests skip where it is not built
            layout = form.layout if with_passes else form.layout.phase_runs
            key = (form.lowering, layout, form.passes if with_passes else ())
            forms.setdefault(key, form.spec)
    return list(forms.values())
