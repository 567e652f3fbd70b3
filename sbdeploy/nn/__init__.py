"""Neural-network building blocks: the SB operator and the residual blocks built from it."""

from sbdeploy.nn.blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    PyramidBasicBlock,
    PyramidBottleneck,
    SBBasicBlock,
    SBBottleneck,
    SBPreActBasicBlock,
    SBPreActBottleneck,
    SBPyramidBasicBlock,
    SBPyramidBottleneck,
)
from sbdeploy.nn.sb import (
    SAMPLINGS,
    SpatialBottleneck,
    reference_mode,
    resolve_sampling,
    sampling_mask,
    sb_fast,
    sb_reference,
)

__all__ = [
    "SAMPLINGS",
    "BasicBlock",
    "Bottleneck",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PyramidBasicBlock",
    "PyramidBottleneck",
    "SBBasicBlock",
    "SBBottleneck",
    "SBPreActBasicBlock",
    "SBPreActBottleneck",
    "SBPyramidBasicBlock",
    "SBPyramidBottleneck",
    "SpatialBottleneck",
    "reference_mode",
    "resolve_sampling",
    "sampling_mask",
    "sb_fast",
    "sb_reference",
]
