"""The stacked phase layout: the four phases of a tensor side by side in its channels.

``S = [x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]]``
concatenated along channels (``[N, 4C, H/2, W/2]``, phase-major, :data:`PHASES` order).
An SB regular block then takes two convs per sampled parity: the conv part reads all
four phases at once, the deconv part writes all four output phases at once, each with
a kernel over the union of its phases' tap offsets (zero taps elsewhere). That costs
more MACs than the exact tap convs of the list layout (:mod:`sbdeploy.nn.phase`; 64
instead of 36 multiply-accumulates per 2x2 cell and C^2 for chessboard, the baseline
takes 72) but about a quarter of the nodes: where every node is small (batch 1, CIFAR
sizes) ONNX Runtime's per-node cost dominates and this layout is the faster one.

Kernels are built once from the block's weights (eval mode) and kept as buffers, so an
export holds them as constants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.nn.blocks import SBBasicBlock, SBPreActBasicBlock
from sbdeploy.nn.lowering import PHASES, conv_at, conv_taps, deconv_taps, fold_mid
from sbdeploy.nn.sb import SAMPLINGS, SpatialBottleneck, resolve_sampling

Taps = list[tuple[int, int]]


def _merged_kernel(weight: Tensor, taps: dict[tuple[int, int], tuple[Taps, Taps]]) -> tuple[Tensor, tuple[int, int]]:
    """One conv kernel for several (out block, in block) pairs of ``weight`` ([O, I, 3, 3]).

    ``taps[(o, i)]`` = (row taps, column taps) as (offset, kernel index) lists. Returns the
    kernel ``[O * out blocks, I * in blocks, rows, cols]`` over the union of the offsets and
    the (row, column) offset of its first tap.
    """
    n_out = 1 + max(o for o, _ in taps)
    n_in = 1 + max(i for _, i in taps)
    row_lo = min(r[0][0] for r, _ in taps.values())
    row_hi = max(r[-1][0] for r, _ in taps.values())
    col_lo = min(c[0][0] for _, c in taps.values())
    col_hi = max(c[-1][0] for _, c in taps.values())
    out_ch, in_ch = weight.shape[:2]
    kernel = weight.new_zeros(n_out * out_ch, n_in * in_ch, row_hi - row_lo + 1, col_hi - col_lo + 1)
    for (o, i), (rows, cols) in taps.items():
        for row, k in rows:
            for col, kk in cols:
                kernel[o * out_ch : (o + 1) * out_ch, i * in_ch : (i + 1) * in_ch, row - row_lo, col - col_lo] = weight[:, :, k, kk]
    return kernel, (row_lo, col_lo)


def _tile(v: Tensor) -> Tensor:
    return v.repeat(len(PHASES))


class StackedBlock(nn.Module):
    """An eval-mode SB regular block (pre- or post-activation) on the stacked layout.

    Built from a block prepared by :func:`sbdeploy.nn.phase.deploy_form` (``sb`` lowered,
    a post-activation block's BN2 folded into it); even input sizes (and output sizes) only.
    """

    def __init__(self, block: nn.Module, sb: SpatialBottleneck, post: nn.BatchNorm2d | None) -> None:
        super().__init__()
        assert isinstance(block, (SBPreActBasicBlock, SBBasicBlock))
        self.pre_activation = isinstance(block, SBPreActBasicBlock)
        self.stride = stride = sb.stride
        with torch.no_grad():
            self.bn1 = None
            if self.pre_activation:  # BN1 with its parameters repeated for the four phases
                bn1 = block.bn1
                like = {"dtype": bn1.running_mean.dtype, "device": bn1.running_mean.device}
                self.bn1 = nn.BatchNorm2d(len(PHASES) * bn1.num_features, eps=bn1.eps, **like).eval()
                for name in ("running_mean", "running_var", "weight", "bias"):
                    getattr(self.bn1, name).copy_(_tile(getattr(bn1, name)))
            mid = fold_mid(sb.mid)
            w1 = sb.conv.weight if mid.scale is None else sb.conv.weight * mid.scale[:, None, None, None]
            self.mid_relu = mid.relu
            w2 = sb.deconv.weight.transpose(0, 1)  # as a Conv weight [out, mid, 3, 3]
            out_bias = None
            if post is not None:
                folded = fold_mid(post)
                assert folded.scale is not None and folded.bias is not None
                w2, out_bias = w2 * folded.scale[:, None, None, None], _tile(folded.bias)
            self.parts = nn.ModuleList()
            for number, (a, b) in enumerate(SAMPLINGS[resolve_sampling(sb.sampling)]):
                conv, conv_start = _merged_kernel(w1, {
                    (0, i): (conv_taps(p, a, stride), conv_taps(q, b, stride)) for i, (p, q) in enumerate(PHASES)
                })  # fmt: skip
                deconv, deconv_start = _merged_kernel(w2, {
                    (o, 0): (deconv_taps(r, a), deconv_taps(c, b)) for o, (r, c) in enumerate(PHASES)
                })  # fmt: skip
                part = nn.Module()
                part.register_buffer("conv", conv)
                part.register_buffer("conv_bias", mid.bias)
                part.register_buffer("deconv", deconv)
                part.register_buffer("deconv_bias", out_bias if number == 0 else None)
                part.conv_start, part.deconv_start = conv_start, deconv_start
                self.parts.append(part)
            projection = block.shortcut if self.pre_activation else (None if block.downsample is None else block.downsample[0])
            kernel = None if projection is None else self._shortcut_kernel(projection.weight[:, :, 0, 0])
            bias = None
            if kernel is not None and isinstance(block, SBBasicBlock):  # torchvision: the projection's BN folded in
                assert block.downsample is not None
                folded = fold_mid(block.downsample[1])
                assert folded.scale is not None and folded.bias is not None
                kernel, bias = kernel * _tile(folded.scale)[:, None, None, None], _tile(folded.bias)
            self.register_buffer("shortcut", kernel)
            self.register_buffer("shortcut_bias", bias)

    def _shortcut_kernel(self, w: Tensor) -> Tensor:
        """A 1x1 projection on the stacked layout: block-diagonal at stride 1; at stride 2
        output phase (r, c) reads input phase (0, 0) at (2i + r, 2j + c)."""
        if self.stride == 1:
            return torch.block_diag(*[w] * len(PHASES))[:, :, None, None]
        taps = {(o, 0): ([(r, 0)], [(c, 0)]) for o, (r, c) in enumerate(PHASES)}
        kernel, start = _merged_kernel(w[:, :, None, None], taps)
        assert start == (0, 0) and kernel.shape[2:] == (2, 2)
        in_ch = w.shape[1]  # the kernel reads the first in_ch channels (phase (0, 0)) of the stacked input
        return F.pad(kernel, (0, 0, 0, 0, 0, (len(PHASES) - 1) * in_ch))

    def forward(self, s: Tensor) -> Tensor:
        inner = s if self.bn1 is None else F.relu(self.bn1(s))  # pre-activation: the projection reads it too
        acc = s if self.shortcut is None else F.conv2d(inner, self.shortcut, self.shortcut_bias, stride=self.stride)
        size = (int(s.shape[2]) // self.stride, int(s.shape[3]) // self.stride)
        for part in self.parts:
            z = conv_at(inner, part.conv, part.conv_start, size, stride=self.stride, bias=part.conv_bias)
            z = F.relu(z) if self.mid_relu else z
            acc = acc + conv_at(z, part.deconv, part.deconv_start, size, bias=part.deconv_bias)
        return acc if self.pre_activation else F.relu(acc)


def to_stacked(x: Tensor) -> Tensor:
    """``[N, C, H, W]`` (even H, W) -> ``[N, 4C, H/2, W/2]``: one stride-2 conv with a one-hot kernel (exact)."""
    channels = int(x.shape[1])
    one_hot = x.new_tensor([[[1.0 if (i, j) == phase else 0.0 for j in range(2)] for i in range(2)] for phase in PHASES])
    eye = torch.eye(channels, dtype=x.dtype, device=x.device)
    kernel = (one_hot[:, None, None] * eye[None, :, :, None, None]).reshape(len(PHASES) * channels, channels, 2, 2)
    return F.conv2d(x, kernel, stride=2)


def from_stacked(s: Tensor) -> Tensor:
    """Inverse of :func:`to_stacked` (a DepthToSpace in ONNX's DCR order, as Reshape-Transpose-Reshape)."""
    h, w = int(s.shape[2]), int(s.shape[3])
    channels = int(s.shape[1]) // len(PHASES)
    return s.reshape(-1, 2, 2, channels, h, w).permute(0, 3, 4, 1, 5, 2).reshape(-1, channels, 2 * h, 2 * w)
