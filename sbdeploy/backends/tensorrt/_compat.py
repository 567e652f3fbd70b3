"""The one place that knows TensorRT 10.x from 11.x, and the checked imports of tensorrt and pycuda.

sbdeploy builds strongly typed networks on both; the deprecated FP16 flag is the only 10.x-only name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbdeploy import environment
from sbdeploy._io import version_tuple
from sbdeploy.environment import NO_PYCUDA, NO_TENSORRT
from sbdeploy.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    import tensorrt as trt

# Guards the lines that use names TensorRT 11 removed (reached only after a major-version check);
# scripts/typecheck.sh's TensorRT 11.4 pass gives mypy --always-false TENSORRT_10_API.
TENSORRT_10_API = True


def tensorrt_available() -> bool:
    """True when the real TensorRT bindings are importable (type stubs alone do not count)."""
    return environment.tensorrt_installed()


def require_tensorrt() -> str:
    """TensorRT's version, imported once; BackendUnavailableError saying what to use instead."""
    stack = environment.gpu_stack()
    if stack.tensorrt is None:
        raise BackendUnavailableError(stack.tensorrt_problem or NO_TENSORRT)
    return stack.tensorrt


def require_pycuda() -> None:
    """pycuda imported with the primary CUDA context current (``pycuda.autoprimaryctx``), or BackendUnavailableError."""
    stack = environment.gpu_stack()
    if stack.pycuda is None:
        raise BackendUnavailableError(stack.pycuda_problem or NO_PYCUDA)


def network_flags(*, strongly_typed: bool = True) -> int:
    """``create_network`` flags: strongly typed on 11.x always, on 10.x unless the FP16-flag route is asked."""
    import tensorrt as trt

    if version_tuple(trt.__version__) >= (11,) or strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def enable_fp16_flag(config: trt.IBuilderConfig) -> None:
    """The 10.x weakly typed route: let TensorRT choose fp16 kernels (``BuilderFlag.FP16``); ConfigError on 11.x."""
    import tensorrt as trt

    if version_tuple(trt.__version__) >= (11,):
        raise ConfigError(
            f"--fp16-flag needs TensorRT 10.x; this is TensorRT {trt.__version__}, which is always strongly typed: "
            "use --fp16 (the ONNX model is converted to fp16 first)"
        )
    if TENSORRT_10_API:
        config.set_flag(trt.BuilderFlag.FP16)


def deserialize_engine(
    plan: bytes, logger: trt.ILogger, *, host_code: bool
) -> tuple[trt.Runtime, trt.ICudaEngine | None]:
    """A Runtime (it must outlive the engine) and the engine of ``plan``; None when refused (the logger says why).
    ``host_code``: allow a version-compatible plan's embedded lean runtime (only where its sidecar says so)."""
    import tensorrt as trt

    runtime = trt.Runtime(logger)
    if host_code:
        runtime.engine_host_code_allowed = True
    return runtime, runtime.deserialize_cuda_engine(plan)


def make_logger(messages: list[str]) -> trt.ILogger:
    """A TensorRT logger that keeps warnings and errors (for messages) and drops the rest."""
    import tensorrt as trt

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind11 trampolines need the base initialised explicitly

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity <= trt.ILogger.Severity.WARNING:
                messages.append(f"[{severity.name}] {msg}")

    return _Logger()


def dims(shape: trt.Dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` as a tuple (-1 marks a dynamic dimension)."""
    return tuple(shape[i] for i in range(len(shape)))


def to_dims(shape: tuple[int, ...]) -> trt.Dims:
    """A tuple as a TensorRT ``Dims``."""
    import tensorrt as trt

    return trt.Dims(list(shape))
