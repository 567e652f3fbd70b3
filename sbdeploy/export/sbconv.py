"""How the exporter writes the fused SB (``torch.ops.sbdeploy.sbconv``): one ``SBConv`` node in sbdeploy's op domain.

The node's contract is the kernel library's (``csrc/sbconv.cc``): inputs X, W1, b1, W2 (ConvTranspose
layout), b2 and an optional residual R; attributes ``stride``, ``sampling`` (a name) and ``mid_relu`` as the
exporter writes them; the ``fuse_sb`` pass then adds R, ``relu`` and the pre-activation ``in_scale``,
``in_shift``, ``in_relu`` (the kernel also takes ``mid_scale``/``mid_shift``, which export never needs: a mid BN
is folded into W1 and b1). ``precision`` (fp32, bf16, int8) and int8's ``x_scale``, ``x_zero_point``, ``m_scale``,
``m_zero_point`` choose the kernel's arithmetic; inputs, outputs and initializers stay fp32. :data:`TRANSLATIONS` is the exporter's ``custom_translation_table``.
"""

from __future__ import annotations

from typing import Any

import onnxscript
import torch
from onnx.defs import OpSchema

import sbdeploy.nn.fused  # noqa: F401  (registers torch.ops.sbdeploy.sbconv)
from sbdeploy.kernels import DOMAIN, OP_TYPE, OPSET_VERSION

_P = OpSchema.FormalParameter
_OPTIONAL = OpSchema.FormalParameterOption.Optional

SCHEMA = OpSchema(
    OP_TYPE,
    DOMAIN,
    OPSET_VERSION,
    inputs=[
        _P("X", "T"),
        _P("W1", "T"),
        _P("B1", "T", param_option=_OPTIONAL),
        _P("W2", "T"),
        _P("B2", "T", param_option=_OPTIONAL),
        _P("R", "T", param_option=_OPTIONAL),
    ],
    outputs=[_P("Y", "T")],
    type_constraints=[("T", ["tensor(float)"], "float32 only")],
    attributes=[
        OpSchema.Attribute("stride", OpSchema.AttrType.INT, "1 or 2"),
        OpSchema.Attribute("sampling", OpSchema.AttrType.STRING, "the sampling set's name"),
        OpSchema.Attribute("mid_relu", OpSchema.AttrType.INT, "ReLU between conv and deconv"),
        OpSchema.Attribute("relu", OpSchema.AttrType.INT, "ReLU on the output (after R)"),
        OpSchema.Attribute("precision", OpSchema.AttrType.STRING, "fp32 (default), bf16 or int8", required=False),
        OpSchema.Attribute("x_scale", OpSchema.AttrType.FLOAT, "int8: conv input's u8 scale", required=False),
        OpSchema.Attribute("x_zero_point", OpSchema.AttrType.INT, "int8: its zero point, 0..255", required=False),
        OpSchema.Attribute("m_scale", OpSchema.AttrType.FLOAT, "int8: the sampled mid map's u8 scale", required=False),
        OpSchema.Attribute("m_zero_point", OpSchema.AttrType.INT, "int8: its zero point, 0..255", required=False),
    ],
)
"""The node as onnxscript writes it (the library checks every node again when a session is made)."""

_SBCONV = onnxscript.values.Op(onnxscript.values.Opset(DOMAIN, OPSET_VERSION), OP_TYPE, SCHEMA)


def _translate(x: Any, w1: Any, b1: Any, w2: Any, b2: Any, stride: int, sampling: str, mid_relu: bool) -> Any:
    return _SBCONV(x, w1, b1, w2, b2, stride=stride, sampling=sampling, mid_relu=int(mid_relu))


TRANSLATIONS = {torch.ops.sbdeploy.sbconv.default: _translate}
