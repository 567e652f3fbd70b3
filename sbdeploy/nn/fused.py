"""The fused SB: one operator per SB, ``torch.ops.sbdeploy.sbconv``, exported as ONNX Runtime's ``SBConv``.

In PyTorch the operator computes the strided training form (:func:`~sbdeploy.nn.lowering.sb_fast`), so a
network in the ``fused`` form runs, traces and exports like any other; the exporter writes each call as
one ``SBConv`` node (:mod:`sbdeploy.export.sbconv`) that sbdeploy's kernel library
(:mod:`sbdeploy.kernels`, ``csrc/``) runs with exact MACs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbdeploy.errors import ConfigError
from sbdeploy.nn.fold import bn_affine
from sbdeploy.nn.lowering import Bias, Mid, register_lowering, sb_fast
from sbdeploy.nn.sampling import conv_output_size


@torch.library.custom_op("sbdeploy::sbconv", mutates_args=())
def sbconv(
    x: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None, stride: int, sampling: str, mid_relu: bool
) -> Tensor:
    """One SB with biases and an optional ReLU between conv and deconv (the kernel's ``mid_relu``)."""
    return sb_fast(x, w1, w2, stride=stride, sampling=sampling, mid=nn.ReLU() if mid_relu else None, b1=b1, b2=b2)


@sbconv.register_fake
def _(
    x: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None, stride: int, sampling: str, mid_relu: bool
) -> Tensor:
    height, width = conv_output_size(x.shape[2], stride), conv_output_size(x.shape[3], stride)
    return x.new_empty((x.shape[0], w2.shape[1], height, width))


def _folded_mid(mid: Mid, w1: Tensor, b1: Bias) -> tuple[Tensor, Bias, bool]:
    """W1 and b1 with an eval-mode BN at the head of ``mid`` folded in, and whether a ReLU follows (all the op applies)."""
    parts = [m for m in (mid if isinstance(mid, nn.Sequential) else [mid]) if m is not None]
    parts = [m for m in parts if not isinstance(m, nn.Identity)]
    if parts and isinstance(parts[0], nn.BatchNorm2d):
        scale, shift = bn_affine(parts.pop(0))  # refuses a training-mode BN
        w1, b1 = w1 * scale[:, None, None, None], shift if b1 is None else b1 * scale + shift
    if parts and not (len(parts) == 1 and isinstance(parts[0], nn.ReLU)):
        raise ConfigError(
            f"the fused SB operator applies a BN and a ReLU between conv and deconv, not {mid}: use another form "
            "(--target ort-cpu:taps)"
        )
    return w1, b1, bool(parts)


@register_lowering("fused")
def sb_fused(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: Mid = None, b1: Bias = None, b2: Bias = None
) -> Tensor:
    """One ``sbdeploy::sbconv`` call (one ``SBConv`` node in ONNX); ``mid``: an eval-mode BN, a ReLU, both or None."""
    w1, b1, relu = _folded_mid(mid, w1, b1)
    return sbconv(x, w1, b1, w2, b2, stride, sampling, relu)
