"""Bad export options and bad sources: a clear sbdeploy error, and no file written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sbdeploy.errors import CheckpointError, ConfigError, OnnxModelError
from sbdeploy.export.metadata import load_onnx, read_metadata
from sbdeploy.export.onnx_export import export_module, export_onnx
from tests.export.families import build


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"opset": 12}, "opset"),
        ({"batch": 0}, "batch"),
        ({"batch": "auto"}, "batch"),
        ({"input_size": (0, 5)}, "input size"),
        ({"target": "magic"}, "unknown target 'magic'"),
        ({"precision": "bf16"}, "target grouped offers fp32, fp16, int8, not 'bf16'"),
        ({"precision": "int8"}, "an int8 artifact needs calibration data"),  # refused before the export runs
    ],
)
def test_bad_options(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        export_onnx("cifar_resnet20_sb", tmp_path / "x.onnx", **kwargs)
    assert not list(tmp_path.iterdir())


def test_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a checkpoint folder nor a zoo name"):
        export_onnx("cifar_resnet21_sb", tmp_path / "x.onnx")
    with pytest.raises(CheckpointError):
        export_onnx(str(tmp_path / "missing" / "ckpt"), tmp_path / "x.onnx")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format": "sbdeploy-checkpoint", "arch": "cifar_resnet20_sb"}))
    (folder / "model.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError):
        export_onnx(folder, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_corrupt_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file at all")
    with pytest.raises(OnnxModelError):
        load_onnx(bad)
    with pytest.raises(OnnxModelError):
        read_metadata(tmp_path / "absent.onnx")


def test_opset_13_export_runs() -> None:
    """The torch exporter writes opset 18; sbdeploy converts down (``sbdeploy.export.opset``)."""
    import onnxruntime as ort
    import torch

    model = build("imagenet_basic", "chessboard")
    proto, _ = export_module(model, in_chans=3, input_size=(33, 29), opset=13)
    assert [o.version for o in proto.opset_import if o.domain == ""] == [13]
    x = np.random.default_rng(0).standard_normal((3, 3, 33, 29)).astype(np.float32)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        assert float(np.abs(got - model(torch.from_numpy(x)).numpy()).max()) <= 1e-4
