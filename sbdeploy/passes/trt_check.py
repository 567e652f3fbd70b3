"""TensorRT compatibility check of an ONNX graph, against the ONNX parser's support list (docs/export.md).

Each node's op type, domain and the inputs and attributes the list restricts are checked; known traps are warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx

SUPPORT_LIST_SOURCE = "onnx/onnx-tensorrt docs/operators.md @ 96e7811 (ONNX-TensorRT 10.1 GA)"
OPSET_RANGE = (9, 20)

# Op types marked "Y" in the support matrix (those marked "N" or absent are errors).
SUPPORTED_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike
    Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
    GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
    IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
    MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not
    OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
    ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
    Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
    Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

_DQ_INPUT_TYPES = frozenset(
    {onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.INT4, onnx.TensorProto.UINT8}
)

# Inputs that must be initializers (input index -> what), per op type.
_CONSTANT_INPUTS: dict[str, dict[int, str]] = {
    "Conv": {1: "weights W"},
    "ConvTranspose": {1: "weights W"},
    "Pad": {1: "pads", 3: "axes"},
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"},
    **{op: {1: "axes"} for op in ("Squeeze", "Unsqueeze", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")},
    "CumSum": {1: "axis"},
    "TopK": {1: "K"},
}


@dataclass(frozen=True)
class TrtIssue:
    """One finding: ``error`` (the parser will reject the node) or ``warning`` (a known trap)."""

    severity: str
    node: str
    op_type: str
    message: str


@dataclass(frozen=True)
class TrtCheckReport:
    """Every finding of :func:`check_trt_compat`; ``bool(report)`` is True when nothing is an error."""

    source: str
    opset: int
    nodes: int
    issues: tuple[TrtIssue, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> list[TrtIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[TrtIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    def __bool__(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        return {
            "support_list": self.source,
            "opset": self.opset,
            "nodes": self.nodes,
            "ok": bool(self),
            "issues": [vars(i) for i in self.issues],
        }


def _is_fp16_weight(name: str, initializers: dict[str, onnx.TensorProto], producers: dict[str, onnx.NodeProto]) -> bool:
    if name in initializers:
        return initializers[name].data_type == onnx.TensorProto.FLOAT16
    cast = producers.get(name)
    if cast is None or cast.op_type != "Cast":
        return False
    return any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in cast.attribute)


def check_trt_compat(model: onnx.ModelProto | str | Path) -> TrtCheckReport:
    """Check every node of ``model`` against TensorRT's ONNX parser support list."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    constants = set(initializers) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    # computed from constants only (a weight stored once, repeated by Tile): the parser takes Conv kernels as tensors
    # (onnx-tensorrt 10.1's Conv/ConvTranspose importers), and `sbdeploy build-engine` folds them before parsing
    for n in graph.node:
        if n.input and all(not i or i in constants for i in n.input):
            constants.update(n.output)
    producers = {o: n for n in graph.node for o in n.output}
    value_types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    issues: list[TrtIssue] = []
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        message = f"opset {opset} is outside {OPSET_RANGE[0]}-{OPSET_RANGE[1]}, the range of the support list"
        issues.append(TrtIssue("warning", "", "", message))

    def issue(node: onnx.NodeProto, severity: str, message: str) -> None:
        issues.append(TrtIssue(severity, node.name or f"<{node.op_type}>", node.op_type, message))

    for node in graph.node:
        op = node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.domain not in ("", "ai.onnx"):
            issue(node, "error", f"custom domain {node.domain!r}: TensorRT's ONNX parser has no importer for it")
            continue
        if op not in SUPPORTED_OPS:
            issue(node, "error", f"{op} is not supported by TensorRT's ONNX parser")
            continue
        conv = op in ("Conv", "ConvTranspose")
        for index, what in _CONSTANT_INPUTS.get(op, {}).items():
            if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                producer = producers.get(node.input[index])
                if conv and producer is not None and producer.op_type == "DequantizeLinear":
                    continue  # Q/DQ weights: DequantizeLinear of an initializer
                severity = "error" if conv else "warning"
                issue(node, severity, f"{what} is computed at run time; the parser needs an initializer")
        if op == "ConvTranspose" and "output_shape" in attrs:
            issue(
                node,
                "warning",
                "output_shape attribute: TensorRT and recent onnxruntime disagree on it (onnx-tensorrt #1042); "
                "use explicit pads",
            )
        if conv and int(attrs.get("group", 1)) > 1 and len(node.input) > 1:
            fp16 = value_types.get(node.input[0]) == onnx.TensorProto.FLOAT16
            if fp16 or _is_fp16_weight(node.input[1], initializers, producers):
                issue(
                    node,
                    "warning",
                    f"grouped (group={attrs['group']}) float16 {op}: TensorRT 11.2 strongly typed may find no kernel "
                    "(TensorRT #4838; 10.16 builds it)",
                )
        if op in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in initializers:
            if onnx.numpy_helper.to_array(initializers[node.input[2]]).any():
                issue(node, "error", "non-zero zero point: TensorRT's Q/DQ must be symmetric")
        if op == "DequantizeLinear" and node.input[0] in initializers:
            if initializers[node.input[0]].data_type not in _DQ_INPUT_TYPES:
                kind = onnx.TensorProto.DataType.Name(initializers[node.input[0]].data_type)
                issue(node, "error", f"DequantizeLinear of {kind}: TensorRT takes INT8, FP8 or INT4")
        if op == "Pad" and attrs.get("mode", b"constant") not in (b"constant", b"reflect", b"edge"):
            issue(node, "warning", f"Pad mode {attrs['mode']!r} may be unsupported")
    return TrtCheckReport(source=SUPPORT_LIST_SOURCE, opset=opset, nodes=len(graph.node), issues=tuple(issues))
