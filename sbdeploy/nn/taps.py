"""Exact tap convolutions and the phase split: the pieces of the CPU deploy forms.

A tensor's four *phases* are ``x[:, :, p::2, q::2]`` (:data:`PHASES` order). On phases,
the SB's sampled conv and its transposed conv become small dense convolutions whose
kernels hold exactly the taps of W1 / W2 that connect a phase to a subgroup (1x1, 1x2,
2x1 or 2x2): no zero taps, no ConvTranspose. Asymmetric padding is written as ``F.pad``
then ``conv2d``; the ONNX pass :mod:`sbdeploy.passes.pad_fusion` folds each such Pad into its Conv.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PHASES: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))
"""Order of the four phases ``(row parity, column parity)`` of a phase-split tensor."""

Taps = list[tuple[int, int]]
"""(offset, kernel index) pairs along one axis."""


def summed(parts: Sequence[Tensor]) -> Tensor:
    """``parts[0] + parts[1] + ...`` in order (one Add per term in an export)."""
    return functools.reduce(operator.add, parts)


def conv_pads(x: Tensor, weight: Tensor, pads: Sequence[int], *, stride: int = 1, bias: Tensor | None = None) -> Tensor:
    """``conv2d`` with asymmetric zero padding ``(top, left, bottom, right)``."""
    top, left, bottom, right = pads
    if top or left or bottom or right:
        x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, weight, bias, stride=stride)


def conv_at(
    x: Tensor,
    kernel: Tensor,
    start: tuple[int, int],
    out_size: tuple[int, int],
    *,
    stride: int = 1,
    bias: Tensor | None = None,
) -> Tensor:
    """Conv whose output ``(i, j)``, of ``out_size``, reads ``x[stride * i + start[0] + .., stride * j + start[1] + ..]``."""
    top, left = -start[0], -start[1]
    assert top >= 0 and left >= 0, "the kernel's first tap must not start inside the input"
    bottom = max(0, stride * (out_size[0] - 1) + start[0] + int(kernel.shape[2]) - 1 - (int(x.shape[2]) - 1))
    right = max(0, stride * (out_size[1] - 1) + start[1] + int(kernel.shape[3]) - 1 - (int(x.shape[3]) - 1))
    y = conv_pads(x, kernel, (top, left, bottom, right), stride=stride, bias=bias)
    assert tuple(y.shape[2:]) == tuple(out_size), (tuple(y.shape), out_size)
    return y


def _from_zero(taps: Taps) -> list[tuple[int, int | None]]:
    """``taps`` preceded by zero taps (k = None) for the offsets from 0 up to the first one."""
    return [(offset, None) for offset in range(0, taps[0][0])] + list(taps)


def tap_conv(
    x: Tensor,
    weight: Tensor,
    rows: Taps,
    cols: Taps,
    out_size: tuple[int, int],
    bias: Tensor | None = None,
    stride: int = 1,
) -> Tensor:
    """Conv with the kernel taps ``weight[:, :, k_r, k_c]`` for the listed (offset, k) pairs.

    Output position ``i`` reads ``x[stride * i + offset]``; zero taps fill the offsets from 0
    to the first (a Slice would break ONNX Runtime's blocked layout).
    """
    row_taps, col_taps = _from_zero(rows), _from_zero(cols)
    padded = F.pad(weight, (0, 1, 0, 1))  # index 3 is a zero tap
    kernel = padded[:, :, [3 if k is None else k for _, k in row_taps]][
        :, :, :, [3 if k is None else k for _, k in col_taps]
    ]
    return conv_at(x, kernel, (row_taps[0][0], col_taps[0][0]), out_size, stride=stride, bias=bias)


def deconv_taps(out_parity: int, sub_parity: int) -> Taps:
    """Deconv taps along one axis: output ``2i + out_parity`` gets ``W2[k] z[i + offset]``."""
    twice_offsets = ((out_parity - sub_parity + 1 - k, k) for k in range(3))
    return sorted((twice // 2, k) for twice, k in twice_offsets if twice % 2 == 0)


def conv_taps(in_parity: int, sub_parity: int, stride: int = 1) -> Taps:
    """Conv taps along one axis on a phase input: ``z[i]`` reads ``W1[d] X_p[stride * i + offset]``."""
    shifts = ((stride * sub_parity + d - 1 - in_parity, d) for d in range(3))
    return sorted((shift // 2, d) for shift, d in shifts if shift % 2 == 0)


def sb_phase_conv(
    phases: Sequence[Tensor],
    w1: Tensor,
    *,
    parities: Sequence[tuple[int, int]],
    stride: int = 1,
    bias: Tensor | None = None,
    mid: nn.Module | None = None,
) -> list[Tensor]:
    """Conv part on a phase-split input: per parity a sum of tap convs, then ``bias`` and an eval-mode ``mid``."""
    size = (int(phases[0].shape[2]) // stride, int(phases[0].shape[3]) // stride)
    z = []
    for a, b in parities:
        acc = summed(
            [
                tap_conv(
                    xp, w1, conv_taps(p, a, stride), conv_taps(q, b, stride), size, bias if i == 0 else None, stride
                )
                for i, ((p, q), xp) in enumerate(zip(PHASES, phases))
            ]
        )
        z.append(acc if mid is None else mid(acc))
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
        parts = [
            tap_conv(za, weight, deconv_taps(r, a), deconv_taps(c, b), out_size, bias=bias if number == 0 else None)
            for number, ((a, b), za) in enumerate(zip(parities, z))
        ]
        # residual first: ORT's NCHWc pass turns each ``acc + conv`` into a Conv with a sum input
        phases.append(summed(parts if residual is None else [residual[index], *parts]))
    return phases


def to_phases(x: Tensor) -> list[Tensor]:
    """Split an even-sized ``[N, C, H, W]`` tensor into its phases, as one-hot depthwise convs (not slices)."""
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
