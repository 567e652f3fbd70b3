"""Phase runs: consecutive SB blocks computed on the four phases of their input, interleaved once.

Each block is read from its description (:class:`~sbdeploy.nn.blocks.BlockDescription`): the
SB becomes small exact tap convs between phases (:mod:`sbdeploy.nn.taps`), the other ops run
on each phase alike (``docs/deploy-forms.md``). A block that cannot be split into equal
phases runs its own forward (:meth:`PhaseRun.plan`); small fixed batches may take the
stacked layout (:mod:`sbdeploy.nn.stacked`, :meth:`PhaseRun.layout_for`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.errors import ConfigError
from sbdeploy.nn.blocks import BlockDescription, Shortcut, apply_ops, describe_block, pad_channels
from sbdeploy.nn.sampling import conv_output_size, kept_parities
from sbdeploy.nn.sb import SpatialBottleneck
from sbdeploy.nn.stacked import StackedBlock, from_stacked, stackable, to_stacked
from sbdeploy.nn.taps import from_phases, sb_phase_conv, sb_phase_deconv, to_phases


def _shortcut_on_phases(shortcut: Shortcut, phases: list[Tensor], stride: int) -> list[Tensor]:
    """The shortcut's output phases, from the phases of the tensor it reads."""
    if shortcut.kind == "identity":
        return phases
    if shortcut.kind == "pyramid":
        if shortcut.stride == 1:
            return [pad_channels(p, shortcut.out_channels) for p in phases]
        pooled = (phases[0] + phases[1] + phases[2] + phases[3]) * 0.25  # the 2x2 average pool, at the output grid
        return to_phases(pad_channels(pooled, shortcut.out_channels))
    conv, bn = shortcut.conv, shortcut.bn
    assert conv is not None and conv.kernel_size == (1, 1)

    def project(t: Tensor) -> Tensor:
        y = F.conv2d(t, conv.weight, conv.bias)
        return y if bn is None else bn(y)

    if conv.stride[0] == 1:
        return [project(p) for p in phases]
    return to_phases(project(phases[0]))  # a stride-2 1x1 conv reads phase (0, 0) only


def _sb_on_phases(sb: SpatialBottleneck, phases: list[Tensor], residual: list[Tensor] | None = None) -> list[Tensor]:
    """The SB from input to output phases (+ ``residual``, summed into the deconv's accumulation)."""
    size = (int(phases[0].shape[2]) // sb.stride, int(phases[0].shape[3]) // sb.stride)  # output phase size
    parities = kept_parities(sb.sampling, 2 * size[0], 2 * size[1])
    z = sb_phase_conv(phases, sb.conv.weight, parities=parities, stride=sb.stride, bias=sb.conv.bias, mid=sb.mid)
    return sb_phase_deconv(
        z, sb.deconv.weight, parities=parities, out_size=size, residual=residual, bias=sb.deconv.bias
    )


def block_on_phases(desc: BlockDescription, phases: list[Tensor]) -> list[Tensor]:
    """One described block on phase-split input (see :meth:`PhaseRun.plan`); returns the output phases."""
    entry = [apply_ops(desc.entry, p) for p in phases]
    main = [apply_ops(desc.before, p) for p in entry]
    shortcut = _shortcut_on_phases(desc.shortcut, phases if desc.shortcut.reads == "input" else entry, desc.sb.stride)
    if desc.after:
        out = [apply_ops(desc.after, p) + s for p, s in zip(_sb_on_phases(desc.sb, main), shortcut)]
    else:  # the residual summed into the deconv's accumulation: ORT fuses it into the last Conv
        out = _sb_on_phases(desc.sb, main, shortcut)
    return [apply_ops(desc.final, p) for p in out]


class PhaseRun(nn.Module):
    """Consecutive SB blocks (eval mode, BN folded) computed in phase layout: one split, one interleave."""

    def __init__(self, blocks: list[nn.Module], *, stacked_max_macs: int | None = None) -> None:
        super().__init__()
        if not blocks or any(describe_block(b) is None for b in blocks):
            raise ConfigError("a phase run takes SB blocks that describe themselves (SB blocks of sbdeploy.nn.blocks)")
        self.blocks = nn.ModuleList(blocks)
        descriptions = [self._describe(b) for b in blocks]
        every = all(stackable(d) for d in descriptions)
        self.stacked = nn.ModuleList([StackedBlock(d) for d in descriptions]) if every else None
        self.stacked_max_macs = stacked_max_macs
        self.layout = "auto"  # or "phases", "stacked"

    @staticmethod
    def _describe(block: nn.Module) -> BlockDescription:
        desc = describe_block(block)
        assert desc is not None
        return desc

    def layout_for(self, x: Tensor) -> str:
        """``stacked`` for stackable blocks, a fixed batch and input tap convs under ``stacked_max_macs``; else ``phases``."""
        if self.layout != "auto":
            return self.layout
        if self.stacked is None or self.stacked_max_macs is None or not isinstance(x.shape[0], int):
            return "phases"
        sb = self._describe(self.blocks[0]).sb
        macs = x.shape[0] * (int(x.shape[2]) // 2) * (int(x.shape[3]) // 2) * sb.conv.in_channels * sb.conv.out_channels
        return "stacked" if macs < self.stacked_max_macs else "phases"

    def plan(self, size: tuple[int, int]) -> list[bool]:
        """For each block, whether it runs on phases (equal phases, and not alone) when the run's input is ``size``."""
        fits = []
        for block in self.blocks:
            desc = self._describe(block)
            fits.append(size[0] % (2 * desc.sb.stride) == 0 and size[1] % (2 * desc.sb.stride) == 0)
            size = (conv_output_size(size[0], desc.sb.stride), conv_output_size(size[1], desc.sb.stride))
        neighbours = [False, *fits, False]
        return [f and (neighbours[i] or neighbours[i + 2]) for i, f in enumerate(fits)]

    def forward(self, x: Tensor) -> Tensor:
        size = (int(x.shape[2]), int(x.shape[3]))
        if self.layout_for(x) == "stacked":
            assert self.stacked is not None
            steps, split, join = list(self.stacked), to_stacked, lambda s, _: from_stacked(s)
        else:
            steps = [functools.partial(block_on_phases, self._describe(b)) for b in self.blocks]
            split, join = to_phases, from_phases
        inner: Any = None  # the run's tensor in phase (or stacked) layout while blocks run on it
        for block, step, on_phases in zip(self.blocks, steps, self.plan(size)):
            if on_phases:
                inner = step(split(x) if inner is None else inner)
            else:
                if inner is not None:
                    x, inner = join(inner, size), None
                x = block(x)
            stride = self._describe(block).sb.stride
            size = (conv_output_size(size[0], stride), conv_output_size(size[1], stride))
        return x if inner is None else join(inner, size)
