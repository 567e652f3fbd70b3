"""The engine sidecar ``NAME.engine.json``: what an engine was built with, checked before it is loaded.

A TensorRT plan only runs on the TensorRT version and the GPU compute capability it
was built for; loaded elsewhere, TensorRT logs an API usage error and returns
nothing. The sidecar records both sides (and the precisions, profiles, builder
options and hashes), so the runner can refuse an engine up front with a message
naming the build machine, this machine, and the command that fixes it. The engine
file itself stays plain plan bytes, loadable by trtexec and Triton.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sbdeploy.checkpoint import atomic_write_bytes, sha256_file
from sbdeploy.errors import BackendUnavailableError, EngineMismatchError

FORMAT = "sbdeploy-engine-sidecar"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class MachineInfo:
    """The TensorRT, CUDA and GPU an engine is built on or run on."""

    tensorrt_version: str  # e.g. "10.13.0.35"
    gpu_name: str  # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "major.minor", e.g. "9.0"
    cuda_version: str = "unknown"  # CUDA runtime/toolkit version, e.g. "12.8"
    driver_version: str = "unknown"  # CUDA driver API version, e.g. "12.9"

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu_name} (compute capability {self.compute_capability})"


@dataclass(frozen=True)
class EngineSidecar:
    """Everything ``NAME.engine.json`` records about one engine build."""

    built_on: MachineInfo
    requested_precision: str  # "fp32", "fp16" or "int8"
    actual_precisions: dict[str, int]  # layers per precision, read back from the engine inspector
    profiles: list[dict[str, Any]]  # per profile: input name -> {"min": [...], "opt": [...], "max": [...]}
    builder_options: dict[str, Any]  # the BuildOptions used, plus the route (strongly typed or FP16 flag)
    onnx_sha256: str  # of the ONNX file given to build-engine (before the fp16/int8 pass)
    engine_sha256: str
    build_time_s: float
    inputs: list[dict[str, Any]] = field(default_factory=list)  # name, shape (-1 dynamic), dtype
    outputs: list[dict[str, Any]] = field(default_factory=list)
    built_at: str = ""  # ISO 8601, UTC
    sbdeploy_version: str = ""
    onnx_metadata: dict[str, Any] = field(default_factory=dict)  # the ONNX's sbdeploy.* metadata (arch, target, input shape...)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path) -> EngineSidecar:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EngineMismatchError(f"{source} is not an sbdeploy engine sidecar; rebuild the engine with `sbdeploy build-engine`")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise EngineMismatchError(f"{source} was written by a newer sbdeploy (format {data['format_version']}); upgrade sbdeploy")
        try:
            fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
            return cls(**{**fields, "built_on": MachineInfo(**fields["built_on"])})
        except (KeyError, TypeError) as error:
            raise EngineMismatchError(f"{source} lacks or mangles a field ({error}); rebuild the engine with `sbdeploy build-engine`") from None


def sidecar_path(engine_path: str | Path) -> Path:
    """``engines/x.engine`` -> ``engines/x.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    """Write the sidecar beside the engine, atomically."""
    path = sidecar_path(engine_path)
    atomic_write_bytes(path, (json.dumps(sidecar.to_json(), indent=2) + "\n").encode())
    return path


def read_sidecar(engine_path: str | Path) -> EngineSidecar | None:
    """The sidecar of an engine; None when there is none (an engine from trtexec); EngineMismatchError when corrupt."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EngineMismatchError(f"{path} is not valid JSON ({error}); rebuild the engine with `sbdeploy build-engine`") from None
    return EngineSidecar.from_json(data, path)


def _version_parts(version: str, n: int) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:n])


def check_compatible(engine_path: str | Path, sidecar: EngineSidecar, here: MachineInfo) -> None:
    """Raise EngineMismatchError unless an engine built as ``sidecar`` says can run on ``here``.

    The rules are TensorRT's: the same TensorRT version (major.minor.patch), or, for an engine
    built with ``--version-compatible``, the same major version and no older one; and the same
    compute capability (a different GPU model of the same capability is fine).
    """
    built = sidecar.built_on
    problems = []
    if sidecar.builder_options.get("version_compatible"):
        same_major = _version_parts(built.tensorrt_version, 1) == _version_parts(here.tensorrt_version, 1)
        if not same_major or _version_parts(here.tensorrt_version, 3) < _version_parts(built.tensorrt_version, 3):
            problems.append("a version-compatible engine runs only on the same TensorRT major version, same or newer")
    elif _version_parts(built.tensorrt_version, 3) != _version_parts(here.tensorrt_version, 3):
        problems.append("engines run only on the TensorRT version that built them")
    if built.compute_capability != here.compute_capability:
        problems.append("engines run only on GPUs of the compute capability they were built for")
    if problems:
        raise EngineMismatchError(
            f"{engine_path} was built with {built.describe()}, but this machine has {here.describe()}: "
            f"{'; '.join(problems)}. Rebuild it here: sbdeploy build-engine MODEL.onnx -o {engine_path}"
        )


def check_engine_hash(engine_path: str | Path, sidecar: EngineSidecar) -> None:
    """Raise EngineMismatchError when the engine file is not the one the sidecar describes."""
    actual = sha256_file(Path(engine_path))
    if actual != sidecar.engine_sha256:
        raise EngineMismatchError(
            f"{engine_path} does not match its sidecar {sidecar_path(engine_path)} (sha256 {actual[:12]}... vs "
            f"{sidecar.engine_sha256[:12]}...): the engine was replaced or truncated; rebuild it with `sbdeploy build-engine`"
        )


def current_machine() -> MachineInfo:
    """This machine's TensorRT and first GPU (via pycuda, else torch.cuda); BackendUnavailableError without them."""
    from sbdeploy.backends.tensorrt._compat import require_tensorrt

    version = require_tensorrt()
    name, capability, cuda_version, driver_version = gpu_info()
    return MachineInfo(version, name, capability, cuda_version, driver_version)


def gpu_info() -> tuple[str, str, str, str]:
    """(GPU name, compute capability, CUDA version, driver version) of device 0."""
    from sbdeploy.backends.tensorrt._compat import pycuda_ready

    if pycuda_ready():
        import pycuda.driver as cuda

        device = cuda.Device(0)
        major, minor = device.compute_capability()
        cuda_version = ".".join(str(v) for v in cuda.get_version()[:2])
        driver = cuda.get_driver_version()
        return device.name(), f"{major}.{minor}", cuda_version, f"{driver // 1000}.{driver % 1000 // 10}"
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        return torch.cuda.get_device_name(0), f"{major}.{minor}", str(torch.version.cuda), "unknown"
    raise BackendUnavailableError(
        "no CUDA device found (neither pycuda nor torch sees one); TensorRT engines need an NVIDIA GPU: "
        "to run on this machine use the ONNX Runtime backend: --backends ort-cpu"
    )
