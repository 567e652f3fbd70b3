"""Kernel identities the weight mappings rest on."""

from __future__ import annotations

from torch import Tensor


def conv_as_deconv(weight: Tensor) -> Tensor:
    """The ConvTranspose2d weight (stride 1, padding 1) that computes ``conv2d(., weight, padding=1)``.

    ``W2[i, o, a, b] = weight[o, i, 2 - a, 2 - b]``: channels transposed, kernel flipped in space.
    """
    return weight.flip(2, 3).transpose(0, 1).contiguous()
