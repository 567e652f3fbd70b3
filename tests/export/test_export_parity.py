"""Exported ONNX equals PyTorch eval (fp32, 1e-4 max abs), by onnxruntime and by the ONNX reference.

What covers what:

* ``test_family_parity_onnxruntime``: every zoo family (pre-activation CIFAR basic and
  bottleneck, ImageNet basic and bottleneck, PyramidNet basic and bottleneck; the small
  members of ``families.py``: one block per stage, so every SB block type with and
  without downsampling) x every sampling set, grouped lowering, dynamic batch, run by
  onnxruntime CPU at batch 1 and 3, at the family's default size and at an odd size
  (33x35 CIFAR, 97x75 ImageNet). Chessboard runs always; the other sampling sets are
  marked slow (36 more exports).
* ``test_family_parity_reference_evaluator``: the same networks run by
  ``onnx.reference.ReferenceEvaluator``. Known limit of onnx 1.23: its ConvTranspose
  fails on ``group`` > 1 (a ValueError in a reshape/broadcast). Where the
  grouped export fails with ValueError one checks the *separate* lowering of
  the same model (one ungrouped pair per subgroup) with the reference evaluator instead,
  the grouped one being covered by onnxruntime above. To save export time the family
  test goes straight to the separate lowering, and ``test_grouped_sb_reference_evaluator``
  shows the limit on one grouped SB per sampling set (expected failure while it lasts).
  Inputs are kept small (the reference evaluator is slow): the odd size for CIFAR nets,
  33x29 for ImageNet nets.
* The registered networks (``cifar_resnet20_sb`` ...) are exported in ``test_export_zoo.py``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from sbdeploy.export import export_module
from sbdeploy.nn.blocks import bn_relu
from sbdeploy.nn.sb import SAMPLINGS, SpatialBottleneck
from tests.export.families import FAMILIES, build, randomize_bn

TOL = 1e-4
SAMPLING_PARAMS = [
    pytest.param(s, marks=() if s == "chessboard" else pytest.mark.slow) for s in SAMPLINGS
]


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def torch_eval(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("sampling", SAMPLING_PARAMS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_parity_onnxruntime(family: str, sampling: str) -> None:
    model = build(family, sampling)
    _, default_size, odd_size = FAMILIES[family]
    rng = np.random.default_rng(0)
    for size in (default_size, odd_size):
        proto, _ = export_module(model, in_chans=3, input_size=size, batch="dynamic")
        convs = [n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose")]
        assert any(a.name == "group" and a.i > 1 for n in convs for a in n.attribute) == (sampling != "single")
        for batch in (1, 3):
            x = rng.standard_normal((batch, 3, *size)).astype(np.float32)
            expected, got = torch_eval(model, x), run_ort(proto, x)
            assert got.shape == expected.shape
            err = float(np.abs(got - expected).max())
            assert err <= TOL, f"{family}/{sampling} {size} batch {batch}: max abs {err:.3g}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_parity_reference_evaluator(family: str) -> None:
    """Ungrouped (``separate``) lowering through the ONNX reference; see the module docstring."""
    from onnx.reference import ReferenceEvaluator

    model = build(family, "chessboard")
    size = FAMILIES[family][2] if family.startswith(("cifar", "pyramid")) else (33, 29)
    rng = np.random.default_rng(1)
    proto, _ = export_module(model, in_chans=3, input_size=size, lowering="separate")
    assert all(a.i == 1 for n in proto.graph.node for a in n.attribute if a.name == "group")
    evaluator = ReferenceEvaluator(proto)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, *size)).astype(np.float32)
        err = float(np.abs(evaluator.run(["logits"], {"input": x})[0] - torch_eval(model, x)).max())
        assert err <= TOL, f"{family} batch {batch}: max abs {err:.3g}"


@pytest.mark.parametrize("sampling", list(SAMPLINGS))
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
    try:
        got = ReferenceEvaluator(proto).run(["logits"], {"input": x})[0]
    except ValueError as error:
        grouped = [n for n in proto.graph.node if n.op_type == "ConvTranspose" and any(a.name == "group" and a.i > 1 for a in n.attribute)]
        assert grouped, f"the reference failed on a graph without grouped ConvTranspose: {error}"
        pytest.xfail(f"onnx reference ConvTranspose with group > 1: {error}")
    assert float(np.abs(got - torch_eval(sb, x)).max()) <= TOL
