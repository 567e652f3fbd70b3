"""Baseline -> SB network: which SB block replaces which baseline block, and how its weights carry over.

A regular block's weights map exactly (SB conv := conv1, SB deconv := conv2 transposed and
flipped); a bottleneck block's 3x3 conv becomes a fitted linear SB (:mod:`sbdeploy.convert.bottleneck`).
Conversion goes block by block, so any network built from :mod:`sbdeploy.nn.blocks` converts (docs/sbify.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sbdeploy.convert.bottleneck import LinearSBInit, conv_as_deconv, fit_linear_sbs
from sbdeploy.errors import ConfigError
from sbdeploy.models import list_models, model_info
from sbdeploy.nn import blocks as B
from sbdeploy.nn.sampling import resolve_sampling


@dataclass(frozen=True)
class BlockMap:
    """How one baseline block type becomes its SB twin."""

    sb_block: type[nn.Module]
    renames: dict[str, str]  # baseline state-dict prefix -> the SB block's; unlisted keys keep their names
    deconv_from: str | None  # the conv whose weight becomes the SB deconv; None: bottleneck, conv2 is fitted


_PRE_MID = {"conv1.": "sb.conv.", "bn2.": "sb.mid.0.", "conv2.": "sb.deconv."}  # BN2 sits between the convs
_POST_MID = {"conv1.": "sb.conv.", "bn1.": "sb.mid.0.", "conv2.": "sb.deconv."}  # torchvision: BN1 does

BLOCK_MAPS: dict[type[nn.Module], BlockMap] = {
    B.PreActBasicBlock: BlockMap(B.SBPreActBasicBlock, _PRE_MID, "conv2"),
    B.BasicBlock: BlockMap(B.SBBasicBlock, _POST_MID, "conv2"),
    B.PyramidBasicBlock: BlockMap(B.SBPyramidBasicBlock, _PRE_MID, "conv2"),
    B.PreActBottleneck: BlockMap(B.SBPreActBottleneck, {}, None),
    B.Bottleneck: BlockMap(B.SBBottleneck, {}, None),
    B.PyramidBottleneck: BlockMap(B.SBPyramidBottleneck, {}, None),
}
"""Every baseline block type sbify converts, by exact type (an SB block is never a key)."""


def _twin(block: nn.Module, sampling: str) -> nn.Module:
    """An SB twin of ``block``'s shape, on its device and in its dtype (so loading its tensors rounds nothing)."""
    stride = max(block.conv1.stride[0], block.conv2.stride[0])
    sb = BLOCK_MAPS[type(block)].sb_block(block.conv1.in_channels, block.conv1.out_channels, stride, sampling=sampling)
    param = next(block.parameters())
    return sb.to(device=param.device, dtype=param.dtype)


def map_regular_block(block: nn.Module, sampling: str) -> nn.Module:
    """The SB twin of a regular (two 3x3 convs) baseline block, its weights mapped exactly."""
    spec = BLOCK_MAPS[type(block)]
    sb = _twin(block, sampling)
    deconv_key = spec.renames[f"{spec.deconv_from}."] + "weight"
    state: dict[str, Tensor] = {}
    for key, value in block.state_dict().items():
        prefix = next((p for p in spec.renames if key.startswith(p)), None)
        new_key = key if prefix is None else spec.renames[prefix] + key[len(prefix) :]
        state[new_key] = conv_as_deconv(value) if new_key == deconv_key else value
    sb.load_state_dict(state, strict=True)
    return sb


def map_bottleneck_block(block: nn.Module, sampling: str, init: LinearSBInit) -> nn.Module:
    """The SB twin of a channel-bottleneck block: 1x1 convs and BNs copied, the 3x3 conv's linear SB from ``init``."""
    sb = _twin(block, sampling)
    state = {k: v for k, v in block.state_dict().items() if k != "conv2.weight"}
    state["conv2.conv.weight"], state["conv2.deconv.weight"] = init.conv, init.deconv
    sb.load_state_dict(state, strict=True)
    return sb


@dataclass(frozen=True)
class Conversion:
    """A converted network and the fits of its bottleneck blocks' linear SBs (by block name)."""

    model: nn.Module
    bottleneck_fits: dict[str, LinearSBInit]

    @property
    def bottleneck_error(self) -> float | None:
        """Mean relative error of the linear SB fits on their inputs; None without bottleneck blocks."""
        errors = [f.relative_error for f in self.bottleneck_fits.values()]
        return sum(errors) / len(errors) if errors else None


def convert(
    model: nn.Module,
    sampling: str = "chessboard",
    *,
    calibration: Iterable[Tensor] | None = None,
    stages: Sequence[int] | None = None,
) -> Conversion:
    """The SB network of a trained baseline (in eval mode; ``model`` untouched) and its bottleneck fits.

    ``stages``: convert only the blocks of these stages (numbered from 1; the others are copied exactly), the zoo
    network's ``sb_stages``; None: every block. BN statistics stay the baseline's: recalibrate them for a sparse
    sampling set (:func:`sbdeploy.train.recalibrate_bn`).
    """
    sampling = resolve_sampling(sampling)
    stage_of = B.block_stages(model)
    if stages is not None and not set(stages) <= set(stage_of.values()):
        raise ConfigError(
            f"{type(model).__name__} has stages {sorted(set(stage_of.values()))}, not {sorted(set(stages) - set(stage_of.values()))}"
        )
    found = [
        (name, m)
        for name, m in model.named_modules()
        if type(m) in BLOCK_MAPS and (stages is None or stage_of[name] in stages)
    ]
    if not found and stages is None:
        raise ConfigError(
            f"{type(model).__name__} holds no baseline residual block sbify can convert "
            f"({', '.join(t.__name__ for t in BLOCK_MAPS)}); is it an SB network already?"
        )
    bottlenecks = [(name, block.conv2) for name, block in found if BLOCK_MAPS[type(block)].deconv_from is None]
    inits = fit_linear_sbs(model, bottlenecks, sampling, calibration=calibration) if bottlenecks else {}
    converted = copy.deepcopy(model)
    with torch.no_grad():
        for name, block in found:
            if name in inits:
                sb = map_bottleneck_block(block, sampling, inits[name])
            else:
                sb = map_regular_block(block, sampling)
            parent, _, child = name.rpartition(".")
            setattr(converted.get_submodule(parent), child, sb)
    return Conversion(converted.eval(), inits)


def sbify(
    model: nn.Module,
    sampling: str = "chessboard",
    *,
    calibration: Iterable[Tensor] | None = None,
    stages: Sequence[int] | None = None,
) -> nn.Module:
    """The SB network of a trained baseline: its residual blocks (of ``stages``; None: all) replaced by their SB twins
    (see :func:`convert`)."""
    return convert(model, sampling, calibration=calibration, stages=stages).model


def sb_counterpart(arch: str) -> str:
    """The registered SB twin of a baseline (``cifar_resnet20`` -> ``cifar_resnet20_sb``); else ConfigError."""
    info = model_info(arch)
    if info.is_sb:
        raise ConfigError(
            f"{arch} is an SB network already (its baseline is {info.baseline}); sbify and sweep take a baseline"
        )
    twins = [name for name in list_models() if model_info(name).baseline == arch]
    if not twins:
        raise ConfigError(f"no registered SB network has {arch} as its baseline; see `sbdeploy zoo`")
    return twins[0]
