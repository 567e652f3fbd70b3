"""Baseline -> SB conversion (``sbdeploy sbify``): weight mapping, bottleneck initialisation, the checkpoint workflow."""

from sbdeploy.convert.mapping import convert, sbify
from sbdeploy.convert.run import sbify_checkpoint

__all__ = ["convert", "sbify", "sbify_checkpoint"]
