"""ONNX Runtime's CUDA and TensorRT providers against PyTorch, where onnxruntime-gpu and a GPU are present.

Tolerances: CUDA provider 1e-3 (TF32 convolutions allowed by cuDNN); TensorRT provider on an
fp16 ONNX (sbdeploy.passes.to_fp16, fp32 I/O), 5e-2 absolute and relative. On TensorRT 10.x
the provider also gets trt_fp16_enable (its weakly typed build needs the flag); on 11.x the
ONNX's types alone set the precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from sbdeploy import environment
from sbdeploy.backends.ort import PROVIDERS, OrtRunner, OrtTensorrtOptions

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(("provider", "tol"), [("cuda", 1e-3), ("tensorrt", 5e-2)])
def test_gpu_providers_match_torch(sb_model: nn.Module, sb_onnx: Path, tmp_path: Path, provider: str, tol: float) -> None:
    if PROVIDERS[provider] not in onnxruntime.get_available_providers():
        pytest.skip(f"{PROVIDERS[provider]} is not in this onnxruntime (install onnxruntime-gpu on a GPU machine)")
    model = sb_onnx
    if provider == "tensorrt":
        from sbdeploy.passes import to_fp16

        model = tmp_path / "sb.fp16.onnx"
        onnx.save(to_fp16(onnx.load(str(sb_onnx))), str(model))
    version = environment.gpu_stack().tensorrt
    options = OrtTensorrtOptions(
        fp16=provider == "tensorrt" and not (version and int(version.split(".")[0]) >= 11),
        engine_cache_dir=tmp_path / "engines", timing_cache_dir=tmp_path / "timing",
    )  # fmt: skip
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with OrtRunner(model, provider=provider, trt_options=options) as runner:
        out = runner.infer({"input": x})["logits"]
    with torch.no_grad():
        ref = sb_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    if provider == "tensorrt":
        assert any((tmp_path / "engines").iterdir()), "the TensorRT provider should have cached its engine"
