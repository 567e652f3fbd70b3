"""describe_file: what an ONNX file or a TensorRT engine is, read from the file (graph, metadata, sidecar)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from sbdeploy.backends.tensorrt.sidecar import sidecar_path
from sbdeploy.checkpoint import CheckpointConfig
from sbdeploy.errors import ArtifactError, EngineMismatchError, OnnxModelError, SbdeployError
from sbdeploy.export.onnx_export import export_onnx
from sbdeploy.files import DeployFile, IOTensor, describe_file
from tests.serve._artifacts import fake_engine, tiny_onnx


def test_an_engine_is_read_through_its_sidecar(tmp_path: Path) -> None:
    meta = export_onnx("cifar_resnet20_sb", tmp_path / "m.onnx", input_size=(16, 16), target="trt").metadata
    engine = describe_file(fake_engine(tmp_path / "model.trt.fp16.engine", [(1, 8, 8)], size=16, onnx_metadata=meta))
    assert (engine.kind, engine.precision, engine.target, engine.profile, engine.batch) == (
        "engine",
        "fp16",
        "trt",
        (1, 8, 8),
        None,
    )
    assert (
        engine.arch == "cifar_resnet20_sb"
        and engine.default_backend() == "trt"
        and engine.batch_sizes([1, 8, 32]) == (1, 8)
    )
    assert (
        describe_file(fake_engine(tmp_path / "b4.engine", [(4, 4, 4)], onnx_metadata=meta)).batch == 4
    )  # one batch: a fixed batch


def test_unreadable_or_foreign_files_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.engine").write_bytes(b"plan")
    with pytest.raises(ArtifactError, match="x.engine.json is missing"):
        describe_file(tmp_path / "x.engine")
    (tmp_path / "x.pt").write_bytes(b"pickle")
    with pytest.raises(ArtifactError, match="unknown artifact type"):
        describe_file(tmp_path / "x.pt")
    with pytest.raises(ArtifactError, match="does not exist"):
        describe_file(tmp_path / "missing.onnx")


def test_a_file_from_before_the_target_table_reads_as_the_canonical_form(tmp_path: Path) -> None:
    from sbdeploy.export.metadata import read_metadata, write_metadata

    path = export_onnx("cifar_resnet20", tmp_path / "old.onnx", input_size=(16, 16)).path
    model = onnx.load(str(path))
    meta = {k: v for k, v in read_metadata(model).items() if k != "precision"}
    write_metadata(model, {**meta, "target": "none", "lowering": "separate"})
    onnx.save(model, str(path))
    old = describe_file(path)
    assert old.target == "separate" and old.precision == "fp32"


def test_a_file_names_how_its_model_differs_from_a_checkpoint() -> None:
    """Architecture, options, input shape and weights, from the file's metadata; nothing to compare without metadata."""
    config = CheckpointConfig(
        arch="cifar_resnet20_sb",
        options={"num_classes": 10, "in_chans": 1, "sampling": "chessboard"},
        input_size=(32, 32),
        mean=(0.5,),
        std=(0.5,),
        class_names=tuple("0123456789"),
    )
    metadata = {
        "arch": "cifar_resnet20_sb",
        "options": dict(config.options),
        "input_shape": ["batch", 1, 32, 32],
        "weights_sha256": "a" * 64,
    }
    same = DeployFile(Path("m.onnx"), "f" * 64, "onnx", "fp32", "grouped", None, metadata=metadata)
    assert same.differences_from(config, "a" * 64) == []

    def differs(**changes: object) -> list[str]:
        return dataclasses.replace(same, metadata={**metadata, **changes}).differences_from(config, "a" * 64)

    assert differs(arch="cifar_resnet32") == [
        "architecture cifar_resnet32 in the file, cifar_resnet20_sb in the checkpoint"
    ]
    assert differs(options={**config.options, "num_classes": 100}) == [
        "num_classes 100 in the file, 10 in the checkpoint"
    ]
    assert differs(input_shape=[8, 1, 97, 75]) == ["input 1x97x75 in the file, 1x32x32 in the checkpoint"]
    assert differs(weights_sha256="b" * 64) == [
        "weights sha256 bbbbbbbbbbbb... in the file, aaaaaaaaaaaa... in the checkpoint"
    ]
    assert (
        dataclasses.replace(same, metadata={}).differences_from(config, "a" * 64) == []
    )  # a foreign file: nothing to compare


def test_an_engine_that_is_not_the_file_its_sidecar_describes_is_refused(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path / "m.engine", [(1, 4, 8)])
    assert describe_file(engine).sha256 == hashlib.sha256(engine.read_bytes()).hexdigest()
    engine.write_bytes(engine.read_bytes()[:10])
    with pytest.raises(SbdeployError, match="does not match its sidecar"):
        describe_file(engine)
    with pytest.raises(ArtifactError, match="is a folder, not an .onnx file"):
        describe_file(tmp_path)


def test_an_onnx_file_says_its_tensors_opsets_and_batch(tmp_path: Path) -> None:
    dynamic = describe_file(tiny_onnx(tmp_path / "tiny.onnx", fp16=True))
    assert dynamic.inputs == (IOTensor("input", np.dtype(np.float32), (None, 3, 8, 8)),)
    assert dynamic.outputs == (IOTensor("logits", np.dtype(np.float32), (None, 10)),)
    assert (dynamic.precision, dynamic.batch, dynamic.max_batch, dynamic.opset) == ("fp16", None, None, "ai.onnx:17")
    assert dynamic.external_data == () and dynamic.built_on is None and dynamic.target is None
    fixed = {b: describe_file(tiny_onnx(tmp_path / f"b{b}.onnx", batch=b)) for b in (1, 4)}
    assert [(f.batch, f.max_batch) for f in fixed.values()] == [(1, 1), (4, 0)]  # batch 4 alone takes no batch 1


def test_an_engine_says_what_batches_its_profiles_cover_from_one(tmp_path: Path) -> None:
    def covered(*profiles: tuple[int, int, int]) -> int | None:
        return describe_file(fake_engine(tmp_path / "m.engine", list(profiles))).max_batch

    assert covered((1, 4, 8)) == 8 and covered((1, 2, 4), (5, 8, 16)) == 16
    assert covered((1, 2, 4), (8, 8, 16)) == 4  # 5..7 in no profile
    assert covered((2, 4, 8), (1, 1, 1)) == 8 and covered((4, 8, 16)) == 0
    engine = describe_file(fake_engine(tmp_path / "m.engine", [(1, 4, 8)], size=16, version="10.13.0.35"))
    assert engine.opt_shapes == {"input": (4, 3, 16, 16)} and engine.built_on.tensorrt_version == "10.13.0.35"
    assert engine.inputs == (IOTensor("input", np.dtype(np.float32), (None, 3, 16, 16)),)


def test_a_malformed_sidecar_is_one_clear_error(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path / "m.engine", [(1, 4, 8)])
    data = json.loads(sidecar_path(engine).read_text())

    def rewritten(**fields: object) -> None:
        sidecar_path(engine).write_text(json.dumps({**data, **fields}))
        describe_file(engine)

    with pytest.raises(ArtifactError, match="malformed"):
        rewritten(inputs=[{"name": "input", "shape": "1x3", "dtype": "float32"}])
    with pytest.raises(ArtifactError, match="lists no profiles"):
        rewritten(profiles=[])
    with pytest.raises(ArtifactError, match=r"profile 0 has no shapes for input\(s\) \['input'\]"):
        rewritten(profiles=[{"other": data["profiles"][0]["input"]}])
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineMismatchError, match="not valid JSON"):
        describe_file(engine)


def test_external_data_must_lie_beside_the_model(tmp_path: Path) -> None:
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(tiny_onnx(tmp_path / "tiny.onnx")))
    convert_model_to_external_data(model, location="tiny.weights", size_threshold=0)
    onnx.save(model, str(tmp_path / "tiny.onnx"))
    assert describe_file(tmp_path / "tiny.onnx").external_data == ("tiny.weights",)
    (tmp_path / "tiny.weights").unlink()
    with pytest.raises(ArtifactError, match="external data 'tiny.weights' is missing"):
        describe_file(tmp_path / "tiny.onnx")


def test_an_unreadable_onnx_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(OnnxModelError, match="not a readable ONNX"):
        describe_file(tmp_path / "bad.onnx")
