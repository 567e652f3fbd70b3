"""The TensorRT runner: a plan file -> ``infer(feed)``, with pycuda buffers and one CUDA stream.

Buffers are sized once for the profile's largest shapes; each batch sets its input shapes and runs
``execute_async_v3``, or with ``cuda_graph=True`` replays a CUDA graph captured per input shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sbdeploy.backends.base import Feed, Runner, TensorSpec, TimedCall
from sbdeploy.backends.tensorrt import _compat
from sbdeploy.backends.tensorrt.cudagraph import CapturedGraph, GraphCaptureError
from sbdeploy.backends.tensorrt.sidecar import (
    check_compatible,
    check_engine_hash,
    current_machine,
    read_load_failure,
    read_sidecar,
)
from sbdeploy.errors import EngineMismatchError, InputError, RunError

if TYPE_CHECKING:
    import pycuda.driver as cuda
    import tensorrt as trt


# Input name -> shape, sorted by name: the key a CUDA graph is captured at.
_Shapes = tuple[tuple[str, tuple[int, ...]], ...]


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


@dataclass(frozen=True)
class ProfileRange:
    """The min and max shape an engine input accepts (profile 0)."""

    name: str
    min: tuple[int, ...]
    max: tuple[int, ...]

    def check(self, shape: tuple[int, ...]) -> None:
        if len(shape) != len(self.min) or any(not lo <= d <= hi for d, lo, hi in zip(shape, self.min, self.max)):
            raise InputError(
                f"trt: input {self.name!r} of shape {_fmt(shape)} is outside the engine's profile "
                f"(min {_fmt(self.min)}, max {_fmt(self.max)}); split the batch, or rebuild with "
                f"sbdeploy build-engine --min-batch/--max-batch covering {shape[0] if shape else '?'}"
            )


def load_refusal(engine_path: Path, tensorrt_version: str, log: list[str]) -> str:
    """The message for an engine TensorRT refused to deserialize: what its log says the engine was built for, the fix."""
    rebuild = f"rebuild it here with sbdeploy build-engine MODEL.onnx -o {engine_path}"
    failure = read_load_failure(log)
    if failure is not None:
        return f"TensorRT {tensorrt_version} cannot load {engine_path}: {failure.describe()}; {rebuild}"
    details = "; ".join(log[-3:]) or "no details logged"
    return (
        f"TensorRT {tensorrt_version} cannot load {engine_path} ({details}); it is corrupt, or was built for another "
        f"TensorRT version or GPU, or version-compatible without its sidecar: {rebuild}"
    )


class TrtRunner(Runner):
    """Runs a serialized TensorRT engine (profile 0) on device 0; ``NAME.engine.json`` beside it is checked first."""

    name = "trt"

    def __init__(self, engine_path: str | Path, *, cuda_graph: bool = False) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self.cuda_graph = cuda_graph
        self._graph: CapturedGraph | None = None
        self._graph_shapes: _Shapes | None = None  # the input shapes it was captured at
        self._runtime: trt.Runtime | None = None  # kept with its logger for as long as the engine lives
        self._logger: trt.ILogger | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: cuda.Stream | None = None
        self._specs: list[TensorSpec] = []
        self._ranges: dict[str, ProfileRange] = {}
        self._outputs: list[str] = []
        self._device: dict[str, cuda.DeviceAllocation] = {}
        self._host: dict[str, np.ndarray] = {}
        self._messages: list[str] = []

    def _activate(self) -> None:
        _compat.require_tensorrt()
        _compat.require_pycuda()
        import pycuda.driver as cuda
        import tensorrt as trt

        if not self.engine_path.is_file():
            raise EngineMismatchError(
                f"{self.engine_path} does not exist; build it with `sbdeploy build-engine MODEL.onnx`"
            )
        sidecar = read_sidecar(self.engine_path)
        if sidecar is not None:
            check_compatible(self.engine_path, sidecar, current_machine())
            check_engine_hash(self.engine_path, sidecar)
        logger = _compat.make_logger(self._messages)
        host_code = sidecar is not None and sidecar.version_compatible
        runtime, engine = _compat.deserialize_engine(self.engine_path.read_bytes(), logger, host_code=host_code)
        if engine is None:
            raise EngineMismatchError(load_refusal(self.engine_path, trt.__version__, self._messages))
        context = engine.create_execution_context()
        stream = cuda.Stream()
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                min_shape, _, max_shape = (_compat.dims(d) for d in engine.get_tensor_profile_shape(name, 0))
                self._ranges[name] = ProfileRange(name, min_shape, max_shape)
                shape = tuple(d if d >= 0 else None for d in _compat.dims(engine.get_tensor_shape(name)))
                self._specs.append(TensorSpec(name, shape, dtype))
                context.set_input_shape(name, _compat.to_dims(max_shape))
            else:
                self._outputs.append(name)
        # With every input at its largest shape, the output shapes are their largest too.
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            volume = int(np.prod(_compat.dims(context.get_tensor_shape(name)), dtype=np.int64))
            self._host[name] = cuda.pagelocked_empty(volume, dtype)
            self._device[name] = cuda.mem_alloc(max(volume * dtype.itemsize, 1))
            context.set_tensor_address(name, int(self._device[name]))
        self._logger, self._runtime = logger, runtime
        self._engine, self._context, self._stream = engine, context, stream

    def input_specs(self) -> list[TensorSpec]:
        return list(self._specs)

    @property
    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Input name -> (min shape, max shape) of the engine's profile (valid once active)."""
        return {name: (r.min, r.max) for name, r in self._ranges.items()}

    def timed_call(self, feed: Feed) -> TimedCall:
        """One end-to-end run per call, returning the GPU milliseconds of the enqueue (CUDA events), without the copies."""
        import pycuda.driver as cuda

        self.check_call(feed, "timed_call")
        events = (cuda.Event(), cuda.Event())

        def run() -> float:
            self._infer(feed, events)
            return events[1].time_since(events[0])

        return run

    def _infer(self, feed: Feed, events: tuple[cuda.Event, cuda.Event] | None = None) -> Feed:
        import pycuda.driver as cuda

        assert self._context is not None and self._stream is not None
        context, stream = self._context, self._stream
        for name, array in feed.items():
            self._ranges[name].check(array.shape)
            if not context.set_input_shape(name, _compat.to_dims(array.shape)):
                raise InputError(f"trt: TensorRT refused shape {array.shape} for input {name!r}")
            host = self._host[name][: array.size]
            host[:] = array.ravel()
            cuda.memcpy_htod_async(self._device[name], host, stream)
        if events is not None:
            events[0].record(stream)
        self._execute(tuple(sorted((name, tuple(array.shape)) for name, array in feed.items())))
        if events is not None:
            events[1].record(stream)
        outputs: dict[str, Any] = {}
        for name in self._outputs:
            shape = _compat.dims(context.get_tensor_shape(name))
            host = self._host[name][: int(np.prod(shape, dtype=np.int64))]
            cuda.memcpy_dtoh_async(host, self._device[name], stream)
            outputs[name] = (host, shape)
        stream.synchronize()
        return {name: host.reshape(shape).copy() for name, (host, shape) in outputs.items()}

    def _enqueue(self) -> bool:
        assert self._context is not None and self._stream is not None
        return self._context.execute_async_v3(self._stream.handle)

    def _execute(self, shapes: _Shapes) -> None:
        """Enqueue the engine on the stream, or launch its CUDA graph captured at these shapes."""
        assert self._stream is not None
        if self._graph is not None and self._graph_shapes == shapes:
            self._graph.launch(self._stream.handle)
            return
        if not self._enqueue():
            raise RunError(f"trt: execute_async_v3 failed for {self.engine_path}: {'; '.join(self._messages[-3:])}")
        if self.cuda_graph:  # after a plain enqueue at these shapes, as TensorRT asks
            self._drop_graph()
            try:
                self._graph = CapturedGraph.capture(self._stream.handle, self._enqueue)
                self._graph_shapes = shapes
            except GraphCaptureError as error:
                self.cuda_graph = False
                self.notes.append(f"trt: CUDA graph capture failed ({error}); running without CUDA graphs")

    @property
    def uses_cuda_graph(self) -> bool:
        """True once a CUDA graph has been captured and is being replayed."""
        return self._graph is not None

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.destroy()
        self._graph, self._graph_shapes = None, None

    def _deactivate(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self._drop_graph()  # the graph holds the buffers' addresses: freed before them
        for allocation in self._device.values():
            allocation.free()
        self._device, self._host = {}, {}
        self._context = self._engine = self._stream = None  # the context before the engine, before the runtime
        self._runtime = self._logger = None
        self._specs, self._ranges, self._outputs = [], {}, []
