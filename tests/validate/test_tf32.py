"""fp32 engines built with TF32 (TensorRT's default) are judged by a stated TF32 tolerance; ``--no-tf32`` ones by fp32's.

TF32 cannot run here, so it is emulated the way Ampere-and-newer tensor cores compute it:
every convolution and matrix product rounds its inputs (activations and weights) to TF32's
10-bit mantissa and accumulates in fp32. On that emulation of the tiny SB network the
strict fp32 tolerance fails (the defect: the pipeline's TF32 engine was judged by it) and
the TF32 tolerance passes (the shipped trained digits ResNet-20 on real digits, the
pipeline's own case); validate.md states which tolerance an engine got and why.

The same rule for ONNX files on the GPU providers of ONNX Runtime: the CUDA provider runs
with ``use_tf32=0`` (its default is TF32 on), so an fp32 file there is judged as fp32; the
TensorRT provider cannot clear TF32, so an fp32 file there is judged as ``tf32``. Each
artifact records which (``tf32``), and validate.md shows it per file with the reason.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sbdeploy._io import sha256_file
from sbdeploy.backends.tensorrt.sidecar import EngineSidecar, MachineInfo, write_sidecar
from sbdeploy.backends.torch_runner import TorchRunner
from sbdeploy.checkpoint import load_checkpoint
from sbdeploy.files import describe_file
from sbdeploy.tolerance import TOLERANCE_REASONS
from sbdeploy.validate.compare import DEFAULT_TOLERANCES, output_stats, tolerance_for, verdict
from sbdeploy.validate.report import to_markdown
from sbdeploy.validate.run import Artifact, artifact_of, dataset_case, validate
from tests.conftest import REPO

SHIPPED_SB = REPO / "models" / "digits_resnet20_sb"


def tf32(t: torch.Tensor) -> torch.Tensor:
    """Round float32 to TF32 (1 sign, 8 exponent, 10 mantissa bits), to nearest even."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x0FFF + ((bits >> 13) & 1)) & ~0x1FFF).view(torch.float32)


def tf32_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose convolutions and linear layers compute as TF32 tensor cores do."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            with torch.no_grad():
                module.weight.copy_(tf32(module.weight))
            module.register_forward_pre_hook(lambda _, args: (tf32(args[0]), *args[1:]))
    return model


def test_rounding_is_tf32() -> None:
    x = torch.tensor([1.0, 1.0 + 2**-10, 1.0 + 2**-11, 1.0 + 2**-12, 3.0e38], dtype=torch.float32)
    assert tf32(x).tolist()[:4] == [1.0, 1.0 + 2**-10, 1.0, 1.0]  # 2**-11 ties to even, 2**-12 rounds down
    assert torch.isfinite(tf32(x)).all()


def test_tf32_output_fails_fp32_and_passes_the_tf32_tolerance() -> None:
    ckpt = load_checkpoint(SHIPPED_SB)
    model = ckpt.model.eval()
    x = torch.from_numpy(dataset_case("digits", ckpt.config, limit=128).images)
    with torch.no_grad():
        ref, out = model(x).numpy(), tf32_model(model)(x).numpy()
    assert not np.array_equal(ref, out)
    assert not verdict(output_stats(ref, out, DEFAULT_TOLERANCES["fp32"]), DEFAULT_TOLERANCES["fp32"])[0]
    assert verdict(output_stats(ref, out, DEFAULT_TOLERANCES["tf32"]), DEFAULT_TOLERANCES["tf32"]) == (True, "")


def _engine(tmp_path: Path, precision: str, tf32_on: bool) -> Path:
    engine = tmp_path / f"m_{precision}_{tf32_on}.engine"
    engine.write_bytes(b"plan")
    write_sidecar(
        engine,
        EngineSidecar(
            built_on=MachineInfo("10.13.0.35", "NVIDIA A100", "8.0"),
            requested_precision=precision,
            actual_precisions={precision: 20},
            profiles=[{"input": {"min": [1, 1, 32, 32], "opt": [4, 1, 32, 32], "max": [8, 1, 32, 32]}}],
            builder_options={"precision": precision, "tf32": tf32_on},
            onnx_sha256="0" * 64,
            engine_sha256=sha256_file(engine),
            build_time_s=1.0,
        ),
    )
    return engine


def test_engine_artifacts_carry_their_tf32_choice(tmp_path: Path) -> None:
    assert artifact_of(describe_file(_engine(tmp_path, "fp32", True)), "trt").precision == "tf32"
    assert artifact_of(describe_file(_engine(tmp_path, "fp32", False)), "trt").precision == "fp32"
    assert artifact_of(describe_file(_engine(tmp_path, "fp16", True)), "trt").precision == "fp16"


def test_validate_md_states_the_tf32_tolerance_and_why(tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    artifact = Artifact(backend="trt", path=Path("m.engine"), precision="tf32", batch_sizes=(1, 8), max_batch=8)
    report = validate(ckpt, [artifact], runner_factory=lambda a: TorchRunner(tf32_model(ckpt.model)))
    assert report and {c.precision for c in report.checks} == {"tf32"}
    assert all(c.tolerance == DEFAULT_TOLERANCES["tf32"] for c in report.checks)
    text = to_markdown(report)
    assert f"- tf32: {DEFAULT_TOLERANCES['tf32'].describe()}" in text and TOLERANCE_REASONS["tf32"] in text


def test_engines_record_their_tf32_choice(tmp_path: Path) -> None:
    assert artifact_of(describe_file(_engine(tmp_path, "fp32", True)), "trt").tf32 is True
    assert artifact_of(describe_file(_engine(tmp_path, "fp32", False)), "trt").tf32 is False
    assert (
        artifact_of(describe_file(_engine(tmp_path, "fp16", True)), "trt").tf32 is None
    )  # not an fp32 run: TF32 does not apply


def test_gpu_onnx_backends_judge_fp32_by_what_they_compute(tiny_onnx: Path, tmp_path: Path) -> None:
    """ort-cuda runs fp32 without TF32 (use_tf32=0): the fp32 tolerance; ort-trt cannot clear TF32: the TF32 tolerance."""
    import onnx

    from sbdeploy.passes import to_fp16

    fp32 = describe_file(tiny_onnx)
    cuda, trt, cpu = (artifact_of(fp32, b) for b in ("ort-cuda", "ort-trt", "ort-cpu"))
    assert (cuda.precision, cuda.tf32) == ("fp32", False) and tolerance_for(cuda) == DEFAULT_TOLERANCES["fp32"]
    assert (trt.precision, trt.tf32) == ("tf32", True) and tolerance_for(trt) == DEFAULT_TOLERANCES["tf32"]
    assert (cpu.precision, cpu.tf32) == ("fp32", None)
    half = tmp_path / "tiny.fp16.onnx"
    onnx.save(to_fp16(onnx.load(str(tiny_onnx))), str(half))
    assert {(a.precision, a.tf32) for a in (artifact_of(describe_file(half), b) for b in ("ort-cuda", "ort-trt"))} == {
        ("fp16", None)
    }


def test_validate_md_shows_each_files_tf32_and_why(tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    file = describe_file(tiny_onnx)
    engine = Artifact(
        backend="trt", path=Path("m.trt.fp32.engine"), precision="fp32", batch_sizes=(1,), max_batch=1, tf32=False
    )
    artifacts = [engine, artifact_of(file, "ort-cuda"), artifact_of(file, "ort-trt"), artifact_of(file, "ort-cpu")]
    exact = {"ort-cuda", "trt", "ort-cpu"}  # these compute in fp32; ort-trt's TF32 run is emulated
    report = validate(
        ckpt,
        artifacts,
        runner_factory=lambda a: TorchRunner(ckpt.model if a.backend in exact else tf32_model(ckpt.model)),
    )
    assert report, [c.reason for c in report.failures]
    text = to_markdown(report)
    name = tiny_onnx.name
    assert "| `m.trt.fp32.engine` | `` | - | trt | fp32 | off |" in text
    assert (
        "| ort-cuda | fp32 | off |" in text and "| ort-trt | tf32 | on |" in text and "| ort-cpu | fp32 | - |" in text
    )
    assert (
        "- TF32: fp32 engines built without TF32 (--no-tf32; the trt target's parity engine) are judged by the fp32 tolerance."
        in text
    )
    assert "use_tf32=0" in text and "onnxruntime#26029" in text
    assert {(c.file, c.backend, c.precision) for c in report.checks} >= {
        (name, "ort-cuda", "fp32"),
        (name, "ort-trt", "tf32"),
    }
