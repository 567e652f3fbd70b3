"""CUDA graphs around TensorRT's ``execute_async_v3``, through cuda-python's runtime API.

After a shape change, one plain enqueue, then one captured and launched instead (TensorRT's guide);
pycuda has no stream capture (inducer/pycuda#424), so the optional ``cuda-python`` captures on its stream.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cuda.bindings import runtime as cudart

NO_CUDA_PYTHON = (
    "CUDA graphs need cuda-python (pip install cuda-bindings matching the CUDA major), which is not installed"
)


class GraphCaptureError(RuntimeError):
    """A CUDA graph could not be captured or launched; the message says why."""


def cuda_python_available() -> bool:
    """True when ``cuda.bindings.runtime`` can be found (it is not imported)."""
    try:
        return importlib.util.find_spec("cuda.bindings.runtime") is not None
    except ModuleNotFoundError:  # no ``cuda`` package at all
        return False


def _check(error: cudart.cudaError_t, what: str) -> None:
    """Raise GraphCaptureError naming ``what`` unless ``error`` is cudaSuccess."""
    from cuda.bindings import runtime as rt

    if error != rt.cudaError_t.cudaSuccess:
        _, text = rt.cudaGetErrorString(error)
        raise GraphCaptureError(f"{what} failed: {text.decode(errors='replace')}")


class CapturedGraph:
    """One instantiated CUDA graph, launched on the stream it was captured on."""

    def __init__(self, graph: cudart.cudaGraph_t, graph_exec: cudart.cudaGraphExec_t) -> None:
        self._graph: cudart.cudaGraph_t | None = graph
        self._exec: cudart.cudaGraphExec_t | None = graph_exec

    @classmethod
    def capture(cls, stream: int, enqueue: Callable[[], bool]) -> CapturedGraph:
        """Capture what ``enqueue()`` (False: failed) puts on ``stream``, once run outside capture, into a graph."""
        if not cuda_python_available():
            raise GraphCaptureError(NO_CUDA_PYTHON)
        from cuda.bindings import runtime as rt

        (error,) = rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
        _check(error, "cudaStreamBeginCapture")
        try:
            enqueued = enqueue()
        finally:
            error, graph = rt.cudaStreamEndCapture(stream)  # always ended, or the stream stays in capture mode
        _check(error, "cudaStreamEndCapture (TensorRT's enqueue is not capturable here)")
        if not enqueued:
            rt.cudaGraphDestroy(graph)
            raise GraphCaptureError("execute_async_v3 failed while being captured")
        error, graph_exec = rt.cudaGraphInstantiate(graph, 0)
        if error != rt.cudaError_t.cudaSuccess:
            rt.cudaGraphDestroy(graph)
            _check(error, "cudaGraphInstantiate")
        return cls(graph, graph_exec)

    def launch(self, stream: int) -> None:
        """Replay the graph on ``stream`` (asynchronous, like the enqueue it replaces)."""
        if self._exec is None:
            raise GraphCaptureError("the CUDA graph was destroyed")
        from cuda.bindings import runtime as rt

        (error,) = rt.cudaGraphLaunch(self._exec, stream)
        _check(error, "cudaGraphLaunch")

    def destroy(self) -> None:
        """Free the executable graph and the graph (idempotent)."""
        if self._exec is None and self._graph is None:
            return
        from cuda.bindings import runtime as rt

        if self._exec is not None:
            rt.cudaGraphExecDestroy(self._exec)
        if self._graph is not None:
            rt.cudaGraphDestroy(self._graph)
        self._exec = self._graph = None
