"""The one place that knows TensorRT 10.x from 11.x, and the lazy, checked imports of tensorrt and pycuda.

TensorRT 11 is always strongly typed: ``BuilderFlag.FP16``/``INT8`` and
``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` are gone, precision comes from the
ONNX types. TensorRT 10 builds the same strongly typed networks when asked
(``STRONGLY_TYPED``), and still has the deprecated ``BuilderFlag.FP16``. So sbdeploy
takes the strongly typed route on both, and the FP16 flag is the only 10.x-only
name, confined to :func:`_set_fp16_flag_trt10` (a test checks that every other
TensorRT name used here exists in the TensorRT 11.4 bindings).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from sbdeploy.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    import tensorrt as trt

SUPPORTED_MAJORS = (10, 11)

NO_TENSORRT = (
    "TensorRT is not installed (pip install sbdeploy[gpu] on a machine with an NVIDIA GPU); "
    "to run on this machine use the ONNX Runtime backend: sbdeploy validate/bench --backends ort-cpu"
)
NO_PYCUDA = (
    "pycuda is not installed or finds no CUDA driver (pip install sbdeploy[gpu] on a machine with an NVIDIA GPU); "
    "to run on this machine use the ONNX Runtime backend: sbdeploy validate/bench --backends ort-cpu"
)


def tensorrt_available() -> bool:
    """True when the real TensorRT bindings are importable (type stubs alone do not count)."""
    spec = importlib.util.find_spec("tensorrt")
    return spec is not None and spec.origin is not None and spec.origin.endswith(".py")


def require_tensorrt() -> str:
    """Import TensorRT once and return its version; BackendUnavailableError saying what to use instead."""
    if not tensorrt_available():
        raise BackendUnavailableError(NO_TENSORRT)
    try:
        import tensorrt as trt
    except (ImportError, OSError) as error:  # the wheel is there but its CUDA libraries are not
        raise BackendUnavailableError(f"{NO_TENSORRT} [import failed: {error}]") from None
    if major_version(trt.__version__) not in SUPPORTED_MAJORS:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} is not supported; sbdeploy supports TensorRT 10.x and 11.x "
            "(pip install 'tensorrt>=10,<12')"
        )
    return trt.__version__


def require_pycuda() -> None:
    """Import pycuda and make the primary CUDA context current (``pycuda.autoprimaryctx``)."""
    if importlib.util.find_spec("pycuda") is None:
        raise BackendUnavailableError(NO_PYCUDA)
    try:
        importlib.import_module("pycuda.autoprimaryctx")
    except Exception as error:  # pycuda raises its own LogicError/RuntimeError when there is no driver or device
        raise BackendUnavailableError(f"{NO_PYCUDA} [{type(error).__name__}: {error}]") from None


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

    config.set_flag(trt.BuilderFlag.FP16)


def pycuda_ready() -> bool:
    """True when pycuda imports and a CUDA device is current (never raises)."""
    try:
        require_pycuda()
    except BackendUnavailableError:
        return False
    return True


def dims(shape: trt.Dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` as a tuple (-1 marks a dynamic dimension)."""
    return tuple(shape[i] for i in range(len(shape)))


def to_dims(shape: tuple[int, ...]) -> trt.Dims:
    """A tuple as a TensorRT ``Dims``."""
    import tensorrt as trt

    return trt.Dims(list(shape))
