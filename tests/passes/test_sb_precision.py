"""The precision pass of fused SB nodes: bf16 and int8 attributes, int8's MinMax calibration on the fused graph, and
the files export writes with it (their precision read back from the graph, the int8 gate on the shipped model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from sbdeploy.errors import ConfigError, InputError
from sbdeploy.export.metadata import onnx_precision
from sbdeploy.nn.sampling import SAMPLINGS
from sbdeploy.passes.sb_precision import sbconv_precision
from tests.conftest import REPO, kernel_library, run_cli
from tests.kernels.test_sbconv import make_case, sbconv_model

SHIPPED_SB = REPO / "models" / "digits_resnet20_sb"


def attributes(model: onnx.ModelProto) -> list[dict[str, object]]:
    return [
        {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in model.graph.node if n.op_type == "SBConv"
    ]


def one_node(**kwargs: object) -> tuple[dict, onnx.ModelProto]:
    case = make_case(cin=4, cmid=6, cout=5, mid=True, pre=True, seed=3)
    return case, onnx.load_from_string(sbconv_model(case, **kwargs))


def test_bf16_marks_every_fused_node_and_nothing_else() -> None:
    case, model = one_node(stride=1, sampling="chessboard")
    out = sbconv_precision(model, "bf16")
    assert [a["precision"] for a in attributes(out)] == [b"bf16"] and onnx_precision(out) == "bf16"
    assert onnx_precision(model) == "fp32" and "precision" not in attributes(model)[0]  # the input is not modified
    with pytest.raises(ConfigError, match="computes in fp32, bf16 or int8, not 'fp16'"):
        sbconv_precision(model, "fp16")
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    plain.graph.node[0].op_type = "Conv"
    with pytest.raises(ConfigError, match="has no SBConv node"):
        sbconv_precision(plain, "bf16")


@pytest.mark.parametrize(("stride", "size", "sampling"), [(1, 8, "chessboard"), (2, 9, "three"), (1, 7, "single")])
def test_int8_scales_are_the_minmax_of_both_conv_inputs(stride: int, size: int, sampling: str) -> None:
    kernel_library()
    case, model = one_node(stride=stride, sampling=sampling)
    images = np.random.default_rng(size).standard_normal((6, 4, size, size)).astype(np.float32)
    out = sbconv_precision(model, "int8", images, batch_size=4)  # 4 of 6 images: whole batches only
    a = attributes(out)[0]
    seen = images[:4]
    x = np.maximum(seen * case["in_scale"].reshape(1, -1, 1, 1) + case["in_shift"].reshape(1, -1, 1, 1), 0)
    mid = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(case["w1"]), torch.from_numpy(case["b1"]), stride=stride, padding=1
    ).numpy()
    mid = np.maximum(mid * case["mid_scale"].reshape(1, -1, 1, 1) + case["mid_shift"].reshape(1, -1, 1, 1), 0)
    rows, cols = np.indices(mid.shape[2:]) % 2
    kept = mid[:, :, np.isin(rows * 2 + cols, [p * 2 + q for p, q in SAMPLINGS[sampling]])]
    for prefix, values in (("x", x), ("m", kept)):
        low, high = min(values.min(), 0), max(values.max(), 0)
        scale = a[f"{prefix}_scale"]
        assert scale == pytest.approx((high - low) / 255, rel=1e-6)
        assert a[f"{prefix}_zero_point"] == round(-low / scale)
    assert a["precision"] == b"int8" and onnx_precision(out) == "int8"
    with pytest.raises(InputError, match="needs calibration images"):
        sbconv_precision(model, "int8")


def test_bf16_and_int8_files_of_the_shipped_sb_model_pass_their_gates(tmp_path: Path) -> None:
    kernel_library()
    for precision in ("bf16", "int8"):
        onnx_path = tmp_path / f"model.ort-cpu.b1.{precision}.onnx"
        done = run_cli(
            "export", str(SHIPPED_SB), "--target", "ort-cpu", "--batch", "1", f"--{precision}", "-o", str(onnx_path)
        )
        assert done.returncode == 0, done.stderr
        meta = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
        assert (
            json.loads(meta["sbdeploy.lowering"]).startswith("fused")
            and json.loads(meta["sbdeploy.precision"]) == precision
        )
        done = run_cli("validate", str(SHIPPED_SB), "--onnx", str(onnx_path), "--backends", "ort-cpu", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert all(c["passed"] for c in report["checks"]) and {c["precision"] for c in report["checks"]} == {precision}
        torch_top1 = next(a["top1"] for a in report["accuracy"] if a["backend"] == "torch")
        file_top1 = next(a["top1"] for a in report["accuracy"] if a["backend"] != "torch")
        assert file_top1 >= torch_top1 - 0.01  # within 1 point of fp32 on the whole test split
    refused = run_cli(
        "export", "models/digits_resnet20", "--target", "ort-cpu", "--bf16", "-o", str(tmp_path / "b.onnx")
    )
    assert refused.returncode == 2 and "has no SB block" in refused.stderr
