"""Every target's exported form runs in ONNX Runtime and equals PyTorch (1e-4 of the logits' scale).

What covers what (exports cost 1-8 s each, so the design covers each value of each axis
per family rather than the full product of 6 families x 4 forms x 4 sampling sets x 2
sizes x 2 batch modes = 384 exports):

* ``test_export_matches_torch_on_onnxruntime``: per SB block family (the small members of
  ``families.py``: one block per stage, so every SB block type with and without
  downsampling, the shortcut kind and the head), the ``ort-cpu`` form at all four
  (even / odd size) x (dynamic / fixed batch 1) combinations, each with another sampling
  set, and every other distinct form of the table (``grouped``, ``separate``, the strided
  form of ``ort-cuda`` and ``trt``, and the ``ort-cpu`` variants that tuning chooses among:
  ``ort-cpu:taps``, ``:stacked``, ``:masked``, ``:per-sb``, ``:gather``, ``:fused`` at 1 and 2 threads) once, the
  combination and sampling set rotating over the families, and each form once more per mixed placement (SB blocks
  in no stage, in one stage between dense ones: ``families.PLACEMENTS``): 78 + 20 exports (the fast tier: the 20 that bring a value no earlier
  case had, ``tests.conftest.cover``). ``test_the_cases_cover_every_axis`` checks that coverage. Each
  export runs at batch 1 and 3 (dynamic) or its fixed batch, against the PyTorch network
  in eval mode (the SB training code); its op census is checked against what the form
  promises (no ConvTranspose on the CPU, one grouped pair per SB, one strided pair per
  subgroup, no Pad left after Pad folding, the stacked layout at a fixed small batch),
  and the ``separate`` exports also run through ``onnx.reference.ReferenceEvaluator``.
* ``test_gather_form_does_the_exact_macs``: the Gemms of one SB in the ``ort-cpu:gather`` form do the MACs
  ``count_macs`` counts, for every sampling set and stride.
* ``test_grouped_sb_reference_evaluator``: the grouped lowering of one SB through the
  ONNX reference (a known limit of onnx's reference ConvTranspose, see there).
* The same forms in torch, float64 against the dense reference at 1e-10, every family x
  sampling set x form: ``tests/test_targets.py``. Registered networks: ``test_export_zoo.py``.
"""

from __future__ import annotations

import collections
import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from sbdeploy.export.onnx_export import export_module
from sbdeploy.nn.blocks import bn_relu
from sbdeploy.nn.sampling import SAMPLINGS
from sbdeploy.nn.sb import SpatialBottleneck
from sbdeploy.targets import get_target
from tests.conftest import cover, cross, kernel_library
from tests.export.families import FAMILIES, PLACEMENTS, build, distinct_forms, randomize_bn

TOL = 1e-4
SAMPLING_SETS = list(SAMPLINGS)
COMBOS = [("even", "dynamic"), ("odd", 1), ("even", 1), ("odd", "dynamic")]  # (size, batch)
OTHER_FORMS = [f for f in distinct_forms() if f != "ort-cpu"]
IMAGENET_SIZES = {"even": (64, 64), "odd": (49, 37)}  # every stage even; an odd stem output (quick to export)


def _cases() -> list[tuple[str, str, str, str, str | int, str]]:
    """(family, form, sampling, size, batch, placement): see the module docstring."""
    cases = []
    for i, family in enumerate(FAMILIES):
        for k, (size, batch) in enumerate(COMBOS):
            cases.append((family, "ort-cpu", SAMPLING_SETS[(i + k) % 4], size, batch, "all"))
        for j, form in enumerate(OTHER_FORMS):
            size, batch = COMBOS[(i + j) % 4]
            cases.append((family, form, SAMPLING_SETS[(i + j + 2) % 4], size, batch, "all"))
    for j, form in enumerate(distinct_forms()):  # mixed networks: each form once per other placement
        for k, placement in enumerate(p for p in PLACEMENTS if p != "all"):
            family = list(FAMILIES)[(2 * j + k) % len(FAMILIES)]
            cases.append((family, form, SAMPLING_SETS[(j + k) % 4], *COMBOS[(j + k) % 4], placement))
    return cases


CASES = _cases()


def test_the_cases_cover_every_axis() -> None:
    assert len(CASES) == len(FAMILIES) * (4 + len(OTHER_FORMS)) + 2 * len(distinct_forms())
    for family in FAMILIES:
        mine = [c for c in CASES if c[0] == family and c[5] == "all"]
        for axis, values in ((1, distinct_forms()), (2, SAMPLING_SETS), (3, ["even", "odd"]), (4, ["dynamic", 1])):
            assert {c[axis] for c in mine} == set(values), (family, axis)
    for form in distinct_forms():
        assert {c[2] for c in CASES if c[1] == form} == set(SAMPLING_SETS), form
        assert {(c[3], c[4]) for c in CASES if c[1] == form} == set(COMBOS), form
        assert {c[5] for c in CASES if c[1] == form} == set(PLACEMENTS), form


def _size(family: str, size: str) -> tuple[int, int]:
    return IMAGENET_SIZES[size] if family.startswith("imagenet") else FAMILIES[family][1 if size == "even" else 2]


@pytest.mark.parametrize(
    ("family", "form", "sampling", "size", "batch", "placement"),
    cover(CASES, ["-".join(map(str, c)) for c in CASES]),
)
def test_export_matches_torch_on_onnxruntime(
    family: str, form: str, sampling: str, size: str, batch: str | int, placement: str
) -> None:
    model = build(family, sampling, placement=placement)
    hw = _size(family, size)
    proto, reports = export_module(model, in_chans=3, input_size=hw, batch=batch, target=form)
    assert [r.name for r in reports] == list(get_target(form).passes)
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert (dim.dim_param == "batch") if batch == "dynamic" else (dim.dim_value == batch)
    fused = get_target(form).lowering == "fused"
    sessions = []
    for threads in (1, 2) if fused else (0,):  # the kernel splits its work over the session's intra-op threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        if fused:
            options.register_custom_ops_library(str(kernel_library()))
        sessions.append(ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"]))
    generator = torch.Generator().manual_seed(1)
    for n, session in itertools.product((1, 3) if batch == "dynamic" else (int(batch),), sessions):
        x = torch.randn(n, 3, *hw, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape
        error, scale = float(np.abs(got - expected).max()), max(1.0, float(np.abs(expected).max()))
        assert error <= TOL * scale, f"batch {n}: max |diff| {error:.3g} at logits scale {scale:.3g}"
        if form == "separate" and n == 1:  # a second runtime: onnx's reference evaluator (no grouped ConvTranspose)
            from onnx.reference import ReferenceEvaluator

            reference = ReferenceEvaluator(proto).run(["logits"], {"input": x.numpy()})[0]
            assert float(np.abs(reference - expected).max()) <= TOL * scale
    _check_census(proto, family, form, sampling, size, batch, placement)


def _check_census(
    proto: onnx.ModelProto, family: str, form: str, sampling: str, size: str, batch: str | int, placement: str
) -> None:
    """The op census each form promises (where only some stages hold SB blocks: of the SB blocks)."""
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    sbs = sum(isinstance(m, SpatialBottleneck) for m in FAMILIES[family][0](sampling, PLACEMENTS[placement]).modules())
    every = placement == "all"
    groups = [
        next((a.i for a in n.attribute if a.name == "group"), 1)
        for n in proto.graph.node
        if n.op_type == "ConvTranspose"
    ]
    assert ops.get("BatchNormalization", 0) == 0  # folded, or (before a padded conv) written as an affine
    if get_target(form).lowering == "fused":  # one node per SB; its block's residual Add and ReLU fused into it
        assert ops["SBConv"] == sbs and ops.get("ConvTranspose", 0) == 0, ops
        if every and family in ("imagenet_basic", "cifar_preact_basic"):  # the SB ends the block: each Add fused
            assert ops.get("Add", 0) == 0, ops
    elif form == "ort-cpu:gather":  # two zero-row Pads per SB, no convolution inside an SB
        assert ops.get("ConvTranspose", 0) == 0 and ops.get("DepthToSpace", 0) == 0, ops
        assert ops["Gather"] >= 2 * sbs and ops["Gemm"] >= 2 * sbs and ops.get("MatMul", 0) == 0, ops
        assert ops["Pad"] == 2 * sbs if not family.startswith("pyramid") else ops["Pad"] >= 2 * sbs, ops
    elif form.startswith("ort-cpu"):  # the row's own form and its other variants
        variant = get_target(form).variant
        masked = sbs if variant == "masked" and size == "odd" else 0  # one sampling-mask Mul per SB outside phase runs
        assert ops.get("ConvTranspose", 0) == 0, ops
        if family.startswith("pyramid"):  # its shortcut pads channels, and on phases pools by a sum times 0.25
            assert ops.get("Mul", 0) <= 2 + masked, ops
        else:  # zero Pads folded into Convs, BN affines as depthwise Convs
            assert ops.get("Pad", 0) == 0 and ops.get("Mul", 0) <= masked, ops
        # stacked (a Reshape-Transpose-Reshape instead of DepthToSpace) at a fixed batch 1 where tap convs are small:
        # the CIFAR-sized basic families (16 channels at 16x16 phases: 65k MACs), not ImageNet's (64 at 32x32: 262k);
        # the stacked variant takes it for every basic family at a fixed batch, the taps and per-SB variants never
        small = family in ("cifar_preact_basic", "pyramid_basic") or (variant == "stacked" and family.endswith("basic"))
        stacked = size == "even" and batch == 1 and small and variant not in ("taps", "per-sb")
        if size == "even" and every:
            assert (ops.get("DepthToSpace", 0) == 0) == stacked, ops
    elif form == "grouped":
        assert ops.get("ConvTranspose", 0) == sbs and (max(groups, default=1) > 1) == (sampling != "single" and sbs > 0)
    else:  # one ungrouped pair per present subgroup
        assert ops["ConvTranspose"] == sbs * len(SAMPLINGS[sampling]) and set(groups) <= {1}, ops


@pytest.mark.parametrize("sampling", SAMPLING_SETS)
def test_grouped_sb_reference_evaluator(sampling: str) -> None:
    """The grouped lowering of one SB (stride 2, odd size) through the ONNX reference.

    onnx 1.23's reference ConvTranspose fails on group > 1 with a ValueError: then this
    test is an expected failure (the grouped graph is checked by onnxruntime above, and the
    same networks by the reference in their ungrouped lowering). If a later onnx fixes it,
    the test compares the outputs.
    """
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(3)
    sb = SpatialBottleneck(3, 4, 5, stride=2, sampling=sampling, mid=bn_relu(4))
    randomize_bn(sb)
    sb.eval()
    proto, _ = export_module(sb, in_chans=3, input_size=(9, 7))
    x = np.random.default_rng(2).standard_normal((3, 3, 9, 7)).astype(np.float32)
    with torch.no_grad():
        expected = sb(torch.from_numpy(x)).numpy()
    try:
        got = ReferenceEvaluator(proto).run(["logits"], {"input": x})[0]
    except ValueError as error:
        grouped = [
            n
            for n in proto.graph.node
            if n.op_type == "ConvTranspose" and any(a.name == "group" and a.i > 1 for a in n.attribute)
        ]
        assert grouped, f"the reference failed on a graph without grouped ConvTranspose: {error}"
        pytest.xfail(f"onnx reference ConvTranspose with group > 1: {error}")
    assert float(np.abs(got - expected).max()) <= TOL


def test_metadata_names_the_target_and_the_canonical_default(tmp_path) -> None:  # noqa: ANN001
    from sbdeploy.export.metadata import read_metadata
    from sbdeploy.export.onnx_export import export_onnx

    canonical = export_onnx("cifar_resnet20_sb", tmp_path / "c.onnx", input_size=(16, 16))
    deployed = export_onnx(
        "cifar_resnet20_sb", tmp_path / "d.onnx", input_size=(16, 16), target="ort-cpu", batch=2, precision="fp16"
    )
    assert canonical.metadata["target"] == "grouped" and canonical.metadata["lowering"] == "grouped"
    assert (
        canonical.metadata["passes"] == list(get_target("grouped").passes)
        and canonical.ops.get("ConvTranspose", 0) == 9
    )
    meta = read_metadata(deployed.path)
    assert meta["target"] == "ort-cpu" and meta["lowering"] == "subpixel+phase-runs" and meta["precision"] == "fp16"
    assert meta["passes"] == list(get_target("ort-cpu").passes) and meta["input_shape"] == [2, 3, 16, 16]
    proto = onnx.load(str(deployed.path))
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert any(init.data_type == fp16 for init in proto.graph.initializer)
    assert [v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.output)] == [fp32, fp32]


@pytest.mark.parametrize(("sampling", "stride"), cross(SAMPLING_SETS, [1, 2]))
def test_gather_form_does_the_exact_macs(sampling: str, stride: int) -> None:
    """The Gemms' MACs (rows x inner size x outputs, from the exported graph's shapes) equal ``count_macs`` on an
    even grid (8x6); a dense conv or deconv anywhere would do up to twice as many."""
    from sbdeploy.flops import count_macs
    from sbdeploy.passes import infer_shapes

    sb = SpatialBottleneck(3, 5, 4, stride=stride, sampling=sampling).eval()
    size = (8 * stride, 6 * stride)
    proto, _ = export_module(sb, in_chans=3, input_size=size, batch=1, target="ort-cpu:gather")
    proto = infer_shapes(proto)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*proto.graph.value_info, *proto.graph.input, *proto.graph.output)
    }
    shapes |= {i.name: list(i.dims) for i in proto.graph.initializer}
    gemms = [n for n in proto.graph.node if n.op_type == "Gemm"]
    assert {n.op_type for n in proto.graph.node}.isdisjoint({"Conv", "ConvTranspose", "MatMul"})
    macs = sum(shapes[n.input[0]][0] * shapes[n.input[0]][1] * shapes[n.output[0]][1] for n in gemms)
    assert macs == count_macs(sb, size, in_chans=3)
