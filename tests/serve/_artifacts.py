"""Small artifacts for the serving tests: ONNX files (a real zoo network, or a tiny Gemm) and engine sidecars."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def export_resnet20(path: Path) -> Path:
    """cifar_resnet20_sb (random weights) exported by ``sbdeploy export``'s library function, dynamic batch."""
    from sbdeploy.export.onnx_export import export_onnx

    return export_onnx("cifar_resnet20_sb", path).path


def tiny_onnx(path: Path, *, batch: int | str = "batch", size: int = 8, classes: int = 10, fp16: bool = False) -> Path:
    """input (batch x 3 x size x size, float32) -> Flatten -> Gemm -> logits (batch x classes); ``fp16``: through sbdeploy.passes.to_fp16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    features = 3 * size * size
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((features, classes)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Gemm", ["flat", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="sbdeploy.arch", value="tiny")
    if fp16:
        from sbdeploy.passes import to_fp16

        model = to_fp16(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def fake_engine(
    path: Path,
    profiles: list[tuple[int, int, int]],
    *,
    size: int = 32,
    version: str = "10.13.0.35",
    precision: str = "fp16",
    onnx_metadata: dict | None = None,
) -> Path:
    """Engine bytes (not a real plan: TensorRT cannot run here) and its sidecar, one profile per (min, opt, max) batch.

    The sidecar is written by sbdeploy's own sidecar module, as ``build-engine`` does,
    with the ``sbdeploy.*`` metadata of the ONNX it was built from.
    """
    from sbdeploy.backends.tensorrt.sidecar import EngineSidecar, MachineInfo, write_sidecar

    path.write_bytes(b"not a real TensorRT plan: only the sidecar is read")
    sidecar = EngineSidecar(
        built_on=MachineInfo(version, "NVIDIA L4", "8.9", "12.8", "12.9"),
        requested_precision=precision,
        actual_precisions={precision: 40, "fp32": 2},
        profiles=[{"input": {k: [b, 3, size, size] for k, b in zip(("min", "opt", "max"), p)}} for p in profiles],
        builder_options={},
        onnx_sha256="0" * 64,
        engine_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        build_time_s=1.0,
        inputs=[{"name": "input", "shape": [-1, 3, size, size], "dtype": "float32"}],
        outputs=[{"name": "logits", "shape": [-1, 10], "dtype": "float32"}],
        onnx_metadata=dict(onnx_metadata or {}),
    )
    write_sidecar(path, sidecar)
    return path
