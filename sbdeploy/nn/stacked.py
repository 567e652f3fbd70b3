"""The stacked phase layout: the four phases of a tensor side by side in its channels (``[N, 4C, H/2, W/2]``).

An SB then takes two merged convs per sampled parity: more MACs than the exact tap convs
of :mod:`sbdeploy.nn.phase` but a quarter of the nodes (``docs/deploy-forms.md``). Kernels
are built once from the block's weights (eval mode, BN folded) and kept as buffers.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.nn.blocks import BlockDescription, apply_ops, pad_channels
from sbdeploy.nn.sampling import SAMPLINGS, resolve_sampling
from sbdeploy.nn.taps import PHASES, Taps, conv_at, conv_taps, deconv_taps, summed


def _merged_kernel(weight: Tensor, taps: dict[tuple[int, int], tuple[Taps, Taps]]) -> tuple[Tensor, tuple[int, int]]:
    """One conv kernel over the union of the taps of several (out block, in block) pairs, and its first tap's offset.

    ``taps[(o, i)]`` = (row taps, column taps) of ``weight`` ([O, I, 3, 3]) for that pair.
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
        block = kernel[o * out_ch : (o + 1) * out_ch, i * in_ch : (i + 1) * in_ch]  # a view
        for (row, k), (col, kk) in itertools.product(rows, cols):
            block[:, :, row - row_lo, col - col_lo] = weight[:, :, k, kk]
    return kernel, (row_lo, col_lo)


def _tile(v: Tensor) -> Tensor:
    return v.repeat(len(PHASES))


def _pointwise(module: nn.Module) -> bool:
    return isinstance(module, (nn.BatchNorm2d, nn.ReLU))


def stackable(desc: BlockDescription) -> bool:
    """Whether a described block runs on the stacked layout: point-wise ops only, a 1x1 projection at most."""
    if not all(_pointwise(m) for part in (desc.entry, desc.before, desc.after, desc.final) for m in part):
        return False
    shortcut = desc.shortcut
    if shortcut.kind == "projection":
        conv = shortcut.conv
        return conv is not None and conv.kernel_size == (1, 1) and conv.groups == 1 and conv.stride[0] == desc.sb.stride
    return True


def _tiled(module: nn.Module) -> nn.Module:
    """A point-wise op on the stacked layout: a BN with its statistics and parameters repeated for the four phases."""
    if isinstance(module, nn.ReLU):
        return nn.ReLU()
    assert isinstance(module, nn.BatchNorm2d) and not module.training
    assert module.running_mean is not None and module.running_var is not None
    like = {"dtype": module.running_mean.dtype, "device": module.running_mean.device}
    tiled = nn.BatchNorm2d(len(PHASES) * module.num_features, eps=module.eps, affine=module.affine, **like).eval()
    with torch.no_grad():
        for name in ("running_mean", "running_var", "weight", "bias"):
            value = getattr(module, name)
            if value is not None:
                getattr(tiled, name).copy_(_tile(value))
    return tiled


class StackedBlock(nn.Module):
    """A stackable SB block (its description, eval mode) on the stacked layout; even input and output sizes."""

    def __init__(self, desc: BlockDescription) -> None:
        super().__init__()
        assert stackable(desc)
        sb = desc.sb
        self.stride = stride = sb.stride
        self.reads_entry = desc.shortcut.reads == "entry"
        self.entry = nn.Sequential(*[_tiled(m) for m in desc.entry])
        self.before = nn.Sequential(*[_tiled(m) for m in desc.before])
        self.after = nn.Sequential(*[_tiled(m) for m in desc.after])
        self.final = nn.Sequential(*[_tiled(m) for m in desc.final])
        self.mid = copy.deepcopy(sb.mid)  # runs on one subgroup (not stacked): as it is
        self.shortcut_kind = desc.shortcut.kind
        self.out_channels = desc.shortcut.out_channels
        with torch.no_grad():
            w1 = sb.conv.weight
            w2 = sb.deconv.weight.transpose(0, 1)  # as a Conv weight [out, mid, 3, 3]
            out_bias = None if sb.deconv.bias is None else _tile(sb.deconv.bias)
            self.parts = nn.ModuleList()
            for number, (a, b) in enumerate(SAMPLINGS[resolve_sampling(sb.sampling)]):
                conv, conv_start = _merged_kernel(
                    w1, {(0, i): (conv_taps(p, a, stride), conv_taps(q, b, stride)) for i, (p, q) in enumerate(PHASES)}
                )
                deconv, deconv_start = _merged_kernel(
                    w2, {(o, 0): (deconv_taps(r, a), deconv_taps(c, b)) for o, (r, c) in enumerate(PHASES)}
                )
                part = nn.Module()
                part.register_buffer("conv", conv)
                part.register_buffer("conv_bias", sb.conv.bias)
                part.register_buffer("deconv", deconv)
                part.register_buffer("deconv_bias", out_bias if number == 0 else None)
                part.conv_start, part.deconv_start = conv_start, deconv_start
                self.parts.append(part)
            projection = desc.shortcut.conv if desc.shortcut.kind == "projection" else None
            kernel = None if projection is None else self._shortcut_kernel(projection.weight[:, :, 0, 0])
            bias = None if projection is None or projection.bias is None else _tile(projection.bias)
            self.register_buffer("shortcut", kernel)
            self.register_buffer("shortcut_bias", bias)
        bn = desc.shortcut.bn
        self.shortcut_bn = None if bn is None else _tiled(bn)  # a projection BN not folded into its conv

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

    def _shortcut(self, s: Tensor) -> Tensor:
        if self.shortcut_kind == "identity":
            return s
        if self.shortcut_kind == "pyramid":  # on each phase block: the 2x2 average pool (stride 2), zero channels
            channels, h, w = int(s.shape[1]) // len(PHASES), int(s.shape[2]), int(s.shape[3])
            if self.stride == 2:  # the pool's output grid is the phases' grid
                pooled = s.reshape(-1, len(PHASES), channels, h, w).mean(dim=1)
                return to_stacked(pad_channels(pooled, self.out_channels))
            if channels >= self.out_channels:
                return s
            blocks = pad_channels(s.reshape(-1, len(PHASES), channels, h, w), self.out_channels)
            return blocks.reshape(-1, len(PHASES) * self.out_channels, h, w)
        y = F.conv2d(s, self.shortcut, self.shortcut_bias, stride=self.stride)
        return y if self.shortcut_bn is None else self.shortcut_bn(y)

    def forward(self, s: Tensor) -> Tensor:
        inner = self.entry(s)
        acc = self._shortcut(inner if self.reads_entry else s)
        main = self.before(inner)
        size = (int(s.shape[2]) // self.stride, int(s.shape[3]) // self.stride)
        parts = []
        for part in self.parts:
            z = conv_at(main, part.conv, part.conv_start, size, stride=self.stride, bias=part.conv_bias)
            z = z if self.mid is None else self.mid(z)
            parts.append(conv_at(z, part.deconv, part.deconv_start, size, bias=part.deconv_bias))
        if len(self.after) == 0:  # with no op after the SB, the shortcut starts the sum
            return self.final(summed([acc, *parts]))
        return self.final(apply_ops(self.after, summed(parts)) + acc)


def to_stacked(x: Tensor) -> Tensor:
    """``[N, C, H, W]`` (even H, W) -> ``[N, 4C, H/2, W/2]``: one stride-2 conv with a one-hot kernel (exact)."""
    channels = int(x.shape[1])
    one_hot = x.new_tensor(
        [[[1.0 if (i, j) == phase else 0.0 for j in range(2)] for i in range(2)] for phase in PHASES]
    )
    eye = torch.eye(channels, dtype=x.dtype, device=x.device)
    kernel = (one_hot[:, None, None] * eye[None, :, :, None, None]).reshape(len(PHASES) * channels, channels, 2, 2)
    return F.conv2d(x, kernel, stride=2)


def from_stacked(s: Tensor) -> Tensor:
    """Inverse of :func:`to_stacked` (a DepthToSpace in ONNX's DCR order, as Reshape-Transpose-Reshape)."""
    h, w = int(s.shape[2]), int(s.shape[3])
    channels = int(s.shape[1]) // len(PHASES)
    return s.reshape(-1, 2, 2, channels, h, w).permute(0, 3, 4, 1, 5, 2).reshape(-1, channels, 2 * h, 2 * w)
