"""A live Triton (PyTriton's bundled server) serving a `triton-repo` ONNX model folder, hit by concurrent clients.

Needs the PyTriton interpreter that `scripts/setup.sh --with-triton` makes (.venv-triton) and
tritonclient (sbdeploy[serve]); skipped with the reason otherwise. The server binds
127.0.0.1 on free ports and is stopped at the end of the module. Latency and
throughput are recorded (printed with -s), never asserted.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sbdeploy.serve.pytriton_server import PyTritonServer, ServeOptions, find_pytriton_python
from sbdeploy.serve.triton_repo import TritonOptions, write_triton_repo
from tests.conftest import REPO
from tests.serve._artifacts import export_resnet20

pytest.importorskip("tritonclient.http", reason="tritonclient absent: pip install sbdeploy[serve]")
if find_pytriton_python() is None:
    pytest.skip(
        "no PyTriton interpreter: run `bash scripts/setup.sh --with-triton` (makes .venv-triton) or set SBDEPLOY_PYTRITON_PYTHON",
        allow_module_level=True,
    )

ATOL = RTOL = 1e-4  # served (batched by Triton) vs direct batch-1 ONNX Runtime, fp32 logits


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_resnet20(tmp_path_factory.mktemp("live") / "cifar_resnet20_sb.onnx")


@pytest.fixture(scope="module")
def server(onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyTritonServer]:
    """The model folder that `triton-repo` writes, served with its own config's batching."""
    # A 2 ms queue delay gives the batcher room to group the concurrent requests.
    options = TritonOptions(max_batch=16, queue_delay_us=2000, preferred_batch=(4, 8))
    repo = write_triton_repo([onnx_path], tmp_path_factory.mktemp("repo"), name="r20", options=options)
    with PyTritonServer.from_model_folder(repo.models[0].folder) as live:
        assert live.options == ServeOptions(model_name="r20", max_batch=16, queue_delay_us=2000, preferred_batch=(4, 8))
        yield live


def direct(onnx_path: Path, images: np.ndarray) -> np.ndarray:
    """Batch-1 outputs of sbdeploy's ONNX Runtime CPU runner, outside Triton."""
    from sbdeploy.backends.ort import OrtRunner

    with OrtRunner(onnx_path, provider="cpu") as runner:
        return np.concatenate([runner.infer({"input": images[i : i + 1]})["logits"] for i in range(len(images))])


def test_concurrent_clients_get_direct_inference_results(server: PyTritonServer, onnx_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_triton", REPO / "scripts" / "bench_triton.py")
    script = sys.modules["bench_triton"] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
    spec.loader.exec_module(script)  # the client benchmark is a script (scripts/bench_triton.py)
    bench_triton = script.bench_triton
    images = np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32)
    report = bench_triton(
        server.http_url,
        "r20",
        images,
        direct(onnx_path, images),
        concurrency=(1, 4, 16),
        requests_per_client=6,
        time_limit_s=30,
        atol=ATOL,
        rtol=RTOL,
    )
    for level in report.levels:
        print(
            f"c={level.concurrency:2d} n={level.requests:3d} p50={level.p50_ms:.1f}ms p90={level.p90_ms:.1f}ms "
            f"p99={level.p99_ms:.1f}ms {level.throughput_rps:.0f} req/s max|diff|={level.max_abs_diff:.2e} "
            f"batches={level.batches}"
        )
    assert [lv.requests for lv in report.levels] == [6, 24, 96], report.levels
    assert report, f"responses differ from direct inference: {report.levels}"
    # Every request was executed by Triton, and the dynamic batcher grouped some of the 16 concurrent ones.
    for level in report.levels:
        assert sum(b * n for b, n in level.batches.items()) == level.requests, level
    assert max(report.levels[-1].batches) > 1, report.levels[-1]


@pytest.mark.slow
def test_wrong_input_shape_is_refused_by_triton(server: PyTritonServer) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    with httpclient.InferenceServerClient(server.http_url, network_timeout=30) as client:
        bad = httpclient.InferInput("input", [1, 3, 16, 16], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3, 16, 16), np.float32))
        with pytest.raises(InferenceServerException, match="shape|dims"):
            client.infer("r20", [bad])
        assert client.is_model_ready("r20")
