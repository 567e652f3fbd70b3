"""The OpenVINO runner (``ov-cpu``): OpenVINO's CPU plugin on an ONNX file, compiled with explicit properties.

Every compile names its threads, the latency hint, one stream and the inference precision: OpenVINO's CPU
plugin computes in bf16 by default where the CPU has AMX/AVX512-BF16, so an fp32 run asks for f32. A bf16
or fp16 run is a run-time hint on the same file, asked for only when the plugin's
``OPTIMIZATION_CAPABILITIES`` lists it and checked on the compiled model (with an ISA capped, OpenVINO can
silently compile fp16 as bf16, or fail with an unhelpful message).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sbdeploy import environment, kernels
from sbdeploy._io import version_tuple
from sbdeploy.backends.base import Feed, Runner, TensorSpec, TimedCall
from sbdeploy.errors import BackendUnavailableError, ConfigError, OnnxModelError, RunError

if TYPE_CHECKING:
    import openvino

MIN_OPENVINO = (2024, 0)  # openvino.Core + the string properties below, as used here
INSTALL = "pip install 'sbdeploy[openvino]' (or `pip install openvino`)"

HINTS: Mapping[str, tuple[str, str]] = {"fp32": ("f32", "FP32"), "bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}
"""Run precision -> (OpenVINO's INFERENCE_PRECISION_HINT, the capability the CPU plugin must report for it)."""

_OV_DTYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i8": np.int8, "u8": np.uint8}
_OV_DTYPES |= {"i32": np.int32, "i64": np.int64, "boolean": np.bool_}


def load_openvino() -> Any:
    """The ``openvino`` module; BackendUnavailableError when it is missing or older than :data:`MIN_OPENVINO`."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError(f"ov-cpu needs OpenVINO, which is not installed: {INSTALL}") from None
    if version_tuple(openvino.__version__)[:2] < MIN_OPENVINO:
        raise BackendUnavailableError(
            f"ov-cpu needs OpenVINO >= {'.'.join(map(str, MIN_OPENVINO))}, this is {openvino.__version__}: "
            "pip install -U openvino"
        )
    return openvino


def cpu_capabilities(core: openvino.Core) -> list[str]:
    """What the CPU plugin reports it computes in here (``FP32``, ``BF16``, ``FP16``, ``INT8``...)."""
    return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def probe() -> tuple[str | None, list[str], str]:
    """OpenVINO's version (None: unusable), its CPU plugin's capabilities, and why not when unusable; never raises."""
    try:
        ov = load_openvino()
        return ov.__version__.split("-")[0], cpu_capabilities(ov.Core()), ""
    except BackendUnavailableError as error:
        return None, [], str(error)
    except Exception as error:  # the plugin's own untyped errors: reported, never raised (doctor)
        return None, [], f"OpenVINO's CPU plugin does not start ({_message(error)})"


class OpenVinoRunner(Runner):
    """Runs an ONNX file on OpenVINO's CPU plugin; ``threads``: INFERENCE_NUM_THREADS (None: the CPUs this process may
    use); ``precision``: the inference precision (fp32, or bf16/fp16 where the CPU has it) of a float file."""

    name = "ov-cpu"

    def __init__(self, path: str | Path, *, threads: int | None = None, precision: str = "fp32") -> None:
        super().__init__()
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        if precision not in HINTS:
            raise ConfigError(f"ov-cpu runs in {', '.join(HINTS)}, not {precision!r}")
        self.path = Path(path)
        self.threads = threads
        self.precision = precision
        self._compiled: Any = None
        self._request: Any = None

    def properties(self) -> dict[str, str]:
        """The compile properties, every one named (OpenVINO's defaults differ by CPU)."""
        return {
            "INFERENCE_NUM_THREADS": str(self.threads or environment.available_cpus()),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_PRECISION_HINT": HINTS[self.precision][0],
        }

    def _activate(self) -> None:
        from sbdeploy.export.metadata import load_onnx

        ov = load_openvino()
        if kernels.uses_kernels(load_onnx(self.path, external_data=False)):  # also: missing or unreadable file
            raise OnnxModelError(
                f"{self.path.name} uses sbdeploy's fused SB operator, which OpenVINO cannot run: "
                "export it with --target ov-cpu"
            )
        core = ov.Core()
        hint, capability = HINTS[self.precision]
        capabilities = cpu_capabilities(core)
        if capability not in capabilities:
            raise BackendUnavailableError(
                f"ov-cpu: this CPU's OpenVINO plugin offers {', '.join(capabilities)}, not {capability}: "
                f"run {self.precision} elsewhere, or fp32 here"
            )
        try:
            model = core.read_model(str(self.path))
        except Exception as error:  # OpenVINO's untyped errors: the file
            raise OnnxModelError(
                f"OpenVINO cannot read {self.path} ({_message(error)}); the file is corrupt or not an ONNX model: "
                "re-export it"
            ) from None
        try:
            compiled = core.compile_model(model, "CPU", self.properties())
        except Exception as error:  # the plugin's untyped errors: e.g. bf16 with the instruction set capped
            raise BackendUnavailableError(
                f"ov-cpu: OpenVINO {ov.__version__.split('-')[0]} cannot compile {self.path.name} in {self.precision} on this CPU "
                f"({_message(error)})"
            ) from None
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != hint:  # e.g. f16 compiled as bf16
            raise BackendUnavailableError(
                f"ov-cpu: OpenVINO compiled {self.path.name} in {got}, not the {self.precision} asked for: "
                f"this CPU cannot run {self.precision}"
            )
        self._compiled, self._request = compiled, compiled.create_infer_request()

    def _spec(self, port: Any) -> TensorSpec:
        dtype = _OV_DTYPES.get(port.get_element_type().get_type_name())
        if dtype is None:
            raise OnnxModelError(f"input/output {port.get_any_name()!r} has type {port.get_element_type()}")
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        return TensorSpec(port.get_any_name(), shape, np.dtype(dtype))

    def input_specs(self) -> list[TensorSpec]:
        return [self._spec(p) for p in self._live.inputs]

    def output_specs(self) -> list[TensorSpec]:
        return [self._spec(p) for p in self._live.outputs]

    @property
    def _live(self) -> Any:
        assert self._compiled is not None, "the compiled model needs an active runner"
        return self._compiled

    def _infer(self, feed: Feed) -> Feed:
        try:
            results = self._request.infer(feed)
        except Exception as error:  # OpenVINO's untyped errors: the file or its inputs
            raise RunError(f"OpenVINO failed to run {self.path}: {_message(error)}") from error
        return {p.get_any_name(): np.array(results[p]) for p in self._live.outputs}

    def timed_call(self, feed: Feed) -> TimedCall:
        """One synchronous ``infer`` of ``feed`` (checked once, here), inputs and outputs shared, not copied."""
        self.check_call(feed, "timed_call")
        request = self._request

        def run() -> None:
            request.infer(feed, share_inputs=True, share_outputs=True)

        return run

    def _deactivate(self) -> None:
        self._compiled = self._request = None


def _message(error: Exception) -> str:
    """The last non-empty line of OpenVINO's multi-line error (its own message; the lines above are call sites)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
