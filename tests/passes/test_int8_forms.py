"""The int8 pass on every target's form of every SB block family: it quantizes, runs on ONNX Runtime, passes the int8 gate.

Forms: the canonical ``grouped`` export, ``ort-cpu`` with a dynamic batch (phase layout)
and at fixed batch 1 (stacked layout, for the families whose runs of regular blocks take
it: at batch 1 the others export the phase form again), the portable ``ort-cpu:gather``
form at batch 1 (Gather + Gemm), and the ``strided`` form of ``ort-cuda``/``trt``, each quantized by the recipe its target names (:attr:`Target.int8`:
:data:`~sbdeploy.int8_recipe.ORT_CPU_INT8` for ``ort-cpu``, :data:`~sbdeploy.int8_recipe.TRT_INT8` for the others, whose QDQ model runs
on ONNX Runtime too; both recipes on one graph: ``tests/passes/test_int8.py``). Before the shared-bias fix the pyramid families' ``ort-cpu``
forms crashed onnxruntime's quantizer ("Graph is not a DAG").

Networks: each family's small member trained briefly on digits
(:mod:`tests.passes.trained_families`: int8 accuracy is meaningless on random weights),
calibrated on 128 training images, judged on 120 test images against PyTorch by
validate's int8 tolerance (per-sample cosine >= 0.98, top-1 agreement >= 90%).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from sbdeploy.backends.ort import OrtRunner
from sbdeploy.export.onnx_export import export_module
from sbdeploy.passes.int8 import Int8Recipe, quantize_int8
from sbdeploy.targets import get_target
from sbdeploy.validate.compare import DEFAULT_TOLERANCES, output_stats, verdict
from sbdeploy.validate.run import run_batched
from tests.export.families import FAMILIES
from tests.passes.trained_families import trained_family

FORMS: dict[str, tuple[str, str | int]] = {
    "grouped": ("grouped", "dynamic"),
    "ort-cpu": ("ort-cpu", "dynamic"),
    "ort-cpu-b1": ("ort-cpu", 1),
    "strided": ("trt", "dynamic"),
    "ort-cpu-gather": ("ort-cpu:gather", 1),
}
"""Form -> (export target, batch)."""

STACKED_FAMILIES = ("cifar_preact_basic", "imagenet_basic")  # runs of regular blocks: batch 1 takes the stacked layout
CASES = [(family, form) for family in FAMILIES for form in FORMS if form != "ort-cpu-b1" or family in STACKED_FAMILIES]


def check_quantized(fp32: onnx.ModelProto, int8: onnx.ModelProto, recipe: Int8Recipe) -> None:
    """Every compute op the recipe names is quantized: QDQ inputs (data and weight), or its QLinear op.

    Only the compute ops are counted: a Relu after a quantized Conv may be folded away by the
    quantizer (an asymmetric uint8 range that starts at 0 is the ReLU).
    """
    compute = [op for op in recipe.op_types if op in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    before = {op: sum(n.op_type == op for n in fp32.graph.node) for op in compute}
    producers = {o: n.op_type for n in int8.graph.node for o in n.output}
    for op, count in before.items():
        if recipe.format == "qdq":
            nodes = [n for n in int8.graph.node if n.op_type == op]
            assert len(nodes) == count, f"{op}: {len(nodes)} nodes after quantization, {count} before"
            unquantized = [
                n.name for n in nodes if {producers.get(n.input[0]), producers.get(n.input[1])} != {"DequantizeLinear"}
            ]
            assert not unquantized, f"{op} nodes without Q/DQ inputs: {unquantized[:5]}"
        elif op == "Conv":
            assert sum(n.op_type == "QLinearConv" for n in int8.graph.node) == count


@pytest.mark.slow
@pytest.mark.parametrize(("family", "form"), CASES)
def test_int8_of_every_form_passes_the_int8_gate(family: str, form: str, tmp_path: Path) -> None:
    net = trained_family(family)
    assert net.accuracy > 0.8, f"{family}: the fixture network is not trained ({net.accuracy:.1%})"
    target, batch = FORMS[form]
    fp32, _ = export_module(net.model, in_chans=3, input_size=net.size, batch=batch, target=target)
    with torch.no_grad():
        reference = net.model(torch.from_numpy(net.test)).numpy()
    gate = DEFAULT_TOLERANCES["int8"]
    recipe = get_target(target).int8
    int8 = quantize_int8(fp32, net.calibration, recipe=recipe)
    check_quantized(fp32, int8, recipe)
    path = tmp_path / f"{recipe.name}.onnx"
    onnx.save(int8, path)
    with OrtRunner(path, threads=1) as runner:
        out = run_batched(runner, net.test, 64, fixed_batch=batch if isinstance(batch, int) else None)
    stats = output_stats(reference, out, gate)
    passed, reason = verdict(stats, gate)
    assert passed, f"{family} {form} {recipe.name} ({recipe.describe()}): {reason}"
    assert np.isfinite(out).all()
