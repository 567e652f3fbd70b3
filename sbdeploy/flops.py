"""Multiply-accumulate (MAC) and parameter counts by the rules of ``SB_SPEC.md`` section 3.

MACs of Conv, ConvTranspose and Linear layers are counted with forward hooks on one
forward pass; an SB counts its conv and deconv at the sampled positions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sbdeploy.nn.sampling import sampled_positions
from sbdeploy.nn.sb import SpatialBottleneck


@dataclass(frozen=True)
class Complexity:
    """Size and cost of a network at one input size (batch 1)."""

    params: int
    macs: int
    input_size: tuple[int, int]


def count_params(model: nn.Module) -> int:
    """Number of learnable parameters."""
    return sum(p.numel() for p in model.parameters())


def _conv_macs(module: nn.Conv2d | nn.ConvTranspose2d, inp: torch.Tensor, out: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    per_position = kh * kw * (module.in_channels // module.groups) * module.out_channels
    if isinstance(module, nn.ConvTranspose2d):  # every input position scatters a full kernel
        return inp.shape[2] * inp.shape[3] * per_position
    return out.shape[2] * out.shape[3] * per_position


def _sb_macs(module: SpatialBottleneck, out: torch.Tensor) -> int:
    sampled = sampled_positions(out.shape[2], out.shape[3], module.sampling)
    conv, deconv = module.conv, module.deconv
    return sampled * 9 * (conv.in_channels * conv.out_channels + deconv.in_channels * deconv.out_channels)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int], in_chans: int = 3) -> int:
    """MACs of one forward pass on a ``1 x in_chans x H x W`` input."""
    total = 0
    sb_params = {
        id(p) for m in model.modules() if isinstance(m, SpatialBottleneck) for p in (m.conv.weight, m.deconv.weight)
    }

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, SpatialBottleneck):
            total += _sb_macs(module, out)
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and id(module.weight) not in sb_params:
            total += _conv_macs(module, args[0], out)
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features * out.numel() // out.shape[-1]

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, in_chans, *input_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def complexity(model: nn.Module, input_size: tuple[int, int], in_chans: int = 3) -> Complexity:
    """Parameters and MACs of ``model`` at ``input_size``."""
    return Complexity(params=count_params(model), macs=count_macs(model, input_size, in_chans), input_size=input_size)
