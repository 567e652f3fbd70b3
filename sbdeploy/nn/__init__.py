"""Neural-network building blocks: the SB operator, its forms, the residual blocks, their deploy copies.

Where things live: the SB's forms in one registry (:mod:`.lowering`), the SB module and
the one form switch (:mod:`.sb`), the fused operator (:mod:`.fused`), blocks and their descriptions (:mod:`.blocks`), BN
folding (:mod:`.fold`), exact tap convs (:mod:`.taps`), phase runs and the stacked
layout (:mod:`.phase`, :mod:`.stacked`), deploy copies (:mod:`.deploy`). Which form and
layout each engine gets is the deploy-target table, :mod:`sbdeploy.targets`.
"""

from sbdeploy.nn import fused  # registers the fused form
from sbdeploy.nn.lowering import LOWERINGS, get_lowering, register_lowering, sb_fast, sb_reference
from sbdeploy.nn.sampling import SAMPLINGS, resolve_sampling, sampling_mask
from sbdeploy.nn.sb import SpatialBottleneck, form_mode, reference_mode

__all__ = [
    "LOWERINGS",
    "SAMPLINGS",
    "fused",
    "SpatialBottleneck",
    "form_mode",
    "get_lowering",
    "reference_mode",
    "register_lowering",
    "resolve_sampling",
    "sampling_mask",
    "sb_fast",
    "sb_reference",
]
