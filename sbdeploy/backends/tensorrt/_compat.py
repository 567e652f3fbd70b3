"""The one place that knows TensorRT 10.x from 11.x, and the checked imports of tensorrt and pycuda.

TensorRT 11 is always strongly typed (no ``BuilderFlag.FP16``/``INT8``, no
``EXPLICIT_BATCH``); TensorRT 10 builds the same strongly typed networks when asked. So
sbdeploy takes that route on both, and the deprecated FP16 flag is the only 10.x-only name,
confined to :func:`_set_fp16_flag_trt10` under ``if TENSORRT_10_API:`` (scripts/typecheck.sh
checks the rest against TensorRT 11.4's API). Whether TensorRT and pycuda are usable is
:func:`sbdeploy.environment.gpu_stack`'s answer, the one ``sbdeploy doctor`` gives too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbdeploy import environment
from sbdeploy.environment import NO_PYCUDA, NO_TENSORRT
from sbdeploy.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["NO_PYCUDA", "NO_TENSORRT", "TENSORRT_10_API"]

TENSORRT_10_API = True
"""Guards the lines that use names TensorRT 11 removed. True when the program runs (those
lines are reached only after a major-version check); scripts/typecheck.sh's TensorRT 11.4
pass gives mypy ``--always-false TENSORRT_10_API``, so they are checked against 10.x only."""


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


def major_version(version: str) -> int:
    """``"10.13.0.35"`` -> 10."""
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise BackendUnavailableError(f"cannot read the TensorRT version {version!r}") from None


def network_flags(*, strongly_typed: bool = True) -> int:
    """``create_network`` flags: strongly typed on 11.x always, on 10.x unless the FP16-flag route is asked."""
    import tensorrt as trt

    if major_version(trt.__version__) >= 11 or strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def enable_fp16_flag(config: trt.IBuilderConfig) -> None:
    """The 10.x weakly typed route: let TensorRT choose fp16 kernels (``BuilderFlag.FP16``); ConfigError on 11.x."""
    import tensorrt as trt

    if major_version(trt.__version__) >= 11:
        raise ConfigError(
            f"--fp16-flag needs TensorRT 10.x; this is TensorRT {trt.__version__}, which is always strongly typed: "
            "use --fp16 (the ONNX model is converted to fp16 first)"
        )
    _set_fp16_flag_trt10(config)


def _set_fp16_flag_trt10(config: trt.IBuilderConfig) -> None:
    import tensorrt as trt

    if TENSORRT_10_API:
        config.set_flag(trt.BuilderFlag.FP16)


def pycuda_ready() -> bool:
    """True when pycuda imports and a CUDA device is current (never raises)."""
    return environment.gpu_stack().pycuda is not None


def deserialize_engine(
    plan: bytes, logger: trt.ILogger, *, host_code: bool
) -> tuple[trt.Runtime, trt.ICudaEngine | None]:
    """A Runtime (it must outlive the engine) and the engine of ``plan``; None when refused (the logger says why).

    ``host_code`` sets ``engine_host_code_allowed``, which the lean runtime of a
    version-compatible plan needs; sbdeploy sets it only for engines its sidecar says were
    built so: host code in a plan is code to trust.
    """
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
