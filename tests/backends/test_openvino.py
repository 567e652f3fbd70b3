"""The OpenVINO runner (ov-cpu) for real: parity with PyTorch in the export matrix, precisions, refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sbdeploy.backends import get_runner
from sbdeploy.checkpoint import load_checkpoint
from sbdeploy.errors import BackendUnavailableError, OnnxModelError
from sbdeploy.export.onnx_export import export_module, export_onnx
from sbdeploy.targets import get_target
from sbdeploy.tolerance import DEFAULT_TOLERANCES, Tolerance
from tests.conftest import REPO, cover, kernel_library
from tests.export.families import FAMILIES, build

pytest.importorskip("openvino")

COMBOS = [("even", "dynamic"), ("odd", 1), ("even", 1), ("odd", "dynamic")]  # (size, batch), as the form matrix's


def _close(got: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> None:
    assert got.shape == expected.shape
    assert tolerance.atol is not None and tolerance.rtol is not None
    np.testing.assert_allclose(got, expected, atol=tolerance.atol, rtol=tolerance.rtol)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= (tolerance.min_top1 or 0)


@pytest.mark.parametrize("batch", [1, 4])
def test_fp32_matches_torch_on_the_tiny_checkpoint(tiny_checkpoint: Path, tmp_path: Path, batch: int) -> None:
    path = export_onnx(tiny_checkpoint, tmp_path / f"tiny.b{batch}.onnx", target="ov-cpu", batch=batch).path
    x = np.random.default_rng(batch).standard_normal((batch, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = load_checkpoint(tiny_checkpoint).model(torch.from_numpy(x)).numpy()
    with get_runner("ov-cpu", path, threads=2) as runner:
        assert runner.properties()["INFERENCE_PRECISION_HINT"] == "f32"  # never the CPU's bf16 default
        assert [s.describe() for s in runner.input_specs()] == [f"input: {batch}x1x32x32 float32"]
        _close(runner.infer({"input": x})["logits"], expected, DEFAULT_TOLERANCES["fp32"])
        assert runner.timed_call({"input": x})() is None


def test_bf16_is_the_fp32_file_judged_by_the_bf16_tolerance(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = export_onnx(tiny_checkpoint, tmp_path / "tiny.b8.onnx", target="ov-cpu", batch=8).path
    x = np.random.default_rng(0).standard_normal((8, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = load_checkpoint(tiny_checkpoint).model(torch.from_numpy(x)).numpy()
    with get_runner("ov-cpu", path, precision="bf16") as runner:
        got = runner.infer({"input": x})["logits"]
    _close(got, expected, DEFAULT_TOLERANCES["bf16"])
    assert np.abs(got - expected).max() > DEFAULT_TOLERANCES["fp32"].atol  # it did compute in bf16


OV_FORMS = [form.spec for form in get_target("ov-cpu").candidates()]  # the row's form and the variants --tune times
CASES = [
    (family, "ov-cpu", size, batch)
    for family in ("cifar_preact_basic", "imagenet_bottleneck")
    for size, batch in COMBOS
] + [
    (family, form, *COMBOS[(i + j) % 4])
    for i, family in enumerate(("cifar_preact_basic", "imagenet_bottleneck"))
    for j, form in enumerate(OV_FORMS[1:])
]


@pytest.mark.parametrize(("family", "form", "size", "batch"), cover(CASES, ["-".join(map(str, c)) for c in CASES]))
def test_the_ov_cpu_forms_match_torch(family: str, form: str, size: str, batch: str | int, tmp_path: Path) -> None:
    model = build(family, "chessboard")
    hw = (64, 64) if family.startswith("imagenet") and size == "even" else FAMILIES[family][1 if size == "even" else 2]
    proto, _ = export_module(model, in_chans=3, input_size=hw, batch=batch, target=form)
    path = tmp_path / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    with get_runner("ov-cpu", path) as runner:
        for n in (1, 3) if batch == "dynamic" else (int(batch),):
            x = torch.randn(n, 3, *hw, generator=torch.Generator().manual_seed(n))
            with torch.no_grad():
                expected = model(x).numpy()
            got = runner.infer({"input": x.numpy()})["logits"]
            scale = max(1.0, float(np.abs(expected).max()))
            assert float(np.abs(got - expected).max()) <= 1e-4 * scale


def test_the_ov_cpu_row_never_takes_the_fused_form() -> None:
    target = get_target("ov-cpu")
    assert target.fused is None and target.lowering != "fused"
    assert all(target.by_rule(p, kernels_built=True).lowering != "fused" for p in target.precisions)
    assert [f.variant for f in target.candidates(kernels_built=True)] == [
        None,
        *(v for v in get_target("ort-cpu").variants if v != "fused"),  # ort-cpu's portable forms, each tested above
    ]
    assert {c[1] for c in CASES} == set(OV_FORMS)


def test_a_fused_file_is_refused_in_one_line(tmp_path: Path) -> None:
    kernel_library()
    model = build("cifar_preact_basic", "chessboard")
    proto, _ = export_module(model, in_chans=3, input_size=(32, 32), batch=1, target="ort-cpu:fused")
    path = tmp_path / "fused.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(
        OnnxModelError, match="fused SB operator, which OpenVINO cannot run: export it with --target ov-cpu"
    ):
        with get_runner("ov-cpu", path):
            pass


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all"])
def test_an_unreadable_file_is_an_onnx_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxModelError, match="broken.onnx"):
        with get_runner("ov-cpu", path):
            pass


def test_missing_or_old_openvino_is_one_line(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino

    monkeypatch.setattr(openvino, "__version__", "2023.3.0-13775-ceeafaf64f3-releases/2023/3")
    with pytest.raises(BackendUnavailableError, match=r"OpenVINO >= 2024.0, this is 2023.3.0"):
        with get_runner("ov-cpu", tiny_onnx):
            pass
    monkeypatch.setitem(sys.modules, "openvino", None)  # as on a machine without it: import fails
    with pytest.raises(BackendUnavailableError, match=r"not installed: pip install 'sbdeploy\[openvino\]'"):
        with get_runner("ov-cpu", tiny_onnx):
            pass


def _capped(variable: str, precision: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Open ``path`` on ov-cpu in ``precision`` in a child process whose instruction set ``variable`` caps to AVX2."""
    code = (
        "import sys; from sbdeploy.backends import get_runner; from sbdeploy.errors import SbdeployError\n"
        f"try:\n with get_runner('ov-cpu', {str(path)!r}, precision={precision!r}): print('ran')\n"
        "except SbdeployError as e: print('error:', e); sys.exit(2)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), variable: "AVX2"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("variable", ["ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_precision_the_capped_cpu_lacks_is_refused(tiny_onnx: Path, variable: str, precision: str) -> None:
    done = _capped(variable, precision, tiny_onnx)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("error: ov-cpu: ") and (precision in line or precision.upper() in line), line
