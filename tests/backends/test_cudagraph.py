"""The CUDA-graph fallback, for real where there is no GPU: cuda-python's own errors, and the TensorRT runner's reaction.

``cuda-bindings`` installs and imports without a GPU; its runtime calls then return
errors (no driver), which is exactly the path a failed capture takes on a GPU. The
runner's part is checked with a stand-in for TensorRT's execution context (TensorRT
cannot be installed here): the first run enqueues, the capture fails, the runner says
so in ``notes`` and keeps enqueueing. Replay on a real GPU is in test_gpu_timing.py.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from sbdeploy.backends.tensorrt.cudagraph import CapturedGraph, GraphCaptureError, cuda_python_available
from sbdeploy.backends.tensorrt.runner import TrtRunner

pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is a dev dependency (pip install -e .[dev])")


def _driver_present() -> bool:
    from cuda.bindings import runtime

    error, count = runtime.cudaGetDeviceCount()
    return error == runtime.cudaError_t.cudaSuccess and count > 0


needs_no_gpu = pytest.mark.skipif(cuda_python_available() and _driver_present(), reason="checks the no-driver path")


def test_without_cuda_python_capture_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cuda_python_available()  # installed here (the importorskip above), and found without importing it
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime"):
        monkeypatch.setitem(sys.modules, name, None)  # as when cuda-bindings is not installed
    assert not cuda_python_available()
    enqueued: list[int] = []
    with pytest.raises(GraphCaptureError, match="pip install cuda-bindings"):
        CapturedGraph.capture(0, lambda: enqueued.append(1) is None)
    assert not enqueued


@needs_no_gpu
def test_capture_without_a_driver_is_a_clear_error_and_enqueues_nothing() -> None:
    enqueued: list[int] = []
    with pytest.raises(GraphCaptureError, match="cudaStreamBeginCapture failed: .*driver"):
        CapturedGraph.capture(0, lambda: enqueued.append(1) is None)
    assert not enqueued


class _Context:
    """Stands in for TensorRT's IExecutionContext: counts execute_async_v3 calls."""

    def __init__(self) -> None:
        self.enqueues: list[int] = []

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.enqueues.append(stream_handle)
        return True


@needs_no_gpu
def test_trt_runner_falls_back_to_enqueue_with_a_note() -> None:
    runner = TrtRunner("unused.engine", cuda_graph=True)
    context = _Context()
    runner._context, runner._stream = context, SimpleNamespace(handle=7)
    runner._execute((("input", (1, 3, 32, 32)),))
    assert context.enqueues == [7]  # the plain run; the capture failed before TensorRT was called again
    assert not runner.uses_cuda_graph and not runner.cuda_graph
    assert len(runner.notes) == 1 and "CUDA graph capture failed" in runner.notes[0] and "driver" in runner.notes[0]
    runner._execute((("input", (1, 3, 32, 32)),))
    assert context.enqueues == [7, 7] and len(runner.notes) == 1  # no retry, no second note


@pytest.mark.gpu
def test_capture_and_replay_on_a_gpu() -> None:
    """CapturedGraph for real: PyTorch kernels enqueued on a stream, captured through cuda-python, replayed.

    The same path the TensorRT runner takes with execute_async_v3 (which needs TensorRT): a
    first run outside capture, then a capture of the enqueue on that stream, then launches
    that see the inputs' new values because they replay the kernels on the same buffers.
    """
    import torch

    if not torch.cuda.is_available() or not _driver_present():
        pytest.skip("no CUDA device for torch and cuda-python")
    stream = torch.cuda.Stream()
    a = torch.ones(4096, device="cuda")
    b = torch.full_like(a, 2.0)
    c = torch.empty_like(a)

    def enqueue() -> bool:
        with torch.cuda.stream(stream):
            torch.add(a, b, out=c)  # no allocation: capturable
        return True

    enqueue()
    torch.cuda.synchronize()
    graph = CapturedGraph.capture(stream.cuda_stream, enqueue)
    for value in (5.0, -1.0):
        a.fill_(value)
        torch.cuda.synchronize()
        graph.launch(stream.cuda_stream)
        stream.synchronize()
        assert torch.equal(c, torch.full_like(a, value + 2.0))
    graph.destroy()
    graph.destroy()  # idempotent
    with pytest.raises(GraphCaptureError, match="destroyed"):
        graph.launch(stream.cuda_stream)
