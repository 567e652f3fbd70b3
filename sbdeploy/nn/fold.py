"""The one place where an eval-mode BatchNorm becomes part of the layer before it (torch side).

A BN after a convolution (or after an SB's transposed convolution) is an affine map per
output channel: ``fold_bn(layer, bn)`` scales the layer's weight and sets its bias so that
the layer alone computes ``bn(layer(x))``. :func:`sbdeploy.nn.deploy.deploy_form` uses it
for every BN it can fold: the SB's mid BN into the SB conv, the BN after a linear SB or a
torchvision SB into the deconv, a projection's BN into its 1x1 conv, a 1x1 conv's BN into
it. A BN *before* a padded convolution cannot fold (the zero padding would see the shift)
and stays a point-wise op (:func:`bn_affine` gives its scale and shift).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbdeploy.errors import ConfigError


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` of an eval-mode BN: ``bn(x) = scale * x + shift`` per channel.

    Raises:
        ConfigError: ``bn`` is in training mode or has no running statistics.
    """
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
    """Fold the eval-mode ``bn`` that follows ``layer`` into ``layer``'s weight and bias, in place.

    The output channels are axis 0 of a Conv2d weight and axis 1 of a ConvTranspose2d
    weight (``groups`` = 1).
    """
    transposed = isinstance(layer, nn.ConvTranspose2d)
    if transposed and layer.groups != 1:
        raise ConfigError("fold_bn folds into an ungrouped ConvTranspose2d only")
    if layer.out_channels != bn.num_features:
        raise ConfigError(
            f"fold_bn: {type(layer).__name__} has {layer.out_channels} output channels, the BN {bn.num_features}"
        )
    scale, shift = bn_affine(bn)
    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
    with torch.no_grad():
        weight = layer.weight * scale.reshape(shape)
        bias = shift if layer.bias is None else layer.bias * scale + shift
        layer.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
