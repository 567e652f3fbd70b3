"""The ONNX Runtime runner: the embedded default backend (CPU), and its CUDA and TensorRT providers.

A missing GPU provider, or a silent fallback to the CPU, is refused rather than measured. An ONNX
file carrying tuned :class:`SessionSettings` (``sbdeploy export --tune``) runs with them on the CPU
provider; an fp16 ONNX gets ``trt_fp16_enable`` on TensorRT 10.x (docs/backends.md says why).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sbdeploy import environment, kernels
from sbdeploy._io import version_tuple
from sbdeploy.backends.base import Feed, Runner, TensorSpec, TimedCall
from sbdeploy.errors import BackendUnavailableError, ConfigError, OnnxModelError, RunError

if TYPE_CHECKING:
    import onnxruntime

_DEVICES = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "cuda"}  # where each provider's IOBinding buffers live
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}

# The CUDA provider's use_tf32 defaults to 1 (onnxruntime >= 1.18, #19357): fp32 files are judged and timed in fp32.
CUDA_PROVIDER_OPTIONS: Mapping[str, str] = {"use_tf32": "0"}

MIN_GPU_RELEASE = (1, 18)  # the first release with the CUDA provider's use_tf32 option
SPIN_S = 0.06
"""How long an idle intra-op worker of a spinning CPU session keeps its core after a run: ONNX Runtime's pool
spins 2**20 pause instructions before it sleeps, 40-55 ms measured on this project's machine (docs/bench.md)."""

# Per GPU ONNX backend, whether an fp32 file's convolutions and matrix products run on TF32 tensor cores.
FP32_TF32: Mapping[str, bool] = {"ort-cuda": False, "ort-trt": True}

TF32_NOTES: Mapping[str, str] = {
    "ort-cuda": "ort-cuda runs ONNX Runtime's CUDA provider with use_tf32=0 (its default is 1): fp32 files compute in fp32, "
    "as validate judges them (the fp32 tolerance)",
    "ort-trt": "ort-trt: ONNX Runtime's TensorRT provider builds with TensorRT's default TF32 and has no option to clear it "
    "(microsoft/onnxruntime#26029): its fp32 runs are judged by the TF32 tolerance",
}
"""What a report says about each GPU ONNX backend's fp32 arithmetic (bench notes, validate.md)."""

_ORT_DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(double)": np.dtype(np.float64)} | {
    f"tensor({name})": np.dtype(name) for name in ("float16", "int8", "uint8", "int32", "int64", "bool")
}

UNKNOWN_TRT_FP16 = (
    "TensorRT's version is unknown here (no tensorrt Python package), so this fp16 ONNX gets no trt_fp16_enable: "
    "under TensorRT 10.x (weakly typed) it may run in fp32; pip install the tensorrt package that matches the provider's "
    "libraries, or pass OrtTensorrtOptions(fp16=True) on 10.x"
)

SESSION_METADATA_KEY = "ort_session"  # sbdeploy.ort_session holds the file's SessionSettings as JSON

_OPTIMIZATIONS = ("all", "extended", "basic", "disabled")
_MODES = ("sequential", "parallel")


@dataclass(frozen=True)
class SessionSettings:
    """ONNX Runtime session options that change how fast a graph runs, never what it computes."""

    intra_op_threads: int | None = None  # None: ONNX Runtime's default, one per core
    inter_op_threads: int | None = None  # threads running independent nodes side by side (parallel mode only)
    execution_mode: Literal["sequential", "parallel"] = "sequential"  # parallel: ONNX Runtime's parallel executor
    spinning: bool = True  # idle pool threads spin: lower latency on idle cores, contention on busy ones
    optimization: Literal["all", "extended", "basic", "disabled"] = "all"  # all includes the NCHWc layout transformer
    threads: int | None = None  # the thread budget these settings were chosen for (None: not chosen for one)

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"session setting {name} must be a positive integer or None, got {value!r}")
        for name, allowed in (("execution_mode", _MODES), ("optimization", _OPTIMIZATIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"session setting {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if not isinstance(self.spinning, bool):
            raise ConfigError(f"session setting spinning must be true or false, got {self.spinning!r}")

    def bounded(self, cpus: int) -> tuple[SessionSettings, list[str]]:
        """These settings with no more intra- or inter-op threads than ``cpus``, and what was lowered (``4 intra-op``)."""
        asked = {
            n: v for n in ("intra_op_threads", "inter_op_threads") if (v := getattr(self, n)) is not None and v > cpus
        }
        lowered = [f"{v} {n.removesuffix('_threads').replace('_', '-')} threads" for n, v in asked.items()]
        return dataclasses.replace(self, **dict.fromkeys(asked, cpus)), lowered

    @classmethod
    def default(cls, threads: int | None = None) -> SessionSettings:
        """What a runner uses without tuned settings: ``threads`` intra-op threads, the rest ONNX Runtime's defaults."""
        return cls(intra_op_threads=threads, threads=threads)

    def describe(self) -> str:
        """E.g. ``2 intra-op threads, sequential, spinning`` (only what differs from the defaults after the threads)."""
        n = self.intra_op_threads
        parts = ["default intra-op threads" if n is None else f"{n} intra-op thread{'' if n == 1 else 's'}"]
        if self.execution_mode == "parallel":
            parts.append(f"parallel executor ({self.inter_op_threads or 'default'} inter-op)")
        parts.append("spinning" if self.spinning else "no spinning")
        if self.optimization != "all":
            parts.append(f"graph optimization {self.optimization}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> SessionSettings:
        """Settings from :meth:`to_dict`'s form; ConfigError on anything else."""
        if not isinstance(values, dict):
            raise ConfigError(f"session settings must be a JSON object, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown session settings {unknown}; sbdeploy knows {', '.join(sorted(known))}")
        return cls(**values)

    def session_options(self) -> onnxruntime.SessionOptions:
        """These settings as ``onnxruntime.SessionOptions``."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        if self.execution_mode == "parallel":
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            if self.inter_op_threads is not None:
                options.inter_op_num_threads = self.inter_op_threads
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        level = "ORT_DISABLE_ALL" if self.optimization == "disabled" else f"ORT_ENABLE_{self.optimization.upper()}"
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        return options


def file_session_settings(
    metadata: dict[str, str], path: str | Path, notes: list[str] | None = None
) -> SessionSettings | None:
    """The :class:`SessionSettings` in an ONNX file's raw ``metadata``, or None; OnnxModelError when unreadable.

    A file is untrusted input: only known keys and types pass, and thread counts above the CPUs this process may
    use are lowered to them (a file tuned on a larger machine still runs; more threads than CPUs only contend),
    with a sentence saying so appended to ``notes``.
    """
    raw = metadata.get(f"sbdeploy.{SESSION_METADATA_KEY}")
    if raw is None:
        return None
    try:
        settings = SessionSettings.from_dict(json.loads(raw))
    except (json.JSONDecodeError, ConfigError) as error:
        raise OnnxModelError(
            f"{path}: its sbdeploy.{SESSION_METADATA_KEY} metadata is not valid ({error}); re-export it"
        ) from None
    cpus = environment.available_cpus()
    settings, lowered = settings.bounded(cpus)
    if lowered and notes is not None:
        notes.append(
            f"{Path(path).name} asks for {' and '.join(lowered)}; this process may use {cpus} CPUs, so it ran with {cpus}"
        )
    return settings


@dataclass(frozen=True)
class OrtTensorrtOptions:
    """Options of ONNX Runtime's TensorRT execution provider (ignored by the other providers)."""

    # trt_fp16_enable: TensorRT 10.x's BuilderFlag.FP16 (gone in 11.x: give an fp16 ONNX instead);
    # None: on for an fp16 ONNX on TensorRT 10.x (whose weakly typed build would run it in fp32), else off
    fp16: bool | None = None

    def provider_options(self, *, tensorrt_major: int | None = None, fp16_model: bool = False) -> dict[str, str]:
        """The provider options as ONNX Runtime takes them (strings), for TensorRT ``tensorrt_major`` when known."""
        if self.fp16 and tensorrt_major is not None and tensorrt_major >= 11:
            raise ConfigError(
                f"trt_fp16_enable needs TensorRT 10.x; this is TensorRT {tensorrt_major}, which is always strongly typed "
                "and takes the precision from the model: run an fp16 ONNX (sbdeploy.passes.to_fp16; bench --fp16 does) "
                "with fp16 off"
            )
        fp16 = self.fp16 if self.fp16 is not None else fp16_model and tensorrt_major is not None and tensorrt_major < 11
        return {"trt_fp16_enable": str(fp16), "trt_builder_optimization_level": "3"}


def _has_fp16_weights(path: Path) -> bool:
    """Whether the ONNX file is an fp16 model; False when unreadable (the session then says why)."""
    from sbdeploy.export.metadata import load_onnx, onnx_precision

    try:
        return onnx_precision(load_onnx(path)) == "fp16"
    except OnnxModelError:
        return False


def _uses_kernels(path: Path) -> bool:
    """Whether the ONNX file has fused SB nodes (sbdeploy's op domain); False when unreadable (the session says why)."""
    from sbdeploy.export.metadata import load_onnx

    try:
        return kernels.uses_kernels(load_onnx(path, external_data=False))
    except OnnxModelError:
        return False


class OrtRunner(Runner):
    """Runs an ONNX file with ONNX Runtime on ``provider`` (``cpu``, ``cuda`` or ``tensorrt``); ``threads``: intra-op
    threads (None: the file's tuned settings); ``session``: settings that override the file's (then no ``threads``)."""

    def __init__(
        self,
        path: str | Path,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        trt_options: OrtTensorrtOptions | None = None,
        session: SessionSettings | None = None,
    ) -> None:
        super().__init__()
        if provider not in PROVIDERS:
            raise ConfigError(f"unknown ONNX Runtime provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        if session is not None and threads is not None:
            raise ConfigError("give the runner threads or session settings, not both (the settings name their threads)")
        self.name = f"ort-{'trt' if provider == 'tensorrt' else provider}"
        self.path = Path(path)
        self.provider = provider
        self.threads = threads
        self.trt_options = trt_options or OrtTensorrtOptions()
        self.requested_session = session
        self.session_settings = session or SessionSettings.default(threads)  # set again on activation
        self._session: onnxruntime.InferenceSession | None = None
        self._uses_kernels: bool | None = None  # whether the file has fused SB nodes (read when first opened)

    def providers(self) -> list[str | tuple[str, dict[str, str]]]:
        """The execution providers, with their options, that the session is made with (in priority order)."""
        if self.provider == "cpu":
            return ["CPUExecutionProvider"]
        cuda = ("CUDAExecutionProvider", dict(CUDA_PROVIDER_OPTIONS))
        if self.provider == "cuda":
            return [cuda, "CPUExecutionProvider"]
        version = environment.gpu_stack().tensorrt
        major = version_tuple(version)[0] if version else None
        fp16_model = self.trt_options.fp16 is None and (major is None or major < 11) and _has_fp16_weights(self.path)
        if fp16_model and major is None and UNKNOWN_TRT_FP16 not in self.notes:
            self.notes.append(UNKNOWN_TRT_FP16)
        options = self.trt_options.provider_options(tensorrt_major=major, fp16_model=fp16_model)
        return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"]

    def _activate(self) -> None:
        import onnxruntime as ort

        wanted = PROVIDERS[self.provider]
        available = ort.get_available_providers()
        if wanted not in available:
            raise BackendUnavailableError(
                f"{self.name}: ONNX Runtime {ort.__version__} here has no {wanted} (available: {', '.join(available)}); "
                "install onnxruntime-gpu on a machine with an NVIDIA GPU, or use the embedded default --backends ort-cpu"
            )
        if self.provider != "cpu" and version_tuple(ort.__version__) < MIN_GPU_RELEASE:
            raise BackendUnavailableError(
                f"{self.name}: ONNX Runtime {ort.__version__}'s CUDA provider has no use_tf32 option, so its fp32 runs would use "
                f"TF32 and fail the fp32 parity check; pip install 'onnxruntime-gpu>={'.'.join(map(str, MIN_GPU_RELEASE))}'"
            )
        if not self.path.is_file():
            raise OnnxModelError(f"{self.path} does not exist; export one with `sbdeploy export`")
        settings = self.requested_session or SessionSettings.default(self.threads)
        session = self._open(settings)
        carried = None
        if self.requested_session is None and self.provider == "cpu":  # settings tuned on the CPU provider, for it
            carried = file_session_settings(session.get_modelmeta().custom_metadata_map, self.path, self.notes)
        if carried is not None and carried != settings:
            if self.threads is None or self.threads == carried.threads:
                settings, session = carried, self._open(carried)
            else:
                self.notes.append(
                    f"{self.path.name} was tuned for {carried.threads} threads ({carried.describe()}); "
                    f"run with {self.threads} intra-op threads instead"
                )
        self.session_settings = settings
        if session.get_providers()[0] != wanted:
            raise BackendUnavailableError(
                f"{self.name}: ONNX Runtime could not start {wanted} (it fell back to {session.get_providers()[0]}); "
                "check the CUDA/cuDNN/TensorRT libraries, or use --backends ort-cpu"
            )
        self._session = session

    @property
    def idle_spin_s(self) -> float:
        """:data:`SPIN_S` where the CPU provider's intra-op pool spins (it has a worker: not one thread), else 0."""
        settings = self.session_settings
        return SPIN_S if self.provider == "cpu" and settings.spinning and settings.intra_op_threads != 1 else 0.0

    def _open(self, settings: SessionSettings) -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        options = settings.session_options()
        if self._uses_kernels is None:  # read once per runner, not at every session it opens
            self._uses_kernels = _uses_kernels(self.path)
        if self._uses_kernels:  # the package's own library, never a path from the file
            if not kernels.is_built():
                raise BackendUnavailableError(
                    f"{self.path.name} uses sbdeploy's fused SB operator and its kernel library is not built: build it "
                    "with `bash scripts/build_kernels.sh` (or export a form without it: --target ort-cpu:taps)"
                )
            library = kernels.library_path()
            try:
                options.register_custom_ops_library(str(library))
            except Exception as error:  # onnxruntime's untyped error: the library's own status message
                raise BackendUnavailableError(
                    f"{self.path.name} uses sbdeploy's fused SB operator, but ONNX Runtime {ort.__version__} cannot "
                    f"load {library.name} ({str(error).strip()}); rebuild it with `bash scripts/build_kernels.sh`"
                ) from None
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=self.providers())
        except Exception as error:  # onnxruntime raises its own untyped exceptions for bad files
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise OnnxModelError(
                f"ONNX Runtime cannot load {self.path} ({first_line}); the file is corrupt or not an ONNX model: re-export it"
            ) from None

    @staticmethod
    def _spec(arg: Any) -> TensorSpec:
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise OnnxModelError(f"input/output {arg.name!r} has type {arg.type}, which sbdeploy does not feed")
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
        return TensorSpec(arg.name, shape, dtype)

    def input_specs(self) -> list[TensorSpec]:
        return [self._spec(a) for a in self.session.get_inputs()]

    def output_specs(self) -> list[TensorSpec]:
        return [self._spec(a) for a in self.session.get_outputs()]

    @property
    def session(self) -> onnxruntime.InferenceSession:
        """The live session (for IOBinding or profiling); valid inside the ``with`` block."""
        assert self._session is not None, "session needs an active runner"
        return self._session

    def _infer(self, feed: Feed) -> Feed:
        names = [o.name for o in self.session.get_outputs()]
        try:
            return dict(zip(names, self.session.run(names, feed)))
        except Exception as error:  # onnxruntime's own untyped exceptions: the file or its inputs
            raise RunError(
                f"ONNX Runtime failed to run {self.path}: {str(error).strip() or type(error).__name__}"
            ) from error

    def bound_call(self, feed: Feed, device: str | None = None) -> tuple[TimedCall, Callable[[], Feed]]:
        """``(run, outputs)`` of an IOBinding run of ``feed``; ``run()`` returns the ms of the device-resident run alone."""
        import onnxruntime as ort

        self.check_call(feed, "bound_call")
        session, device = self.session, device or _DEVICES[self.provider]
        binding = session.io_binding()
        inputs = {}
        for name, array in feed.items():
            inputs[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, 0)
            binding.bind_ortvalue_input(name, inputs[name])
        names = [o.name for o in session.get_outputs()]
        for name in names:
            binding.bind_output(name, device, 0)
        host: dict[str, np.ndarray] = {}

        def run() -> float:
            for name, array in feed.items():
                inputs[name].update_inplace(array)  # host -> bound device buffer
            binding.synchronize_inputs()
            start = time.perf_counter()
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            compute_ms = (time.perf_counter() - start) * 1e3
            host.update(zip(names, binding.copy_outputs_to_cpu()))  # device -> host
            return compute_ms

        return run, lambda: dict(host)

    def timed_call(self, feed: Feed) -> TimedCall:
        """The plain ``run()`` on the CPU provider; :meth:`bound_call` on the GPU providers."""
        if self.provider == "cpu":
            return super().timed_call(feed)
        return self.bound_call(feed)[0]

    def _deactivate(self) -> None:
        self._session = None
