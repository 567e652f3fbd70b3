"""ONNX graph passes, each usable alone, and :func:`run_passes` that applies a list with reports.

Passes take and return an ``onnx.ModelProto`` (never modified in place):

* ``fold_constants`` (:mod:`.constant_folding`), ``eliminate`` (:mod:`.cleanup`: dead
  nodes, identities, redundant and chained Slices), ``fold_bn`` (:mod:`.bn_folding`),
  ``shape_inference`` (:mod:`.shape_inference`) — the structural passes, by name;
* ``fuse_pads`` (:mod:`.pad_fusion`: zero Pad -> Conv folded into the Conv's pads) — run
  after the structural passes by the deploy targets that list it (:mod:`sbdeploy.targets`),
  usable alone by name;
* ``affine_to_conv`` (:mod:`.affine_conv`: the Mul + Add left of an unfoldable BN as a
  depthwise 1x1 Conv, which ONNX Runtime's blocked-layout kernels fuse) — likewise;
* :func:`to_fp16` and :func:`quantize_int8` — precision passes with their own options (int8 by a named
  :class:`Int8Recipe`: :data:`TRT_INT8`, :data:`ORT_CPU_INT8`);
* :mod:`.trt_check` — not a pass: TensorRT-parser compatibility of a graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import onnx

from sbdeploy.errors import ConfigError
from sbdeploy.passes._base import PassReport, op_counts
from sbdeploy.passes.affine_conv import affine_to_conv
from sbdeploy.passes.bn_folding import fold_batchnorm
from sbdeploy.passes.cleanup import eliminate
from sbdeploy.passes.constant_folding import fold_constants
from sbdeploy.passes.fp16 import DEFAULT_FP32_OPS, to_fp16
from sbdeploy.passes.int8 import INT8_RECIPES, ORT_CPU_INT8, TRT_INT8, Int8Recipe, quantize_int8
from sbdeploy.passes.pad_fusion import fold_pads
from sbdeploy.passes.shape_inference import infer_shapes
from sbdeploy.targets import STRUCTURAL_PASSES

PASSES: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "fold_constants": fold_constants,
    "eliminate": eliminate,
    "fold_bn": fold_batchnorm,
    "shape_inference": infer_shapes,
    "fuse_pads": fold_pads,
    "affine_to_conv": affine_to_conv,
}
"""Every named pass, each usable alone (:func:`run_pass`)."""

DEFAULT_PASSES: tuple[str, ...] = STRUCTURAL_PASSES
"""The structural passes, in the order export runs them; which passes each deploy target runs
is its row of the target table (:attr:`sbdeploy.targets.Target.passes`)."""


def run_pass(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, PassReport]:
    """Apply one named pass; return the new model and its report."""
    if name not in PASSES:
        raise ConfigError(f"unknown pass {name!r}; choose from {', '.join(PASSES)}")
    before = op_counts(model)
    out = PASSES[name](model)
    return out, PassReport(name=name, ops_before=before, ops_after=op_counts(out))


def run_passes(
    model: onnx.ModelProto, names: Sequence[str] = DEFAULT_PASSES
) -> tuple[onnx.ModelProto, list[PassReport]]:
    """Apply the named passes in order; return the final model and one report per pass."""
    reports = []
    for name in names:
        model, report = run_pass(model, name)
        reports.append(report)
    return model, reports


__all__ = [
    "DEFAULT_FP32_OPS",
    "DEFAULT_PASSES",
    "INT8_RECIPES",
    "Int8Recipe",
    "ORT_CPU_INT8",
    "PASSES",
    "PassReport",
    "TRT_INT8",
    "affine_to_conv",
    "eliminate",
    "fold_batchnorm",
    "fold_pads",
    "fold_constants",
    "infer_shapes",
    "op_counts",
    "quantize_int8",
    "run_pass",
    "run_passes",
    "to_fp16",
]
