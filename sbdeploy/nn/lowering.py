"""Every form of the SB operator, in one registry: the reference, the training form, the ONNX lowerings.

Each form is one function with the signature of :class:`Lowering` and computes
``y = Deconv(W2) . Sample_S . mid . (Conv(W1) + b1) (x) + b2`` (``SB_SPEC.md`` section 1;
``b1``/``b2`` are the biases an eval-mode BN folds into), equal to ``reference`` to float
rounding. What each form is for: ``docs/deploy-forms.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.errors import ConfigError, did_you_mean
from sbdeploy.nn.sampling import (
    SAMPLINGS,
    conv_output_size,
    kept_parities,
    resolve_sampling,
    sampling_mask,
    subgroup_size,
)
from sbdeploy.nn.taps import conv_pads, from_phases, sb_phase_deconv, summed

Mid = nn.Module | None
Bias = Tensor | None


class Lowering(Protocol):
    """The signature every SB form shares."""

    def __call__(
        self,
        x: Tensor,
        w1: Tensor,
        w2: Tensor,
        *,
        stride: int,
        sampling: str,
        mid: Mid = None,
        b1: Bias = None,
        b2: Bias = None,
    ) -> Tensor: ...


LOWERINGS: dict[str, Lowering] = {}


def register_lowering(name: str) -> Callable[[Lowering], Lowering]:
    """Decorator: add a form of the SB to :data:`LOWERINGS` under ``name`` (duplicates raise)."""

    def add(fn: Lowering) -> Lowering:
        if name in LOWERINGS:
            raise ValueError(f"SB lowering {name!r} is already registered")
        LOWERINGS[name] = fn
        return fn

    return add


def get_lowering(name: str) -> Lowering:
    """The registered form ``name``; ConfigError listing the forms (and close matches) otherwise."""
    if name not in LOWERINGS:
        raise ConfigError(
            f"unknown SB lowering {name!r}{did_you_mean(name, LOWERINGS)}; choose one of {', '.join(LOWERINGS)}"
        )
    return LOWERINGS[name]


def _training_bn(mid: Mid) -> bool:
    return mid is not None and any(isinstance(m, nn.BatchNorm2d) and m.training for m in mid.modules())


def _require_eval(mid: Mid, form: str) -> None:
    """The deploy forms run ``mid`` per subgroup: exact for eval-mode BN only."""
    if _training_bn(mid):
        raise ConfigError(f"the {form} SB lowering is for inference: call model.eval() first (BN needs running stats)")


def _apply_packed(mid: Mid, values: list[Tensor]) -> list[Tensor]:
    """Run ``mid`` once over all subgroups packed together (a training BN's statistics cover them all)."""
    if mid is None:
        return values
    if not _training_bn(mid):
        return [mid(v) for v in values]
    shapes = [v.shape for v in values]
    packed = torch.cat([v.flatten(2) for v in values], dim=2).unsqueeze(2)
    out = mid(packed).squeeze(2)
    sizes = [s[2] * s[3] for s in shapes]
    return [o.reshape(s[0], o.shape[1], s[2], s[3]) for o, s in zip(out.split(sizes, dim=2), shapes)]


def _deconv_strided(
    z: list[Tensor], w2: Tensor, b2: Bias, parities: list[tuple[int, int]], size: tuple[int, int]
) -> Tensor:
    """Per subgroup a stride-2 transposed conv, placed back onto the grid at its parity's offset; summed."""
    parts = []
    for number, ((a, b), za) in enumerate(zip(parities, z)):
        u = F.conv_transpose2d(za, w2, b2 if number == 0 else None, stride=2)  # grid rows a - 1 .. a - 1 + 2 * rows
        parts.append(u[:, :, 1 - a : 1 - a + size[0], 1 - b : 1 - b + size[1]])
    return summed(parts)


@register_lowering("reference")
def sb_reference(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: Mid = None, b1: Bias = None, b2: Bias = None
) -> Tensor:
    """Dense masked form: ``conv_transpose(mask * mid(conv(x)))`` on the full grid."""
    z = F.conv2d(x, w1, b1, stride=stride, padding=1)
    mask = sampling_mask(z.shape[2], z.shape[3], sampling, device=z.device)
    if mid is not None:
        kept = z[:, :, mask].unsqueeze(2)  # [N, C, 1, L] in row-major order
        z = torch.zeros_like(z)
        z[:, :, mask] = mid(kept).squeeze(2)
    else:
        z = z * mask.to(z.dtype)
    return F.conv_transpose2d(z, w2, b2, stride=1, padding=1)


@register_lowering("separate")
def sb_fast(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: Mid = None, b1: Bias = None, b2: Bias = None
) -> Tensor:
    """Strided form (the training form): per sampled parity a stride-2s conv and a stride-2 transposed conv."""
    out_h, out_w = conv_output_size(x.shape[2], stride), conv_output_size(x.shape[3], stride)
    parities = kept_parities(sampling, out_h, out_w)
    padded = F.pad(x, (1, 1, 1, 1))
    z = [F.conv2d(padded[:, :, stride * a :, stride * b :], w1, b1, stride=2 * stride) for a, b in parities]
    return _deconv_strided(_apply_packed(mid, z), w2, b2, parities, (out_h, out_w))


def _apply_tiled(mid: nn.Module, z: Tensor, groups: int) -> Tensor:
    """Run an eval-mode channel-wise ``mid`` on ``groups`` stacked copies of its channels."""
    for m in mid if isinstance(mid, nn.Sequential) else (mid,):
        if isinstance(m, nn.BatchNorm2d):
            if m.training or m.running_mean is None or m.running_var is None:
                raise ConfigError(
                    "the grouped SB lowering is for inference: call model.eval() first (BN needs running stats)"
                )
            weight = None if m.weight is None else m.weight.repeat(groups)
            bias = None if m.bias is None else m.bias.repeat(groups)
            z = F.batch_norm(
                z, m.running_mean.repeat(groups), m.running_var.repeat(groups), weight, bias, False, 0.0, m.eps
            )
        elif isinstance(m, nn.ReLU):
            z = F.relu(z)
        elif not isinstance(m, nn.Identity):
            raise ConfigError(
                f"the grouped SB lowering needs a channel-wise mid module (BatchNorm2d, ReLU); got {type(m).__name__}"
            )
    return z


@register_lowering("grouped")
def sb_grouped(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: Mid = None, b1: Bias = None, b2: Bias = None
) -> Tensor:
    """Export form: one grouped stride-2s conv and one grouped stride-2 deconv for all subgroups.

    The shifted input views of the subgroups are stacked on the channel axis; a smaller
    subgroup's spurious last row/column (odd grid sizes) is zeroed before the deconv.
    ``mid`` must be channel-wise (eval-mode BN, ReLU).
    """
    out_h, out_w = conv_output_size(x.shape[2], stride), conv_output_size(x.shape[3], stride)
    parities = kept_parities(sampling, out_h, out_w)
    sizes = {(a, b): (subgroup_size(out_h, a), subgroup_size(out_w, b)) for a, b in parities}
    groups = len(parities)
    max_h, max_w = sizes[(0, 0)]  # parity 0 has the most rows and columns
    rows, cols = 2 * stride * (max_h - 1) + 3, 2 * stride * (max_w - 1) + 3  # input window of max_h x max_w
    extra_h = max(0, max(stride * a for a, _ in parities) + rows - (x.shape[2] + 2))
    extra_w = max(0, max(stride * b for _, b in parities) + cols - (x.shape[3] + 2))
    padded = F.pad(x, (1, 1 + extra_w, 1, 1 + extra_h))
    shifted = [padded[:, :, stride * a : stride * a + rows, stride * b : stride * b + cols] for a, b in parities]
    channels = w1.shape[0]
    z = F.conv2d(
        torch.cat(shifted, dim=1) if groups > 1 else shifted[0],
        w1.repeat(groups, 1, 1, 1),
        None if b1 is None else b1.repeat(groups),
        stride=2 * stride,
        groups=groups,
    )
    if mid is not None:
        z = _apply_tiled(mid, z, groups)
    if any(sizes[p] != (max_h, max_w) for p in parities):
        chunks = z.split(channels, dim=1)
        z = torch.cat(
            [
                F.pad(c[:, :, : sizes[p][0], : sizes[p][1]], (0, max_w - sizes[p][1], 0, max_h - sizes[p][0]))
                if sizes[p] != (max_h, max_w)
                else c
                for p, c in zip(parities, chunks)
            ],
            dim=1,
        )
    bias = None if b2 is None else torch.cat([b2, b2.new_zeros((groups - 1) * b2.shape[0])])
    u = F.conv_transpose2d(z, w2.repeat(groups, 1, 1, 1), bias, stride=2, groups=groups)  # rows a-1 .. a-1+2*max_h
    c = w2.shape[1]
    return summed(
        [u[:, g * c : (g + 1) * c, 1 - a : 1 - a + out_h, 1 - b : 1 - b + out_w] for g, (a, b) in enumerate(parities)]
    )


def sb_conv_strided(
    x: Tensor, w1: Tensor, *, stride: int, parities: list[tuple[int, int]], b1: Bias, mid: Mid
) -> list[Tensor]:
    """The conv half of the deploy forms on a normal-layout input: one stride-2s Conv per parity, then ``mid``."""
    height, width = int(x.shape[2]), int(x.shape[3])
    out_h, out_w = conv_output_size(height, stride), conv_output_size(width, stride)
    z = []
    for a, b in parities:
        rows, cols = subgroup_size(out_h, a), subgroup_size(out_w, b)
        top, left = 1 - stride * a, 1 - stride * b  # negative: the window starts inside the input
        view = x[:, :, max(-top, 0) :, max(-left, 0) :] if top < 0 or left < 0 else x
        bottom = stride * (2 * (rows - 1) + a) + 1 - (height - 1)
        right = stride * (2 * (cols - 1) + b) + 1 - (width - 1)
        pads = (max(top, 0), max(left, 0), max(bottom, 0), max(right, 0))
        za = conv_pads(view, w1, pads, stride=2 * stride, bias=b1)
        z.append(za if mid is None else mid(za))
    return z


@register_lowering("subpixel")
def sb_subpixel(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: Mid = None, b1: Bias = None, b2: Bias = None
) -> Tensor:
    """Strided convs, sub-pixel deconv into the four output phases, one interleave (eval mode)."""
    _require_eval(mid, "subpixel")
    out_h, out_w = conv_output_size(int(x.shape[2]), stride), conv_output_size(int(x.shape[3]), stride)
    parities = kept_parities(sampling, out_h, out_w)
    z = sb_conv_strided(x, w1, stride=stride, parities=parities, b1=b1, mid=mid)
    half = ((out_h + 1) // 2, (out_w + 1) // 2)
    return from_phases(sb_phase_deconv(z, w2, parities=parities, out_size=half, bias=b2), (out_h, out_w))


@register_lowering("strided")
def sb_strided(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: Mid = None, b1: Bias = None, b2: Bias = None
) -> Tensor:
    """Per parity one strided Conv (then ``mid``) and one stride-2 ConvTranspose (eval mode)."""
    _require_eval(mid, "strided")
    out_h, out_w = conv_output_size(int(x.shape[2]), stride), conv_output_size(int(x.shape[3]), stride)
    parities = kept_parities(sampling, out_h, out_w)
    z = sb_conv_strided(x, w1, stride=stride, parities=parities, b1=b1, mid=mid)
    return _deconv_strided(z, w2, b2, parities, (out_h, out_w))


@register_lowering("masked")
def sb_masked(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: Mid = None, b1: Bias = None, b2: Bias = None
) -> Tensor:
    """Dense Conv, ``mid``, the sampling mask, dense Conv with the flipped deconv kernel (eval mode).

    The mask follows ``mid``: a BN's shift makes ``mid(0)`` non-zero.
    """
    _require_eval(mid, "masked")
    z = F.conv2d(x, w1, b1, stride=stride, padding=1)
    if mid is not None:
        z = mid(z)
    z = z * sampling_mask(int(z.shape[2]), int(z.shape[3]), sampling, device=z.device, dtype=z.dtype)
    return F.conv2d(z, w2.transpose(0, 1).flip(2, 3), b2, padding=1)


class GatherPlan(NamedTuple):
    """Index tables of the ``gather`` form for one input size (numpy): source rows, one past the last is the zero row."""

    conv: np.ndarray  # [L, T]: input rows (raster) each sampled position's conv reads, tap by tap
    conv_taps: list[int]  # W1's taps (ky * 3 + kx) in table order
    deconv: list[tuple[np.ndarray, list[tuple[int, int]]]]  # per tap set: [P, T] sampled rows, W2's (ky, kx) taps
    unpermute: np.ndarray | None  # the raster order of the tap sets' concatenated outputs (None: already raster)
    out_size: tuple[int, int]


def _read_taps(table: np.ndarray, zero: int) -> np.ndarray:
    """The columns (taps) of ``table`` that read some row other than the zero row."""
    return np.flatnonzero((table != zero).any(axis=0))


@functools.lru_cache(maxsize=256)
def gather_plan(height: int, width: int, stride: int, sampling: str) -> GatherPlan:
    """The tables of :func:`sb_gather` on a ``height x width`` input: taps that read only zero rows are left out."""
    out_h, out_w = conv_output_size(height, stride), conv_output_size(width, stride)
    offsets = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    parity = (np.arange(out_h)[:, None] % 2) * 2 + np.arange(out_w)[None, :] % 2  # 2a + b of each grid position
    si, sj = np.nonzero(np.isin(parity, [2 * a + b for a, b in SAMPLINGS[sampling]]))  # sampled, raster order
    sampled = len(si)
    rows, cols = stride * si[:, None] + offsets[:, 0], stride * sj[:, None] + offsets[:, 1]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    conv = np.where(inside, rows * width + cols, height * width)
    conv_taps = _read_taps(conv, height * width)
    row_of = np.full((out_h + 2, out_w + 2), sampled)  # sampled row of each grid position, a zero border
    row_of[si + 1, sj + 1] = np.arange(sampled)
    tap_sets: dict[tuple[int, ...], list[int]] = {}
    for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)):
        kept = tuple(t for t, (dy, dx) in enumerate(offsets) if ((a + dy) % 2, (b + dx) % 2) in SAMPLINGS[sampling])
        tap_sets.setdefault(kept, []).append(2 * a + b)
    deconv, order = [], []
    for kept, parities in tap_sets.items():
        where = np.flatnonzero(np.isin(parity, parities))
        if not len(where):
            continue
        pi, pj = where // out_w + 1, where % out_w + 1
        table = np.stack([row_of[pi + offsets[t, 0], pj + offsets[t, 1]] for t in kept], axis=1)
        read = _read_taps(table, sampled)
        deconv.append((table[:, read], [(1 - offsets[kept[t], 0], 1 - offsets[kept[t], 1]) for t in read]))
        order.append(where)
    raster = np.concatenate(order)
    unpermute = None if np.array_equal(raster, np.arange(out_h * out_w)) else np.argsort(raster)
    return GatherPlan(conv[:, conv_taps], [int(t) for t in conv_taps], deconv, unpermute, (out_h, out_w))


def _rows_mid(mid: Mid, z: Tensor) -> Tensor:
    """A channel-wise eval-mode ``mid`` on ``[M, C]`` rows (an element-wise one runs as is)."""
    if mid is None:
        return z
    if all(isinstance(m, (nn.ReLU, nn.Identity, nn.Sequential)) for m in mid.modules()):
        return mid(z)
    return mid(z.t()[None, :, :, None])[0, :, :, 0].t()


@register_lowering("gather")
def sb_gather(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: Mid = None, b1: Bias = None, b2: Bias = None
) -> Tensor:
    """Rows ``[N, HW, C]``: im2col of the sampled positions by one Gather + MatMul, the deconv per tap set (eval mode).

    The index tables (:func:`gather_plan`) come from the static spatial size (any batch); a zero row appended to
    the input and to the sampled rows stands for the padding. Output positions whose parities have the same sampled
    3x3 neighbours (a tap set) share one Gather + MatMul with those taps of W2; one Gather restores raster order.
    """
    _require_eval(mid, "gather")
    plan = gather_plan(int(x.shape[2]), int(x.shape[3]), stride, resolve_sampling(sampling))
    sampled, mid_channels, out_channels = len(plan.conv), int(w1.shape[0]), int(w2.shape[1])

    def gather(rows: Tensor, table: np.ndarray) -> Tensor:  # [N, M, C] rows -> [N * len(table), taps * C]
        picked = rows.index_select(1, torch.from_numpy(table.flatten()).to(rows.device))
        return picked.reshape(-1, table.shape[1] * int(rows.shape[2]))

    weight1 = w1.permute(0, 2, 3, 1).flatten(1, 2)[:, plan.conv_taps].flatten(1)  # [C_mid, T * C]
    rows = F.pad(x.flatten(2).transpose(1, 2), (0, 0, 0, 1))  # [N, HW + 1, C]
    z = _rows_mid(mid, F.linear(gather(rows, plan.conv), weight1, b1)).reshape(-1, sampled, mid_channels)
    z = F.pad(z, (0, 0, 0, 1))  # [N, L + 1, C_mid]
    parts = []
    for table, taps in plan.deconv:
        weight2 = torch.cat([w2[:, :, ky, kx].t() for ky, kx in taps], dim=1)  # [C_out, T * C_mid]
        parts.append(F.linear(gather(z, table), weight2, b2).reshape(-1, len(table), out_channels))
    y = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
    if plan.unpermute is not None:
        y = y.index_select(1, torch.from_numpy(plan.unpermute).to(y.device))
    return y.reshape(-1, *plan.out_size, out_channels).permute(0, 3, 1, 2)
