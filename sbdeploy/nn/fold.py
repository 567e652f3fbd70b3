"""The one place where an eval-mode BatchNorm becomes part of the layer before it (torch side).

A BN after a convolution (or after an SB's transposed convolution) is an affine map per
output channel: ``fold_bn(layer, bn)`` scales the layer's weight and sets its bias so that
the layer alone computes ``bn(layer(x))``. A BN *before* a padded convolution cannot fold
(the zero padding would see the shift) and stays a point-wise op.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbdeploy.errors import ConfigError


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` of an eval-mode BN: ``bn(x) = scale * x + shift`` per channel."""
    if bn.training:
        raise ConfigError(
            "the deploy forms are for inference: call model.eval() first (BN folding needs running stats)"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ConfigError("BN folding needs a BatchNorm2d with running statistics (track_running_stats=True)")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def fold_bn(layer: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """Fold the eval-mode ``bn`` that follows ``layer`` into ``layer``'s weight and bias, in place."""
    transposed = isinstance(layer, nn.ConvTranspose2d)
    if transposed and layer.groups != 1:
        raise ConfigError("fold_bn folds into an ungrouped ConvTranspose2d only")
    if layer.out_channels != bn.num_features:
        raise ConfigError(
            f"fold_bn: {type(layer).__name__} has {layer.out_channels} output channels, the BN {bn.num_features}"
        )
    scale, shift = bn_affine(bn)
    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)  # the output channels' axis of the weight
    with torch.no_grad():
        weight = layer.weight * scale.reshape(shape)
        bias = shift if layer.bias is None else layer.bias * scale + shift
        layer.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
