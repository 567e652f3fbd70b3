"""Deploy forms of whole networks: SB blocks kept in phase layout, lowering chosen per target.

A run of consecutive SB regular blocks (identity or 1x1-conv shortcuts) is computed on
the four phases ``x[:, :, p::2, q::2]`` of its input: the SB conv part reads the input
phases through small exact convs (:func:`~sbdeploy.nn.lowering.sb_phase_conv`, stride 1
or 2), the deconv part writes the output phases
(:func:`~sbdeploy.nn.lowering.sb_phase_deconv`), BN, ReLU and the residual add are
point-wise, so they commute with the phase split, and a stride-2 1x1 shortcut reads
phase (0, 0) only. The interleave then happens once per run instead of once per block,
and every op of the run is a Conv, an Add or a point-wise op that ONNX Runtime's
blocked-layout (NCHWc) kernels fuse. A run spans stages: the CIFAR ResNets keep all
their blocks in one list, and a network that names its ``sequential_stages`` gets them
merged. Where a stage would be odd-sized (ImageNet's 7x7 stage) the run interleaves
and the remaining blocks use the per-block lowering.

:func:`deploy_form` returns the eval-mode deploy network for a target engine:

* ``ort-cpu``: phase runs + :func:`~sbdeploy.nn.lowering.sb_subpixel` elsewhere;
* ``ort-cuda``, ``trt``: :func:`~sbdeploy.nn.lowering.sb_strided` (ConvTranspose is a
  native GPU kernel there); not measured on a GPU yet.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.errors import ConfigError
from sbdeploy.nn.blocks import SBBasicBlock, SBBottleneck, SBPreActBasicBlock, SBPreActBottleneck, SBPyramidBottleneck
from sbdeploy.nn.lowering import (
    DEPLOY_LOWERINGS,
    _parities,
    fold_mid,
    from_phases,
    sb_phase_conv,
    sb_phase_deconv,
    to_phases,
)
from sbdeploy.nn.sb import SpatialBottleneck, conv_output_size
from sbdeploy.nn.stacked import StackedBlock, from_stacked, to_stacked

TARGETS: dict[str, tuple[str, bool]] = {
    "ort-cpu": ("subpixel", True),
    "ort-cuda": ("strided", False),
    "trt": ("strided", False),
}
"""Target engine -> (per-SB lowering, whether runs of blocks go to phase layout)."""


def target_lowering(target: str) -> str:
    """Name of the form ``target`` gets (``subpixel+phase-runs``, ``strided``): equal names, equal graphs."""
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    lowering, phase_runs = TARGETS[target]
    return f"{lowering}+phase-runs" if phase_runs else lowering


class LoweredSB(nn.Module):
    """An eval-mode SB that runs a named deploy lowering (shares the original parameters)."""

    def __init__(self, sb: SpatialBottleneck, lowering: str, post: nn.BatchNorm2d | None = None) -> None:
        super().__init__()
        if lowering not in DEPLOY_LOWERINGS:
            raise ConfigError(f"unknown deploy lowering {lowering!r}; choose one of {', '.join(DEPLOY_LOWERINGS)}")
        self.sb = sb
        self.lowering = lowering
        self.post = post  # an eval-mode BN right after the SB, folded into its deconv

    def forward(self, x: Tensor) -> Tensor:
        sb = self.sb
        return DEPLOY_LOWERINGS[self.lowering](
            x, sb.conv.weight, sb.deconv.weight, stride=sb.stride, sampling=sb.sampling, mid=sb.mid, post=self.post
        )


_SB_THEN_BN: dict[type, tuple[tuple[str, str], ...]] = {
    SBBasicBlock: (("sb", "bn2"),),  # torchvision: ReLU(BN2(SB(.)) + shortcut)
    SBBottleneck: (("conv2", "bn2"),),  # torchvision: ReLU(BN2(SB(.)))
    SBPreActBottleneck: (("conv2", "bn3"),),  # pre-activation: ReLU(BN3(SB(.)))
    SBPyramidBottleneck: (("conv2", "bn3"),),
}
"""Blocks whose SB feeds a BatchNorm directly: (SB attribute, BN attribute)."""


STACKED_MAX_MACS = 1 << 18
"""Below this many MACs per tap conv (batch x phase pixels x C_in x C_out) a run of regular
blocks takes the stacked layout (:mod:`sbdeploy.nn.stacked`). Measured on 2 cores, ORT CPU
2 threads, cifar_resnet56_sb vs its baseline (65k MACs per tap conv per image): batch 1
stacked 0.92-1.1x, exact taps 0.65-0.88x; batch 8 stacked 1.11x, taps 1.39x; batch 32
stacked 1.09x, taps 1.5x."""


_PHASE_BLOCKS = (SBPreActBasicBlock, SBBasicBlock, SBPreActBottleneck, SBBottleneck)
"""Block types that run on phases: SB regular blocks and SB bottlenecks, pre- and post-activation."""


def _lowered_of(block: nn.Module) -> tuple[SpatialBottleneck, nn.BatchNorm2d | None]:
    """A block's SB and the BN folded into it by :func:`deploy_form` (bottlenecks: ``conv2``)."""
    part = block.conv2 if isinstance(block, (SBPreActBottleneck, SBBottleneck)) else block.sb
    sb, post = (part.sb, part.post) if isinstance(part, LoweredSB) else (part, None)
    assert isinstance(sb, SpatialBottleneck)
    return sb, post


def _sb_of(block: nn.Module) -> SpatialBottleneck:
    return _lowered_of(block)[0]


def _shortcut_conv(block: nn.Module) -> nn.Conv2d | None:
    """The 1x1 conv of a block's projection shortcut (None for an identity shortcut)."""
    if isinstance(block, (SBPreActBasicBlock, SBPreActBottleneck)):
        return block.shortcut
    assert isinstance(block, (SBBasicBlock, SBBottleneck))
    return None if block.downsample is None else block.downsample[0]


def phase_eligible(block: nn.Module) -> bool:
    """True for an SB block (regular or bottleneck, pre- or post-activation) prepared by
    :func:`deploy_form` (SB lowered, the BN after it folded in) whose shortcut is identity or
    a 1x1 conv with the SB's stride."""
    if type(block) not in _PHASE_BLOCKS:
        return False
    if not isinstance(block.conv2 if isinstance(block, (SBPreActBottleneck, SBBottleneck)) else block.sb, LoweredSB):
        return False
    if any(not isinstance(getattr(block, bn), nn.Identity) for _, bn in _SB_THEN_BN.get(type(block), ())):
        return False
    shortcut = _shortcut_conv(block)
    return shortcut is None or (shortcut.kernel_size == (1, 1) and shortcut.stride[0] == _sb_of(block).stride)


def _fits_phases(block: nn.Module, size: tuple[int, int]) -> bool:
    """Whether ``block`` can run on the phases of a ``size`` input: equal phases in and out."""
    multiple = 2 * _sb_of(block).stride
    return size[0] % multiple == 0 and size[1] % multiple == 0


def _bn(x: Tensor, bn: nn.Module) -> Tensor:
    assert isinstance(bn, nn.BatchNorm2d)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _conv1x1(x: Tensor, conv: nn.Module) -> Tensor:
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
    return F.conv2d(x, conv.weight, conv.bias)


def _shortcut_on_phases(block: nn.Module, phases: list[Tensor]) -> list[Tensor]:
    """The shortcut's output phases. A stride-2 1x1 conv reads only phase (0, 0): it runs
    there at stride 1 (its output grid) and that result is split into the output phases."""
    conv = _shortcut_conv(block)
    if conv is None:
        return phases
    post = block.downsample[1] if isinstance(block, (SBBasicBlock, SBBottleneck)) and block.downsample is not None else None

    def project(t: Tensor) -> Tensor:
        y = F.conv2d(t, conv.weight)
        return y if post is None else _bn(y, post)

    if conv.stride[0] == 1:
        return [project(p) for p in phases]
    return to_phases(project(phases[0]))


def _sb_on_phases(block: nn.Module, phases: list[Tensor], residual: list[Tensor] | None = None) -> list[Tensor]:
    """The block's SB (its ``mid`` and the BN after it folded in) from input to output phases."""
    sb, post = _lowered_of(block)
    size = (int(phases[0].shape[2]) // sb.stride, int(phases[0].shape[3]) // sb.stride)  # output phase size
    parities = _parities(sb.sampling, 2 * size[0], 2 * size[1])
    z = sb_phase_conv(phases, sb.conv.weight, parities=parities, folded=fold_mid(sb.mid), stride=sb.stride)
    w2, bias = sb.deconv.weight, None
    if post is not None:
        folded = fold_mid(post)
        assert folded.scale is not None and folded.bias is not None
        w2, bias = w2 * folded.scale[None, :, None, None], folded.bias
    return sb_phase_deconv(z, w2, parities=parities, out_size=size, residual=residual, bias=bias)


def _block_on_phases(block: nn.Module, phases: list[Tensor]) -> list[Tensor]:
    """One eligible block on phase-split input (see :func:`_fits_phases`); returns the output phases.

    Every op but the SB is point-wise or a 1x1 conv, applied to each phase alike.
    """
    if isinstance(block, SBPreActBasicBlock):  # shortcut(a) + SB(a), a = ReLU(BN1(x)); identity shortcut: x
        inner = [F.relu(_bn(p, block.bn1)) for p in phases]
        residual = phases if block.shortcut is None else _shortcut_on_phases(block, inner)
        return _sb_on_phases(block, inner, residual)
    if isinstance(block, SBBasicBlock):  # ReLU(shortcut(x) + BN2(SB(x))), BN2 folded into the deconv
        return [F.relu(p) for p in _sb_on_phases(block, phases, _shortcut_on_phases(block, phases))]
    if isinstance(block, SBPreActBottleneck):  # shortcut(a) + conv3(ReLU(BN3(SB(ReLU(BN2(conv1(a)))))))
        inner = [F.relu(_bn(p, block.bn1)) for p in phases]
        residual = phases if block.shortcut is None else _shortcut_on_phases(block, inner)
        h = _sb_on_phases(block, [F.relu(_bn(_conv1x1(p, block.conv1), block.bn2)) for p in inner])
        return [_conv1x1(F.relu(p), block.conv3) + r for p, r in zip(h, residual)]
    assert isinstance(block, SBBottleneck)  # ReLU(shortcut(x) + BN3(conv3(ReLU(BN2(SB(ReLU(BN1(conv1(x)))))))))
    residual = _shortcut_on_phases(block, phases)
    h = _sb_on_phases(block, [F.relu(_bn(_conv1x1(p, block.conv1), block.bn1)) for p in phases])
    return [F.relu(_bn(_conv1x1(F.relu(p), block.conv3), block.bn3) + r) for p, r in zip(h, residual)]


class PhaseRun(nn.Module):
    """Consecutive eligible SB blocks computed in phase layout: one split, one interleave.

    A block whose input cannot be split into equal phases (odd sizes; a stride-2 block
    whose output would be odd) ends the phase part: the phases are interleaved there and
    the blocks that do not fit run block by block (:meth:`plan`).
    """

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        if not blocks or not all(phase_eligible(b) for b in blocks):
            raise ConfigError("a phase run takes SB blocks prepared by deploy_form, with identity or 1x1 conv shortcuts")
        self.blocks = nn.ModuleList(blocks)
        regular = all(isinstance(b, (SBPreActBasicBlock, SBBasicBlock)) for b in blocks)
        self.stacked = nn.ModuleList([StackedBlock(b, *_lowered_of(b)) for b in blocks]) if regular else None
        self.layout = "auto"
        """``phases`` (exact tap convs), ``stacked`` (few merged convs, regular blocks only) or
        ``auto``: :meth:`layout_for` picks by the size of the work per node."""

    def layout_for(self, x: Tensor) -> str:
        """``stacked`` for a run of regular blocks whose every node is small: a fixed batch whose tap
        convs at the run's input do fewer than :data:`STACKED_MAX_MACS` multiply-accumulates
        (with a symbolic batch, the exact ``phases``)."""
        if self.layout != "auto":
            return self.layout
        if self.stacked is None or not isinstance(x.shape[0], int):
            return "phases"
        sb = _sb_of(self.blocks[0])
        macs = x.shape[0] * (int(x.shape[2]) // 2) * (int(x.shape[3]) // 2) * sb.conv.in_channels * sb.conv.out_channels
        return "stacked" if macs < STACKED_MAX_MACS else "phases"

    def plan(self, size: tuple[int, int]) -> list[bool]:
        """For each block, whether it runs on phases when the run's input is ``size``.

        A block that fits alone between blocks that do not keeps its own lowering: a
        split and an interleave for one block cost more than they save.
        """
        fits = []
        for block in self.blocks:
            fits.append(_fits_phases(block, size))
            stride = _sb_of(block).stride
            size = (conv_output_size(size[0], stride), conv_output_size(size[1], stride))
        neighbours = [False, *fits, False]
        return [f and (neighbours[i] or neighbours[i + 2]) for i, f in enumerate(fits)]

    def forward(self, x: Tensor) -> Tensor:
        if self.layout_for(x) == "stacked":
            return self._forward_stacked(x)
        size = (int(x.shape[2]), int(x.shape[3]))
        phases: list[Tensor] | None = None
        for block, on_phases in zip(self.blocks, self.plan(size)):
            if on_phases:
                if phases is None:
                    phases = to_phases(x)
                phases = _block_on_phases(block, phases)
            else:
                if phases is not None:
                    x, phases = from_phases(phases, size), None
                x = block(x)
            stride = _sb_of(block).stride
            size = (conv_output_size(size[0], stride), conv_output_size(size[1], stride))
        return x if phases is None else from_phases(phases, size)

    def _forward_stacked(self, x: Tensor) -> Tensor:
        assert self.stacked is not None
        stacked: Tensor | None = None
        for block, on_stacked, on_phases in zip(self.blocks, self.stacked, self.plan((int(x.shape[2]), int(x.shape[3])))):
            if on_phases:
                stacked = on_stacked(to_stacked(x) if stacked is None else stacked)
            else:
                if stacked is not None:
                    x, stacked = from_stacked(stacked), None
                x = block(x)
        return x if stacked is None else from_stacked(stacked)


def _replace_children(module: nn.Module, visit: Callable[[nn.Module], nn.Module | None]) -> None:
    for name, child in list(module.named_children()):
        new = visit(child)
        if new is not None:
            setattr(module, name, new)
        else:
            _replace_children(child, visit)


def _group_runs(seq: nn.Sequential) -> nn.Sequential | None:
    """Sequential with each maximal run of eligible blocks (two or more) as one PhaseRun."""
    items: list[nn.Module] = []
    run: list[nn.Module] = []
    changed = False
    for child in list(seq) + [None]:
        if child is not None and phase_eligible(child):
            run.append(child)
            continue
        if len(run) >= 2:
            items.append(PhaseRun(run))
            changed = True
        else:
            items.extend(run)
        run = []
        if child is not None:
            items.append(child)
    return nn.Sequential(*items) if changed else None



def deploy_form(model: nn.Module, target: str = "ort-cpu") -> nn.Module:
    """Eval-mode copy of ``model`` lowered for ``target`` (``ort-cpu``, ``ort-cuda`` or ``trt``).

    The copy computes the same function as ``model`` in eval mode (the dense reference,
    up to float rounding) and shares no state with it.
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    lowering, use_phases = TARGETS[target]
    deployed = copy.deepcopy(model).eval()
    for block in list(deployed.modules()):  # a linear SB followed by a BN: fold the BN into the deconv
        for sb_name, bn_name in _SB_THEN_BN.get(type(block), ()):
            setattr(block, sb_name, LoweredSB(getattr(block, sb_name), lowering, post=getattr(block, bn_name)))
            setattr(block, bn_name, nn.Identity())
    _replace_children(  # an SB already lowered above stays as it is
        deployed,
        lambda m: LoweredSB(m, lowering) if isinstance(m, SpatialBottleneck) else (m if isinstance(m, LoweredSB) else None),
    )
    if use_phases:
        # A network whose stages run one after the other (it names them) gets one run across them.
        stages = getattr(deployed, "sequential_stages", ())
        if stages:
            setattr(deployed, stages[0], nn.Sequential(*[b for name in stages for b in getattr(deployed, name)]))
            for name in stages[1:]:
                setattr(deployed, name, nn.Identity())
        _replace_children(deployed, lambda m: _group_runs(m) if isinstance(m, nn.Sequential) else None)
    return deployed
