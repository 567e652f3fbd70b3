"""TensorRT for real, on a machine with an NVIDIA GPU, TensorRT 10.x/11.x and pycuda.

Skipped elsewhere with the reason. The engines are the ones bench and the pipeline build:
:mod:`sbdeploy.artifacts` makes the ``trt`` target's ONNX (the strided form) and builds the
fp32 and fp16 engines from it with that row's build options (the fp32 parity engine without
TF32), one profile (1, 16, 16) for batches 1, 4 and 16. Covers: the sidecar read back
(precisions from the inspector of this TensorRT, TF32 recorded, the source ONNX's hash);
parity of each engine against PyTorch by validate's own criteria for its target and
precision (fp32: the strict fp32 tolerance) at the profile's min and opt/max and in between,
and refusals outside the profile; the timing cache saved and reused (the second build finds
every timing in it); int8 from a QDQ model; a version-compatible engine loaded by the
runner (host code allowed); the refusal of an engine whose sidecar names another TensorRT.
The last three build at optimization level 1 (:data:`QUICK`), so scripts/gpu_check.sh's
budget goes to the engines bench builds.

Tolerances: validate's (:data:`sbdeploy.tolerance.DEFAULT_TOLERANCES` through the ``trt``
row): fp32 |engine - torch| <= 1e-4 + 1e-3 |torch|, cosine >= 0.99999, every top-1 class
the same; fp16 (weights and activations in fp16, fp32 I/O) 5e-2 + 5e-2 |torch|, cosine >=
0.999, top-1 >= 98%; int8 cosine >= 0.98 and top-1 >= 90% on inputs of the calibration
distribution.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sbdeploy import environment
from sbdeploy.backends.tensorrt import _compat
from sbdeploy.errors import EngineMismatchError, InputError
from sbdeploy.files import DeployFile
from tests.backends.conftest import save_sb_checkpoint

pytestmark = pytest.mark.gpu

BATCHES = (1, 4, 16)  # what bench times: one engine per precision, profile (1, 16, 16)
MIN, OPT, MAX = 1, 16, 16
QUICK = 1  # builder optimization level of the feature tests (timing cache, int8, version-compatible): faster builds;
# level 0 would not use the timing cache (TensorRT's builder_optimization_level docs)


def _missing_gpu_stack() -> str | None:
    if not _compat.tensorrt_available():
        return "TensorRT is not installed (pip install sbdeploy[gpu] on a GPU machine)"
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed (pip install sbdeploy[gpu])"
    if environment.gpu_stack().pycuda is None:
        return "pycuda finds no CUDA device or driver"
    return None


@pytest.fixture(scope="module", autouse=True)
def _gpu_stack() -> None:
    reason = _missing_gpu_stack()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def made(sb_model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, DeployFile]:
    """The trt target's files as bench and the pipeline make them (sbdeploy.artifacts): its ONNX and the two engines."""
    from sbdeploy.artifacts import make_artifacts, plan_artifacts
    from sbdeploy.sources import resolve_source

    folder = tmp_path_factory.mktemp("gpu")
    source = resolve_source(save_sb_checkpoint(sb_model, folder / "ckpt"))
    plans, uses = plan_artifacts([("sb", "model")], ["trt"], BATCHES, precisions=("fp32", "fp16"))
    files = make_artifacts(plans, {"sb": source}, folder)
    assert {uses[("sb", "trt", b, p)] for b in BATCHES for p in ("fp32", "fp16")} == {
        "model.trt.fp32.engine",
        "model.trt.fp16.engine",
    }
    return files


@pytest.fixture(scope="module")
def sb_export(made: dict[str, DeployFile]) -> Path:
    """The SB network in the trt target's form, the ONNX the engines are built from."""
    return made["model.trt.fp32.onnx"].path


@pytest.fixture(scope="module")
def engines(made: dict[str, DeployFile]) -> dict[str, Path]:
    return {p: made[f"model.trt.{p}.engine"].path for p in ("fp32", "fp16")}


def _reference(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_sidecar(made: dict[str, DeployFile], sb_export: Path, precision: str) -> None:
    import tensorrt as trt

    from sbdeploy.backends.tensorrt.sidecar import read_sidecar
    from sbdeploy.checkpoint import sha256_file

    file = made[f"model.trt.{precision}.engine"]
    sidecar = read_sidecar(file.path)
    assert sidecar is not None
    assert sidecar.built_on.tensorrt_version == trt.__version__
    assert sidecar.requested_precision == precision
    assert (
        sidecar.onnx_sha256 == sha256_file(sb_export) and sidecar.engine_sha256 == sha256_file(file.path) == file.sha256
    )
    assert sidecar.profiles[0]["input"] == {"min": [MIN, 3, 32, 32], "opt": [OPT, 3, 32, 32], "max": [MAX, 3, 32, 32]}
    assert (
        sidecar.onnx_metadata["target"] == "trt" and sidecar.onnx_metadata["lowering"] == "strided"
    )  # the form bench times
    assert sum(sidecar.actual_precisions.values()) > 0
    assert sidecar.actual_precisions.get(precision, 0) > 0, sidecar.actual_precisions
    assert sidecar.actual_precisions.get("unknown", 0) < sum(
        sidecar.actual_precisions.values()
    )  # this TensorRT's schema was read
    assert (file.target, file.profile) == ("trt", (MIN, OPT, MAX))
    if precision == "fp32":  # the trt row's parity engine: TF32 cleared, recorded, and judged as fp32
        assert "fp16" not in sidecar.actual_precisions and sidecar.tf32 is False and file.precision == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_parity_with_pytorch_at_min_opt_max(made: dict[str, DeployFile], sb_model: nn.Module, precision: str) -> None:
    """Each engine against PyTorch by validate's criteria for it (the trt row's tolerance for its precision)."""
    from sbdeploy.backends.tensorrt.runner import TrtRunner
    from sbdeploy.validate.compare import output_stats, tolerance_for, verdict
    from sbdeploy.validate.run import artifact_of

    file = made[f"model.trt.{precision}.engine"]
    artifact = artifact_of(file)
    assert artifact.backend == "trt" and artifact.precision == precision and artifact.batch_sizes == (MIN, MAX)
    tolerance = tolerance_for(artifact)
    rng = np.random.default_rng(0)
    with TrtRunner(file.path) as runner:
        assert runner.profile["input"] == ((MIN, 3, 32, 32), (MAX, 3, 32, 32))
        for batch in (MIN, OPT, MAX, 3, 4):  # the profile's min, opt and max, and two batches between
            x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
            out = runner.infer({"input": x})["logits"]
            assert out.shape == (batch, 10) and out.dtype == np.float32
            assert verdict(output_stats(_reference(sb_model, x), out, tolerance), tolerance) == (True, ""), batch
        with pytest.raises(InputError, match="outside the engine's profile"):
            runner.infer({"input": np.zeros((MAX + 1, 3, 32, 32), np.float32)})
        with pytest.raises(InputError, match="shape"):
            runner.infer({"input": np.zeros((1, 3, 28, 28), np.float32)})


def test_engine_for_another_tensorrt_is_refused(engines: dict[str, Path], tmp_path: Path) -> None:
    from sbdeploy.backends.tensorrt.runner import TrtRunner
    from sbdeploy.backends.tensorrt.sidecar import sidecar_path

    engine = tmp_path / "copy.engine"
    engine.write_bytes(engines["fp32"].read_bytes())
    data = json.loads(sidecar_path(engines["fp32"]).read_text())
    data["built_on"]["tensorrt_version"] = "9.0.0.1"
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(EngineMismatchError, match="TensorRT 9.0.0.1.*Rebuild it here"):
        with TrtRunner(engine):
            pass


def test_plan_bytes_are_plain(engines: dict[str, Path]) -> None:
    """The engine file deserializes as is (what trtexec --loadEngine and Triton do)."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(engines["fp16"].read_bytes()) is not None


def test_timing_cache_is_reused(sb_export: Path, tmp_path: Path) -> None:
    """A second build with the first one's timing cache takes every timing from it: the cache comes back unchanged."""
    from sbdeploy.backends.tensorrt.builder import BuildOptions, build_engine

    cache = tmp_path / "timing.cache"
    options = BuildOptions(min_batch=MIN, opt_batch=OPT, max_batch=MAX, tf32=False, timing_cache=cache, opt_level=QUICK)
    first = build_engine(sb_export, tmp_path / "a.engine", options)
    after_first = cache.read_bytes()
    second = build_engine(sb_export, tmp_path / "b.engine", options)
    assert cache.read_bytes() == after_first or second.sidecar.build_time_s < first.sidecar.build_time_s, (
        first.sidecar.build_time_s,
        second.sidecar.build_time_s,
    )


def test_int8_from_qdq(sb_export: Path, sb_model: nn.Module, tmp_path: Path) -> None:
    from sbdeploy.backends.tensorrt.builder import BuildOptions, build_engine
    from sbdeploy.backends.tensorrt.runner import TrtRunner
    from sbdeploy.validate.compare import DEFAULT_TOLERANCES, output_stats, verdict

    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
    options = BuildOptions(precision="int8", min_batch=MIN, opt_batch=OPT, max_batch=MAX, opt_level=QUICK)
    result = build_engine(sb_export, tmp_path / "int8.engine", options, calibration=calibration)
    assert result.sidecar.actual_precisions.get("int8", 0) > 0, result.sidecar.actual_precisions
    x = rng.standard_normal((MAX, 3, 32, 32)).astype(np.float32)
    with TrtRunner(result.engine_path) as runner:
        out = runner.infer({"input": x})["logits"]
    tolerance = DEFAULT_TOLERANCES["int8"]
    assert verdict(output_stats(_reference(sb_model, x), out, tolerance), tolerance) == (True, "")


def test_version_compatible_engine_loads(sb_export: Path, sb_model: nn.Module, tmp_path: Path) -> None:
    """--version-compatible embeds the lean runtime: the runner must allow host code to load it (and does)."""
    from sbdeploy.backends.tensorrt.builder import BuildOptions, build_engine
    from sbdeploy.backends.tensorrt.runner import TrtRunner

    result = build_engine(
        sb_export,
        tmp_path / "vc.engine",
        BuildOptions(min_batch=MIN, opt_batch=OPT, max_batch=MAX, tf32=False, version_compatible=True, opt_level=QUICK),
    )
    assert result.sidecar.version_compatible and result.sidecar.actual_precisions.get("fp32", 0) > 0
    x = np.random.default_rng(3).standard_normal((OPT, 3, 32, 32)).astype(np.float32)
    with TrtRunner(result.engine_path) as runner:
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], _reference(sb_model, x), rtol=1e-3, atol=1e-3)
