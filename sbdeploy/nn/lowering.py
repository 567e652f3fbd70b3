"""Deploy lowerings of the SB operator that run fast on inference engines (eval mode only).

Both forms compute exactly :func:`sbdeploy.nn.sb.sb_reference` (no extra MACs: every
multiply-accumulate is one of the SB's sampled conv or deconv taps) and are written
with plain torch ops, so any ONNX exporter traces them:

* :func:`sb_subpixel` (for CPU engines): the conv part is one strided Conv per sampled
  parity, with BN + ReLU of ``mid`` folded into it; the transposed convolution is split
  into its *sub-pixel phases*: output phase ``(r, c)`` (positions ``(2i + r, 2j + c)``)
  receives from subgroup ``(a, b)`` a small Conv whose kernel holds only the taps of W2
  that connect them (1x1, 1x2, 2x1 or 2x2). The four phases are interleaved once
  (``DepthToSpace``). No ConvTranspose, whose CPU kernels (GEMM + col2im, one image
  at a time) run several times slower per MAC than a Conv.
* :func:`sb_strided` (for GPU engines, where ConvTranspose is a native kernel): one
  strided Conv and one stride-2 ConvTranspose per sampled parity, no packing.

Asymmetric padding is written as ``F.pad`` then ``conv2d``; the ONNX pass
:func:`sbdeploy.passes.pad_fusion.fuse_pads` folds each such Pad into its Conv.

The phase helpers (:func:`sb_phase_conv`, :func:`sb_phase_deconv`) work on a tensor
split into its four phases ``x[:, :, p::2, q::2]``; :mod:`sbdeploy.nn.phase` uses them
to keep whole runs of SB blocks in that layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.errors import ConfigError
from sbdeploy.nn.sb import SAMPLINGS, conv_output_size, resolve_sampling, subgroup_size

PHASES: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))
"""Order of the four phases ``(row parity, column parity)`` of a phase-split tensor."""


@dataclass(frozen=True)
class FoldedMid:
    """``mid`` (eval-mode BN, optionally followed by ReLU) as a per-channel affine map + ReLU."""

    scale: Tensor | None
    bias: Tensor | None
    relu: bool


def fold_mid(mid: nn.Module | None) -> FoldedMid:
    """Fold a channel-wise ``mid`` (BatchNorm2d, ReLU, Identity, in that order) into scale/bias/ReLU.

    Raises:
        ConfigError: ``mid`` is in training mode or holds another kind of module.
    """
    if mid is None:
        return FoldedMid(None, None, False)
    scale = bias = None
    relu = False
    for m in mid if isinstance(mid, nn.Sequential) else (mid,):
        if isinstance(m, nn.BatchNorm2d) and scale is None and not relu:
            if m.training:
                raise ConfigError("the deploy lowerings are for inference: call model.eval() first")
            if m.running_var is None or m.running_mean is None:
                raise ConfigError("the deploy lowerings fold BatchNorm2d with running statistics only")
            scale = torch.rsqrt(m.running_var + m.eps)
            if m.weight is not None:
                scale = scale * m.weight
            bias = -m.running_mean * scale
            if m.bias is not None:
                bias = bias + m.bias
        elif isinstance(m, nn.ReLU) and not relu:
            relu = True
        elif not isinstance(m, nn.Identity):
            raise ConfigError(f"the deploy lowerings fold BatchNorm2d -> ReLU only; cannot fold {type(m).__name__}")
    return FoldedMid(scale, bias, relu)


def conv_pads(x: Tensor, weight: Tensor, pads: Sequence[int], *, stride: int = 1, bias: Tensor | None = None) -> Tensor:
    """``conv2d`` with asymmetric zero padding ``(top, left, bottom, right)``."""
    top, left, bottom, right = pads
    if top or left or bottom or right:
        x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, weight, bias, stride=stride)


def _parities(sampling: str, out_h: int, out_w: int) -> list[tuple[int, int]]:
    """The sampled parities that hold at least one position of an ``out_h x out_w`` grid."""
    return [
        (a, b)
        for a, b in SAMPLINGS[resolve_sampling(sampling)]
        if subgroup_size(out_h, a) > 0 and subgroup_size(out_w, b) > 0
    ]


def _tap_conv(x: Tensor, weight: Tensor, rows: list[tuple[int, int]], cols: list[tuple[int, int]],
              out_size: tuple[int, int], bias: Tensor | None = None, stride: int = 1) -> Tensor:
    """Conv with the kernel taps ``weight[:, :, k_r, k_c]`` for the listed (offset, k) pairs.

    Output position ``i`` reads ``x[stride * i + offset]``; offsets are consecutive, so the
    taps form a small dense kernel. Offsets that all lie after 0 get zero taps down to 0
    (a stride-2 conv cannot start inside its input without a Slice, which breaks ONNX
    Runtime's blocked layout). The padding makes the output exactly ``out_size``.
    """
    row_taps, col_taps = _from_zero(rows), _from_zero(cols)
    padded = F.pad(weight, (0, 1, 0, 1))  # index 3 is a zero tap
    kernel = padded[:, :, [3 if k is None else k for _, k in row_taps]][:, :, :, [3 if k is None else k for _, k in col_taps]]
    return conv_at(x, kernel, (row_taps[0][0], col_taps[0][0]), out_size, stride=stride, bias=bias)


def conv_at(x: Tensor, kernel: Tensor, start: tuple[int, int], out_size: tuple[int, int], *,
            stride: int = 1, bias: Tensor | None = None) -> Tensor:
    """Conv whose output ``(i, j)`` reads ``x[stride * i + start[0] + .., stride * j + start[1] + ..]``.

    ``start`` is at most 0 on both axes (zero padding before ``x``); the padding after it
    makes the output exactly ``out_size``.
    """
    top, left = -start[0], -start[1]
    assert top >= 0 and left >= 0, "the kernel's first tap must not start inside the input"
    bottom = max(0, stride * (out_size[0] - 1) + start[0] + int(kernel.shape[2]) - 1 - (int(x.shape[2]) - 1))
    right = max(0, stride * (out_size[1] - 1) + start[1] + int(kernel.shape[3]) - 1 - (int(x.shape[3]) - 1))
    y = conv_pads(x, kernel, (top, left, bottom, right), stride=stride, bias=bias)
    assert tuple(y.shape[2:]) == tuple(out_size), (tuple(y.shape), out_size)
    return y


def _from_zero(taps: list[tuple[int, int]]) -> list[tuple[int, int | None]]:
    """``taps`` preceded by zero taps (k = None) for the offsets from 0 up to the first one."""
    return [(offset, None) for offset in range(0, taps[0][0])] + list(taps)


def deconv_taps(out_parity: int, sub_parity: int) -> list[tuple[int, int]]:
    """Deconv taps along one axis: output ``2i + out_parity`` gets ``W2[k] z[i + offset]``.

    ``z[m]`` of subgroup parity ``a`` sits at grid position ``2m + a``; the deconv
    connects grid positions ``q -> p`` through kernel index ``p - q + 1``.
    """
    taps = []
    for k in range(3):
        twice_offset = out_parity - sub_parity + 1 - k
        if twice_offset % 2 == 0:
            taps.append((twice_offset // 2, k))
    return sorted(taps)


def conv_taps(in_parity: int, sub_parity: int, stride: int = 1) -> list[tuple[int, int]]:
    """Conv taps along one axis on a phase input: ``z[i]`` reads ``W1[d] X_p[stride * i + offset]``.

    ``z[i]`` of parity ``a`` sits at output grid ``2i + a`` and reads input
    ``x[stride * (2i + a) + d - 1]``, which is phase ``p`` row ``stride * i + offset`` when
    ``stride * a + d - 1 - p`` is even.
    """
    taps = []
    for d in range(3):
        shift = stride * sub_parity + d - 1 - in_parity
        if shift % 2 == 0:
            taps.append((shift // 2, d))
    return sorted(taps)


def sb_conv_strided(
    x: Tensor, w1: Tensor, *, stride: int, parities: Sequence[tuple[int, int]], folded: FoldedMid
) -> list[Tensor]:
    """Conv part on a normal-layout input: one stride-2s Conv per parity, ``mid`` folded in.

    Subgroup ``(a, b)`` holds the conv output at grid ``(2i + a, 2j + b)``, which reads
    input rows ``s(2i + a) - 1 .. s(2i + a) + 1``.
    """
    height, width = int(x.shape[2]), int(x.shape[3])
    out_h, out_w = conv_output_size(height, stride), conv_output_size(width, stride)
    weight = w1 if folded.scale is None else w1 * folded.scale[:, None, None, None]
    z = []
    for a, b in parities:
        rows, cols = subgroup_size(out_h, a), subgroup_size(out_w, b)
        top, left = 1 - stride * a, 1 - stride * b  # negative: the window starts inside the input
        view = x[:, :, max(-top, 0) :, max(-left, 0) :] if top < 0 or left < 0 else x
        bottom = stride * (2 * (rows - 1) + a) + 1 - (height - 1)
        right = stride * (2 * (cols - 1) + b) + 1 - (width - 1)
        pads = (max(top, 0), max(left, 0), max(bottom, 0), max(right, 0))
        za = conv_pads(view, weight, pads, stride=2 * stride, bias=folded.bias)
        z.append(F.relu(za) if folded.relu else za)
    return z


def sb_phase_conv(
    phases: Sequence[Tensor], w1: Tensor, *, parities: Sequence[tuple[int, int]], folded: FoldedMid, stride: int = 1
) -> list[Tensor]:
    """Conv part on a phase-split input: per parity a sum of tap convs.

    The phases are ``P x Q`` each; the output subgroups are ``P x Q`` for stride 1 and
    ``P/2 x Q/2`` for stride 2 (``P`` and ``Q`` even then).
    """
    size = (int(phases[0].shape[2]) // stride, int(phases[0].shape[3]) // stride)
    weight = w1 if folded.scale is None else w1 * folded.scale[:, None, None, None]
    z = []
    for a, b in parities:
        acc = None
        for (p, q), xp in zip(PHASES, phases):
            part = _tap_conv(xp, weight, conv_taps(p, a, stride), conv_taps(q, b, stride), size,
                             bias=folded.bias if acc is None else None, stride=stride)
            acc = part if acc is None else acc + part
        assert acc is not None
        z.append(F.relu(acc) if folded.relu else acc)
    return z


def sb_phase_deconv(
    z: Sequence[Tensor],
    w2: Tensor,
    *,
    parities: Sequence[tuple[int, int]],
    out_size: tuple[int, int],
    residual: Sequence[Tensor] | None = None,
    bias: Tensor | None = None,
) -> list[Tensor]:
    """Deconv part into the four output phases (each ``out_size``), optionally + ``residual`` phases."""
    weight = w2.transpose(0, 1)  # ConvTranspose [in, out, k, k] -> Conv [out, in, k, k]
    phases = []
    for index, (r, c) in enumerate(PHASES):
        # residual first: ORT's NCHWc pass turns each ``acc + conv`` into a Conv with a sum input
        acc = None if residual is None else residual[index]
        for number, ((a, b), za) in enumerate(zip(parities, z)):
            part = _tap_conv(za, weight, deconv_taps(r, a), deconv_taps(c, b), out_size,
                             bias=bias if number == 0 else None)
            acc = part if acc is None else acc + part
        assert acc is not None, "every sampling set keeps position (0, 0)"
        phases.append(acc)
    return phases


def to_phases(x: Tensor) -> list[Tensor]:
    """Split an even-sized ``[N, C, H, W]`` tensor into its phases ``x[:, :, p::2, q::2]``.

    Written as depthwise stride-2 2x2 convolutions with one-hot kernels (exact: each
    output is one input times 1.0) rather than strided slices, so that ONNX Runtime keeps
    the phases in its blocked layout and fuses what follows.
    """
    channels = int(x.shape[1])
    phases = []
    for p, q in PHASES:  # a constant kernel (no in-place writes: exporters trace those as scatters)
        one_hot = [[1.0 if (i, j) == (p, q) else 0.0 for j in range(2)] for i in range(2)]
        pick = x.new_tensor(one_hot).expand(channels, 1, 2, 2)
        phases.append(F.conv2d(x, pick, stride=2, groups=channels))
    return phases


def from_phases(phases: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """Interleave four phases back (one DepthToSpace) and crop to ``size``."""
    y = F.pixel_shuffle(torch.stack(list(phases), dim=2).flatten(1, 2), 2)
    if y.shape[2] != size[0] or y.shape[3] != size[1]:
        y = y[:, :, : size[0], : size[1]]
    return y


def _fold_post(w2: Tensor, post: nn.BatchNorm2d | None) -> tuple[Tensor, Tensor | None]:
    """Deconv weight and bias with an eval-mode BN that follows the SB folded in."""
    if post is None:
        return w2, None
    folded = fold_mid(post)
    assert folded.scale is not None and folded.bias is not None
    return w2 * folded.scale[None, :, None, None], folded.bias


def _sampled_conv(
    x: Tensor, w1: Tensor, *, stride: int, sampling: str, mid: nn.Module | None
) -> tuple[tuple[int, int], list[tuple[int, int]], list[Tensor]]:
    """The conv half both deploy lowerings share: output grid size, kept parities, one strided conv each."""
    out_h, out_w = conv_output_size(int(x.shape[2]), stride), conv_output_size(int(x.shape[3]), stride)
    parities = _parities(sampling, out_h, out_w)
    return (out_h, out_w), parities, sb_conv_strided(x, w1, stride=stride, parities=parities, folded=fold_mid(mid))


def sb_subpixel(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: nn.Module | None = None,
    post: nn.BatchNorm2d | None = None,
) -> Tensor:
    """Strided convs with ``mid`` folded in, sub-pixel deconv, one interleave (eval mode).

    ``post``: an eval-mode BatchNorm2d applied to the SB output, folded into the deconv.
    """
    (out_h, out_w), parities, z = _sampled_conv(x, w1, stride=stride, sampling=sampling, mid=mid)
    half = ((out_h + 1) // 2, (out_w + 1) // 2)
    w2, bias = _fold_post(w2, post)
    return from_phases(sb_phase_deconv(z, w2, parities=parities, out_size=half, bias=bias), (out_h, out_w))


def sb_strided(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: nn.Module | None = None,
    post: nn.BatchNorm2d | None = None,
) -> Tensor:
    """Per parity one strided Conv (``mid`` folded in) and one stride-2 ConvTranspose (eval mode).

    ``post``: an eval-mode BatchNorm2d applied to the SB output, folded into the deconv.
    """
    (out_h, out_w), parities, z = _sampled_conv(x, w1, stride=stride, sampling=sampling, mid=mid)
    w2, bias = _fold_post(w2, post)
    y = None
    for number, ((a, b), za) in enumerate(zip(parities, z)):
        u = F.conv_transpose2d(za, w2, bias if number == 0 else None, stride=2)  # grid rows a-1 .. a-1+2*rows
        u = u[:, :, 1 - a : 1 - a + out_h, 1 - b : 1 - b + out_w]
        y = u if y is None else y + u
    assert y is not None, "every sampling set keeps position (0, 0)"
    return y


DEPLOY_LOWERINGS = {"subpixel": sb_subpixel, "strided": sb_strided}
"""The deploy lowerings by name (same signature as :func:`sbdeploy.nn.sb.sb_fast`)."""
