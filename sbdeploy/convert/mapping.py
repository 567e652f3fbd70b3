"""Baseline -> SB network: which SB block replaces which baseline block, and how its weights carry over.

An SB regular block is the baseline's regular block with the mid activation sampled
(``SB_SPEC.md`` section 2), so its weights map exactly: SB conv := conv1 (same stride),
the BN between the two convs becomes the SB's ``mid`` BN, SB deconv := conv2 transposed
in channels and flipped in space (:func:`conv_as_deconv`), every other tensor (outer BNs,
shortcuts) is copied under the same name. With ``dense`` sampling the SB network then
computes the baseline exactly. A channel-bottleneck block's 3x3 conv (C -> C) becomes a
linear SB with C/2 mid channels, which no exact map reaches: its weights come from
:mod:`sbdeploy.convert.bottleneck`; the 1x1 convs and BNs are copied.

:func:`sbify` converts a whole network block by block, so it works on every zoo family
and on any network assembled from :mod:`sbdeploy.nn.blocks`; :func:`sb_counterpart`
names the registered SB twin of a registered baseline.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sbdeploy.convert.bottleneck import LinearSBInit, fit_linear_sbs
from sbdeploy.convert.kernels import conv_as_deconv
from sbdeploy.errors import ConfigError
from sbdeploy.models import list_models, model_info
from sbdeploy.nn import blocks as B
from sbdeploy.nn.sampling import resolve_sampling


@dataclass(frozen=True)
class BlockMap:
    """How one baseline block type becomes its SB twin.

    ``renames`` maps a baseline state-dict prefix to the SB block's (``conv2.`` ->
    ``sb.deconv.`` ...); unlisted keys keep their names. ``deconv_from`` is the baseline
    conv whose weight becomes the SB deconv through :func:`conv_as_deconv` (regular
    blocks); ``None`` for bottleneck blocks, whose 3x3 conv ``conv2`` is fitted instead.
    """

    sb_block: type[nn.Module]
    shape: Callable[[nn.Module], tuple[int, int, int]]  # (in_planes, planes, stride) of a baseline block
    renames: dict[str, str]
    deconv_from: str | None


def _preact_basic_shape(b: nn.Module) -> tuple[int, int, int]:
    return b.bn1.num_features, b.conv1.out_channels, b.conv1.stride[0]


def _basic_shape(b: nn.Module) -> tuple[int, int, int]:
    return b.conv1.in_channels, b.conv1.out_channels, b.conv1.stride[0]


def _preact_bottleneck_shape(b: nn.Module) -> tuple[int, int, int]:
    return b.bn1.num_features, b.conv2.in_channels, b.conv2.stride[0]


def _bottleneck_shape(b: nn.Module) -> tuple[int, int, int]:
    return b.conv1.in_channels, b.conv2.in_channels, b.conv2.stride[0]


_PRE_MID = {"conv1.": "sb.conv.", "bn2.": "sb.mid.0.", "conv2.": "sb.deconv."}  # BN2 sits between the convs
_POST_MID = {"conv1.": "sb.conv.", "bn1.": "sb.mid.0.", "conv2.": "sb.deconv."}  # torchvision: BN1 does

BLOCK_MAPS: dict[type[nn.Module], BlockMap] = {
    B.PreActBasicBlock: BlockMap(B.SBPreActBasicBlock, _preact_basic_shape, _PRE_MID, "conv2"),
    B.BasicBlock: BlockMap(B.SBBasicBlock, _basic_shape, _POST_MID, "conv2"),
    B.PyramidBasicBlock: BlockMap(B.SBPyramidBasicBlock, _preact_basic_shape, _PRE_MID, "conv2"),
    B.PreActBottleneck: BlockMap(B.SBPreActBottleneck, _preact_bottleneck_shape, {}, None),
    B.Bottleneck: BlockMap(B.SBBottleneck, _bottleneck_shape, {}, None),
    B.PyramidBottleneck: BlockMap(B.SBPyramidBottleneck, _preact_bottleneck_shape, {}, None),
}
"""Every baseline block type sbify converts, by exact type (an SB block is never a key)."""


def _like(new: nn.Module, old: nn.Module) -> nn.Module:
    """``new`` on ``old``'s device and dtype, so that loading ``old``'s tensors rounds nothing."""
    param = next(old.parameters())
    return new.to(device=param.device, dtype=param.dtype)


def map_regular_block(block: nn.Module, sampling: str) -> nn.Module:
    """The SB twin of a regular (two 3x3 convs) baseline block, its weights mapped exactly."""
    spec = BLOCK_MAPS[type(block)]
    if spec.deconv_from is None:
        raise ConfigError(f"{type(block).__name__} is a bottleneck block; map it with map_bottleneck_block")
    in_planes, planes, stride = spec.shape(block)
    sb = _like(spec.sb_block(in_planes, planes, stride, sampling=sampling), block)
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
    spec = BLOCK_MAPS[type(block)]
    in_planes, planes, stride = spec.shape(block)
    sb = _like(spec.sb_block(in_planes, planes, stride, sampling=sampling), block)
    state = {k: v for k, v in block.state_dict().items() if k != "conv2.weight"}
    state["conv2.conv.weight"], state["conv2.deconv.weight"] = init.conv, init.deconv
    sb.load_state_dict(state, strict=True)
    return sb


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if type(m) in BLOCK_MAPS]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


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
    seed: int = 0,
) -> Conversion:
    """:func:`sbify`, also answering how well each bottleneck block's linear SB fits its 3x3 conv."""
    sampling = resolve_sampling(sampling)
    found = _blocks(model)
    if not found:
        raise ConfigError(
            f"{type(model).__name__} holds no baseline residual block sbify can convert "
            f"({', '.join(t.__name__ for t in BLOCK_MAPS)}); is it an SB network already?"
        )
    bottlenecks = [(name, block.conv2) for name, block in found if BLOCK_MAPS[type(block)].deconv_from is None]
    inits = fit_linear_sbs(model, bottlenecks, sampling, calibration=calibration, seed=seed) if bottlenecks else {}
    converted = copy.deepcopy(model)
    with torch.no_grad():
        for name, block in found:
            new = (
                map_bottleneck_block(block, sampling, inits[name])
                if name in inits
                else map_regular_block(block, sampling)
            )
            _replace(converted, name, new)
    return Conversion(converted.eval(), inits)


def sbify(
    model: nn.Module,
    sampling: str = "chessboard",
    *,
    calibration: Iterable[Tensor] | None = None,
    seed: int = 0,
) -> nn.Module:
    """The SB network of a trained baseline: every residual block replaced by its SB twin.

    Regular blocks map exactly (with ``sampling="dense"`` the result computes ``model``'s
    function); channel-bottleneck blocks get the fitted linear SB of
    :func:`sbdeploy.convert.bottleneck.fit_linear_sbs`. BN statistics are the baseline's:
    with a sparse sampling set, recalibrate them (:func:`sbdeploy.train.recalibrate_bn`).

    Args:
        model: a baseline built from :mod:`sbdeploy.nn.blocks` (any zoo baseline); not modified.
        sampling: the SB sampling set (``single``, ``chessboard``, ``three``, ``dense``).
        calibration: batches of normalized input images for the bottleneck fit; None fits
            on Gaussian noise at each 3x3 conv's input instead (data-free). Unused by
            networks without bottleneck blocks.
        seed: seed of the data-free noise.

    Returns:
        A new network in eval mode, on ``model``'s device and in its dtype.

    Raises:
        ConfigError: unknown sampling set, or ``model`` holds no baseline block (an SB
            network already, or not built from sbdeploy's blocks).
    """
    return convert(model, sampling, calibration=calibration, seed=seed).model


def sb_counterpart(arch: str) -> str:
    """The registered SB network whose baseline is ``arch`` (``cifar_resnet20`` -> ``cifar_resnet20_sb``).

    Raises:
        ConfigError: ``arch`` is an SB network already, or no SB network names it as baseline.
    """
    info = model_info(arch)
    if info.is_sb:
        raise ConfigError(f"{arch} is an SB network already (its baseline is {info.baseline}); sbify takes a baseline")
    twins = [name for name in list_models() if model_info(name).baseline == arch]
    if not twins:
        raise ConfigError(f"no registered SB network has {arch} as its baseline; see `sbdeploy zoo`")
    return twins[0]
