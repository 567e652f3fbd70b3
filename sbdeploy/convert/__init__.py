"""Baseline -> SB conversion (``sbdeploy sbify``): weight mapping, bottleneck initialisation, the checkpoint workflow."""

from sbdeploy.convert.bottleneck import LinearSBInit, fit_linear_sbs
from sbdeploy.convert.kernels import conv_as_deconv
from sbdeploy.convert.mapping import BLOCK_MAPS, Conversion, convert, sb_counterpart, sbify
from sbdeploy.convert.run import SbifyCallbacks, SbifyResult, Stage, sbify_checkpoint

__all__ = [
    "BLOCK_MAPS",
    "Conversion",
    "LinearSBInit",
    "SbifyCallbacks",
    "SbifyResult",
    "Stage",
    "conv_as_deconv",
    "convert",
    "fit_linear_sbs",
    "sb_counterpart",
    "sbify",
    "sbify_checkpoint",
]
