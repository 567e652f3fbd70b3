"""The one place that knows TensorRT 10.x from 11.x, and the checked imports of tensorrt and pycuda.

TensorRT 11 is always strongly typed: ``BuilderFlag.FP16``/``INT8`` and
``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` are gone, precision comes from the
ONNX types. TensorRT 10 builds the same strongly typed networks when asked
(``STRONGLY_TYPED``), and still has the deprecated ``BuilderFlag.FP16``. So sbdeploy
takes the strongly typed route on both, and the FP16 flag is the only 10.x-only
name, confined to :func:`_set_fp16_flag_trt10` under ``if TENSORRT_10_API:``
(scripts/typecheck.sh checks that everything else type-checks against TensorRT 11.4's API).

Whether TensorRT and pycuda are usable is :func:`sbdeploy.environment.gpu_stack`'s answer,
the same that ``sbdeploy doctor`` and the pipeline read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbdeploy import environment
from sbdeploy.environment import NO_PYCUDA, NO_TENSORRT, SUPPORTED_TENSORRT_MAJORS
from sbdeploy.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["NO_PYCUDA", "NO_TENSORRT", "SUPPORTED_MAJORS", "TENSORRT_10_API"]

SUPPORTED_MAJORS = SUPPORTED_TENSORRT_MAJORS

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
    """``create_network`` flags: strongly typed on 11.x always, on 10.x unless the FP16-flag route is asked.

    Explicit batch is the only mode of both versions, so no EXPLICIT_BATCH flag is passed.
    """
    import tensorrt as trt

    if major_version(trt.__version__) >= 11 or strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def enable_fp16_flag(config: trt.IBuilderConfig) -> None:
    """The 10.x weakly typed route: let TensorRT choose fp16 kernels (``BuilderFlag.FP16``).

    Raises ConfigError on 11.x, which has no such flag.
    """
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
    """A Runtime and the engine of ``plan`` (None when TensorRT refuses it; the reason is in the logger).

    ``host_code=True`` is for version-compatible plans: they embed TensorRT's lean runtime,
    which TensorRT loads only when ``engine_host_code_allowed`` is set before
    deserializing (TensorRT's "Version Compatibility"). sbdeploy sets it only for engines
    its sidecar says were built version-compatible: host code in a plan is code to trust.
    The runtime must outlive the engine.
    """
    import tensorrt as trt

    runtime = trt.Runtime(logger)
    if host_code:
        runtime.engine_host_code_allowed = True
    return runtime, runtime.deserialize_cuda_engine(plan)


def dims(shape: trt.Dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` as a tuple (-1 marks a dynamic dimension)."""
    return tuple(shape[i] for i in range(len(shape)))


def to_dims(shape: tuple[int, ...]) -> trt.Dims:
    """A tuple as a TensorRT ``Dims``."""
    import tensorrt as trt

    return trt.Dims(list(shape))
