"""Deploy forms of whole networks: SB blocks kept in phase layout, lowering chosen per target.

A run of consecutive stride-1 SB regular blocks with identity shortcuts (a ResNet
stage after its first block) is computed on the four phases ``x[:, :, p::2, q::2]``
of its input: the SB conv part reads the input phases through small exact convs
(:func:`~sbdeploy.nn.lowering.sb_phase_conv`), the deconv part writes the output
phases (:func:`~sbdeploy.nn.lowering.sb_phase_deconv`), and BN, ReLU and the residual
add are point-wise, so they commute with the phase split. The interleave then
happens once per run instead of once per block, and every op of the run is a Conv,
an Add or a point-wise op that ONNX Runtime's blocked-layout (NCHWc) kernels fuse.
Runs on odd sizes (ImageNet's 7x7 stage) fall back to the per-block lowering.

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
from sbdeploy.nn.sb import SpatialBottleneck

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


def _sb_of(block: nn.Module) -> SpatialBottleneck:
    sb = block.sb.sb if isinstance(block.sb, LoweredSB) else block.sb
    assert isinstance(sb, SpatialBottleneck)
    return sb


def phase_eligible(block: nn.Module) -> bool:
    """True for a stride-1 SB regular block with an identity shortcut (pre- or post-activation)."""
    if isinstance(block, SBPreActBasicBlock):
        return block.shortcut is None and _sb_of(block).stride == 1
    if isinstance(block, SBBasicBlock):
        return block.downsample is None and _sb_of(block).stride == 1
    return False


def _bn(x: Tensor, bn: nn.BatchNorm2d) -> Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _block_on_phases(block: nn.Module, phases: list[Tensor]) -> list[Tensor]:
    """One eligible block on phase-split input (even size); returns the output phases."""
    sb = _sb_of(block)
    size = (int(phases[0].shape[2]), int(phases[0].shape[3]))
    parities = _parities(sb.sampling, 2 * size[0], 2 * size[1])
    folded = fold_mid(sb.mid)
    if isinstance(block, SBPreActBasicBlock):  # x + SB(ReLU(BN1(x)))
        inner = [F.relu(_bn(p, block.bn1)) for p in phases]
        z = sb_phase_conv(inner, sb.conv.weight, parities=parities, folded=folded)
        return sb_phase_deconv(z, sb.deconv.weight, parities=parities, out_size=size, residual=phases)
    # post-activation: ReLU(x + BN2(SB(x))); BN2 folds into the deconv weights and a bias
    assert isinstance(block.bn2, nn.BatchNorm2d)
    post = fold_mid(block.bn2)
    assert post.scale is not None and post.bias is not None
    z = sb_phase_conv(phases, sb.conv.weight, parities=parities, folded=folded)
    w2 = sb.deconv.weight * post.scale[None, :, None, None]
    out = sb_phase_deconv(z, w2, parities=parities, out_size=size, residual=phases, bias=post.bias)
    return [F.relu(p) for p in out]


class PhaseRun(nn.Module):
    """Consecutive eligible SB blocks computed in phase layout; one split and one interleave."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        if not blocks or not all(phase_eligible(b) for b in blocks):
            raise ConfigError("a phase run takes stride-1 SB regular blocks with identity shortcuts")
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        height, width = int(x.shape[2]), int(x.shape[3])
        if height % 2 or width % 2:  # odd grid: phases differ in size; run block by block
            for block in self.blocks:
                x = block(x)
            return x
        phases = to_phases(x)
        for block in self.blocks:
            phases = _block_on_phases(block, phases)
        return from_phases(phases, (height, width))


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


_SB_THEN_BN: dict[type, tuple[tuple[str, str], ...]] = {
    SBBottleneck: (("conv2", "bn2"),),  # torchvision: ReLU(BN2(SB(.)))
    SBPreActBottleneck: (("conv2", "bn3"),),  # pre-activation: ReLU(BN3(SB(.)))
    SBPyramidBottleneck: (("conv2", "bn3"),),
}
"""Blocks whose linear SB feeds a BatchNorm directly: (SB attribute, BN attribute)."""


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
        _replace_children(deployed, lambda m: _group_runs(m) if isinstance(m, nn.Sequential) else None)
    return deployed
