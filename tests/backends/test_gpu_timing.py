"""GPU timing for real, where there is a GPU: compute time from each GPU backend, and CUDA-graph replay.

Each test skips with its reason when its stack is absent (torch without CUDA,
onnxruntime without CUDAExecutionProvider, no TensorRT/pycuda, no cuda-python).
Checked: the device compute time a timed call returns is positive and, per run and
in median, no longer than the end-to-end time around it (which adds the host copies);
a TensorRT engine replayed as a CUDA graph gives the outputs of a plain enqueue, at
two batch sizes (a re-capture at the new shape); ``sbdeploy bench`` builds one engine
per model for all batch sizes.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sbdeploy import environment
from sbdeploy.backends import get_runner
from sbdeploy.backends.base import Runner
from sbdeploy.backends.tensorrt import _compat
from sbdeploy.backends.tensorrt.cudagraph import cuda_python_available
from sbdeploy.bench.timing import TimingPlan, measure_interleaved
from tests.conftest import run_cli

pytestmark = pytest.mark.gpu


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, 32), dtype=np.float32)


def _missing_trt() -> str | None:
    if not _compat.tensorrt_available():
        return "TensorRT is not installed (pip install sbdeploy[gpu] on a GPU machine)"
    if importlib.util.find_spec("pycuda") is None or environment.gpu_stack().pycuda is None:
        return "pycuda is not installed or finds no CUDA device"
    return None


def _check_compute_within_end_to_end(runner: Runner, batch: int) -> None:
    call = runner.timed_call({"input": _x(batch)})
    for _ in range(3):  # warm-up
        call()
    for _ in range(5):
        start = time.perf_counter()
        compute_ms = call()
        end_to_end_ms = (time.perf_counter() - start) * 1e3
        assert compute_ms is not None and 0 < compute_ms <= end_to_end_ms
    stats = measure_interleaved({"m": call}, TimingPlan(warmup_iters=2, iters=10))["m"]
    assert stats.compute_median_ms is not None and 0 < stats.compute_median_ms <= stats.median_ms


def test_torch_cuda_compute_time(sb_model: nn.Module) -> None:
    if not torch.cuda.is_available():
        pytest.skip("this torch sees no CUDA device")
    with get_runner("torch-cuda", sb_model) as runner:
        _check_compute_within_end_to_end(runner, 8)


@pytest.mark.parametrize("kind", ["ort-cuda", "ort-trt"])
def test_ort_gpu_compute_time(sb_model: nn.Module, tmp_path: Path, kind: str) -> None:
    import onnxruntime

    from sbdeploy.export.onnx_export import export_onnx
    from sbdeploy.targets import target_for
    from tests.backends.conftest import save_sb_checkpoint

    provider = {"ort-cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}[kind]
    if provider not in onnxruntime.get_available_providers():
        pytest.skip(f"{provider} is not in this onnxruntime (install onnxruntime-gpu on a GPU machine)")
    onnx_path = tmp_path / f"sb.{kind}.onnx"  # the form bench times on this backend (the target table's row)
    export_onnx(save_sb_checkpoint(sb_model, tmp_path / "ckpt"), onnx_path, target=target_for(kind).name)
    with get_runner(kind, onnx_path) as runner:
        _check_compute_within_end_to_end(runner, 8)
        run, outputs = runner.bound_call({"input": _x(4, 1)})
        run()
        np.testing.assert_allclose(
            outputs()["logits"], runner.infer({"input": _x(4, 1)})["logits"], rtol=1e-5, atol=1e-5
        )


@pytest.fixture(scope="module")
def engine(sb_model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 engine bench builds: the trt target's form and build options, one profile (1, 8, 8)."""
    reason = _missing_trt()
    if reason:
        pytest.skip(reason)
    from sbdeploy.artifacts import make_artifacts, plan_artifacts
    from sbdeploy.sources import resolve_source
    from tests.backends.conftest import save_sb_checkpoint

    folder = tmp_path_factory.mktemp("engine")
    source = resolve_source(save_sb_checkpoint(sb_model, folder / "ckpt"))
    plans, uses = plan_artifacts([("sb", "sb")], ["trt"], [1, 8])
    made = make_artifacts(plans, {"sb": source}, folder)
    return made[uses[("sb", "trt", 8, "fp32")]].path


def test_trt_compute_time(engine: Path) -> None:
    with get_runner("trt", engine) as runner:
        _check_compute_within_end_to_end(runner, 8)


def test_cuda_graph_replay_gives_the_plain_outputs(engine: Path) -> None:
    if not cuda_python_available():
        pytest.skip("cuda-python (cuda-bindings) is not installed")
    feeds = [{"input": _x(8, 1)}, {"input": _x(8, 2)}, {"input": _x(3, 3)}, {"input": _x(3, 4)}]
    with get_runner("trt", engine) as plain:
        expected = [plain.infer(f)["logits"] for f in feeds]
    with get_runner("trt", engine, cuda_graph=True) as graphed:
        got = []
        for feed in feeds:  # at each batch: the first run enqueues and captures, the second replays
            got.append(graphed.infer(feed)["logits"])
            assert graphed.uses_cuda_graph, graphed.notes
        again = graphed.infer(feeds[0])["logits"]  # back at batch 8: a fresh capture, then correct outputs
        assert not graphed.notes
        call = graphed.timed_call(feeds[2])
        assert all(0 < (call() or 0) for _ in range(3))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)
    np.testing.assert_allclose(again, expected[0], rtol=0, atol=1e-6)


def test_bench_builds_one_engine_per_model(tmp_path: Path) -> None:
    reason = _missing_trt()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "bench"
    result = run_cli(
        "bench",
        "-m",
        "cifar_resnet20_sb",
        "--backends",
        "trt",
        "--batch",
        "1,4",
        "--warmup",
        "2",
        "--iters",
        "5",
        "--cuda-graph",
        "--report",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "bench.json").read_text())
    engines = {
        f"{m}.trt.fp32.engine": {"profile": [1, 4, 4], "precision": "fp32"}
        for m in ("cifar_resnet20_sb", "cifar_resnet20")
    }
    assert data["settings"]["engines"] == engines
    assert {r["file"] for r in data["rows"]} == set(engines) and all(r["form"] == "trt" for r in data["rows"])
    for row in data["rows"]:
        assert row["compute_median_ms"] is not None and 0 < row["compute_median_ms"] <= row["median_ms"]
