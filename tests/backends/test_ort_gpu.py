"""ONNX Runtime's CUDA and TensorRT providers against PyTorch, where onnxruntime-gpu and a GPU are present (``-m gpu``).

The files are the ones bench and validate make for those backends (:mod:`sbdeploy.artifacts`:
the ``ort-cuda`` target's form for ort-cuda, the ``trt`` target's for ort-trt), fp32 and fp16,
run with the runner's own options and judged by validate itself: the ort-cuda fp32 file by the
strict fp32 tolerance (the CUDA provider runs with ``use_tf32=0``; with ONNX Runtime's default
TF32 it would not meet it on Ampere and newer), the ort-trt fp32 file by the TF32 tolerance
(the TensorRT provider cannot clear TF32), the fp16 files by the fp16 tolerance (on TensorRT
10.x the provider gets ``trt_fp16_enable`` for them; on 11.x the ONNX's types decide). Each
test skips with the reason when its provider is absent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnxruntime
import pytest
from torch import nn

from sbdeploy.backends.ort import PROVIDERS
from tests.backends.conftest import save_sb_checkpoint

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("backend", ["ort-cuda", "ort-trt"])
def test_gpu_providers_pass_validate(sb_model: nn.Module, tmp_path: Path, backend: str) -> None:
    from sbdeploy.artifacts import make_artifacts, plan_artifacts
    from sbdeploy.backends import get_runner
    from sbdeploy.sources import resolve_source
    from sbdeploy.tolerance import DEFAULT_TOLERANCES
    from sbdeploy.validate.run import artifact_of, validate

    provider = PROVIDERS["cuda" if backend == "ort-cuda" else "tensorrt"]
    if provider not in onnxruntime.get_available_providers():
        pytest.skip(f"{provider} is not in this onnxruntime (install onnxruntime-gpu on a GPU machine)")
    checkpoint = save_sb_checkpoint(sb_model, tmp_path / "ckpt")
    plans, _ = plan_artifacts([("sb", "model")], [backend], [1, 8], precisions=("fp32", "fp16"))
    made = make_artifacts(plans, {"sb": resolve_source(checkpoint)}, tmp_path / "files")
    artifacts = [artifact_of(made[p.filename], backend) for p in plans if backend in p.backends]
    fp32 = ("tf32", True) if backend == "ort-trt" else ("fp32", False)
    assert {(a.precision, a.tf32) for a in artifacts} == {fp32, ("fp16", None)}
    if (
        backend == "ort-trt"
    ):  # one shape each: the TensorRT provider rebuilds its engine for every larger batch it meets
        artifacts = [dataclasses.replace(a, batch_sizes=(8,), max_batch=8) for a in artifacts]
    report = validate(checkpoint, artifacts, runner_factory=lambda a: get_runner(a.backend, a.path))
    assert report, [(c.file, c.case, c.reason) for c in report.failures]
    assert {c.tolerance for c in report.checks} == {DEFAULT_TOLERANCES[fp32[0]], DEFAULT_TOLERANCES["fp16"]}
