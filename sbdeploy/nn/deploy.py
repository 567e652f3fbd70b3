"""Deploy copies of networks: BN folded, every SB set to one lowering, runs of blocks in phase layout.

:func:`deploy_form` returns an eval-mode copy that computes the same function and shares no
state with the original; a network naming its ``sequential_stages`` gets them merged first,
so one phase run spans stages.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from sbdeploy.nn.blocks import BlockDescription, describe_block
from sbdeploy.nn.fold import fold_bn
from sbdeploy.nn.lowering import get_lowering
from sbdeploy.nn.phase import PhaseRun
from sbdeploy.nn.sb import SpatialBottleneck


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``old`` is a child inside ``root``."""
    for module in root.modules():
        for name, child in list(module.named_children()):
            if child is old:
                setattr(module, name, new)


def _fold_mid(sb: SpatialBottleneck) -> None:
    """A leading BN of the SB's ``mid`` into the SB conv; ``mid`` keeps what follows it (ReLU)."""
    if sb.mid is None:
        return
    parts = list(sb.mid) if isinstance(sb.mid, nn.Sequential) else [sb.mid]
    if parts and isinstance(parts[0], nn.BatchNorm2d):
        fold_bn(sb.conv, parts.pop(0))
        rest = [m for m in parts if not isinstance(m, nn.Identity)]
        sb.mid = None if not rest else rest[0] if len(rest) == 1 else nn.Sequential(*rest)


def _fold_sequence(root: nn.Module, layer: nn.Module | None, sequence: tuple[nn.Module, ...]) -> None:
    """Fold each BN of ``sequence`` that directly follows a convolution (``layer`` precedes the sequence)."""
    previous = layer
    for module in sequence:
        if isinstance(module, nn.BatchNorm2d) and isinstance(previous, (nn.Conv2d, nn.ConvTranspose2d)):
            fold_bn(previous, module)
            _replace(root, module, nn.Identity())
            continue  # the conv (now with the BN in it) still precedes what follows
        previous = module


def fold_block(block: nn.Module, desc: BlockDescription) -> None:
    """Fold, in place, every BN of a described block that follows a convolution."""
    _fold_mid(desc.sb)
    _fold_sequence(block, None, desc.before)
    _fold_sequence(block, desc.sb.deconv, desc.after)
    if desc.shortcut.conv is not None and desc.shortcut.bn is not None:
        _fold_sequence(block, desc.shortcut.conv, (desc.shortcut.bn,))


def _group_runs(module: nn.Module, stacked_max_macs: int | None) -> None:
    """In every Sequential inside ``module``, each maximal run of two or more described SB blocks as one PhaseRun."""
    for name, child in list(module.named_children()):
        if not isinstance(child, nn.Sequential):
            _group_runs(child, stacked_max_macs)
            continue
        items: list[nn.Module] = []
        for described, group in itertools.groupby(child, key=lambda m: describe_block(m) is not None):
            run = list(group)
            if described and len(run) >= 2:
                items.append(PhaseRun(run, stacked_max_macs=stacked_max_macs))
            else:
                items.extend(run)
        if len(items) < len(child):
            setattr(module, name, nn.Sequential(*items))
        else:
            _group_runs(child, stacked_max_macs)


def deploy_form(
    model: nn.Module, *, lowering: str, phase_runs: bool = False, stacked_max_macs: int | None = None
) -> nn.Module:
    """Eval-mode copy of ``model`` (left untouched) with BN folded, every SB running ``lowering``, optional phase runs.

    ``stacked_max_macs`` is the stacked-layout threshold of each phase run (:meth:`PhaseRun.layout_for`).
    """
    get_lowering(lowering)
    deployed = copy.deepcopy(model).eval()
    with torch.no_grad():
        for block in list(deployed.modules()):
            desc = describe_block(block)
            if desc is not None:
                fold_block(block, desc)
        for sb in deployed.modules():
            if isinstance(sb, SpatialBottleneck):
                _fold_mid(sb)  # SBs outside a described block (their mid BN is folded above otherwise)
                sb.form = lowering
    if phase_runs:
        stages = getattr(deployed, "sequential_stages", ())
        if stages:
            setattr(deployed, stages[0], nn.Sequential(*[b for name in stages for b in getattr(deployed, name)]))
            for name in stages[1:]:
                setattr(deployed, name, nn.Identity())
        _group_runs(deployed, stacked_max_macs)
    return deployed
