"""get_runner: every name builds its runner; unknown names and options are refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from sbdeploy.backends import RUNNERS, get_runner
from sbdeploy.backends.ort import OrtRunner
from sbdeploy.backends.torch_runner import TorchRunner
from sbdeploy.errors import ConfigError


def test_names_map_to_runners(sb_model: nn.Module, sb_onnx: Path) -> None:
    assert set(RUNNERS) == {"torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "trt", "ov-cpu"}
    assert isinstance(get_runner("torch", sb_model), TorchRunner)
    runner = get_runner("ort-cpu", sb_onnx, threads=1)
    assert isinstance(runner, OrtRunner) and runner.provider == "cpu"
    assert get_runner("ort-trt", sb_onnx).name == "ort-trt"
    assert get_runner("ov-cpu", sb_onnx, threads=1).name == "ov-cpu"  # constructed without OpenVINO: opened lazily
    with runner:
        assert runner.infer({"input": np.zeros((2, 3, 32, 32), np.float32)})["logits"].shape == (2, 10)


def test_unknown_name_and_option(sb_onnx: Path) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'onnx'.*ort-cpu"):
        get_runner("onnx", sb_onnx)
    with pytest.raises(ConfigError, match="does not take these options"):
        get_runner("ort-cpu", sb_onnx, thread=2)
    with pytest.raises(ConfigError, match="ort-cuda sets provider itself"):
        get_runner("ort-cuda", sb_onnx, provider="cpu")


def test_a_type_error_inside_a_runner_is_a_bug_not_a_refusal(sb_onnx: Path) -> None:
    """threads="2" binds to the signature; OrtRunner's own `threads < 1` then fails: that TypeError propagates."""
    with pytest.raises(TypeError, match="'<' not supported") as caught:
        get_runner("ort-cpu", sb_onnx, threads="2")
    assert not isinstance(caught.value, ConfigError)


def test_backends_import_without_optional_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, sbdeploy.backends, sbdeploy.backends.tensorrt.runner, sbdeploy.backends.tensorrt.builder; "
        "print(sorted(m for m in ('onnxruntime', 'tensorrt', 'pycuda', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
