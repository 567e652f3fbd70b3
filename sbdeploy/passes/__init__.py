"""ONNX graph passes, each usable alone, and :func:`run_passes` that applies a list with reports.

Passes take and return an ``onnx.ModelProto`` (never modified in place): the structural and deploy passes of
:data:`PASSES`, the precision passes :func:`to_fp16` and :func:`quantize_int8`; :mod:`.trt_check` is not a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import onnx

from sbdeploy.errors import ConfigError
from sbdeploy.passes._base import PassReport, drop_stale_value_info, op_counts
from sbdeploy.passes.affine_conv import affine_to_conv
from sbdeploy.passes.bn_folding import fold_batchnorm
from sbdeploy.passes.cleanup import eliminate
from sbdeploy.passes.constant_folding import fold_constants
from sbdeploy.passes.fp16 import to_fp16
from sbdeploy.passes.int8 import quantize_int8
from sbdeploy.passes.pad_fusion import fuse_pads
from sbdeploy.passes.sb_fusion import fuse_sb
from sbdeploy.targets import STRUCTURAL_PASSES


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx's strict shape inference with data propagation: every tensor typed and shaped; raises on inconsistencies."""
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


PASSES: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "fold_constants": fold_constants,
    "eliminate": eliminate,
    "fold_bn": fold_batchnorm,
    "shape_inference": infer_shapes,
    "fuse_pads": fuse_pads,
    "fuse_sb": fuse_sb,
    "affine_to_conv": affine_to_conv,
}
"""Every named pass, each usable alone (:func:`run_pass`)."""

DEFAULT_PASSES: tuple[str, ...] = STRUCTURAL_PASSES
"""The structural passes, in the order export runs them."""


def run_pass(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, PassReport]:
    """Apply one named pass; return the new model and its report."""
    if name not in PASSES:
        raise ConfigError(f"unknown pass {name!r}; choose from {', '.join(PASSES)}")
    out = PASSES[name](model)
    if out is not model:  # a pass that removes nodes leaves their outputs' shape entries behind
        drop_stale_value_info(out)
    return out, PassReport(name=name, ops_before=op_counts(model), ops_after=op_counts(out))


def run_passes(
    model: onnx.ModelProto, names: Sequence[str] = DEFAULT_PASSES
) -> tuple[onnx.ModelProto, list[PassReport]]:
    """Apply the named passes in order; return the final model and one report per pass."""
    reports = []
    for name in names:
        model, report = run_pass(model, name)
        reports.append(report)
    return model, reports


__all__ = ["DEFAULT_PASSES", "PASSES", "PassReport", "op_counts", "quantize_int8", "run_pass", "run_passes", "to_fp16"]
