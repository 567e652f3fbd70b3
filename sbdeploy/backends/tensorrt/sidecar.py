"""The engine sidecar ``NAME.engine.json``: what an engine was built with, checked before it is loaded.

A plan runs only on the TensorRT version and compute capability it was built for, so a mismatched
engine is refused up front with a message naming both machines and the fix (docs/backends.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sbdeploy import environment
from sbdeploy._io import atomic_write_bytes, sha256_file, version_tuple
from sbdeploy.errors import BackendUnavailableError, EngineMismatchError

FORMAT = "sbdeploy-engine-sidecar"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class MachineInfo:
    """The TensorRT, CUDA and GPU an engine is built on or run on."""

    tensorrt_version: str  # e.g. "10.13.0.35"
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "9.0"
    cuda_version: str = "unknown"  # CUDA runtime version
    driver_version: str = "unknown"  # CUDA driver API version

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
    onnx_metadata: dict[str, Any] = field(default_factory=dict)  # the ONNX's sbdeploy.* metadata (arch, target...)

    @property
    def tf32(self) -> bool:
        """Whether fp32 layers could use TF32 (TensorRT's default; ``--no-tf32`` clears it)."""
        return bool(self.builder_options.get("tf32", True))

    @property
    def version_compatible(self) -> bool:
        """Whether the plan embeds the lean runtime (``--version-compatible``)."""
        return bool(self.builder_options.get("version_compatible", False))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path) -> EngineSidecar:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EngineMismatchError(
                f"{source} is not an sbdeploy engine sidecar; rebuild the engine with `sbdeploy build-engine`"
            )
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise EngineMismatchError(
                f"{source} was written by a newer sbdeploy (format {data['format_version']}); upgrade sbdeploy"
            )
        try:
            fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
            return cls(**{**fields, "built_on": MachineInfo(**fields["built_on"])})
        except (KeyError, TypeError) as error:
            raise EngineMismatchError(
                f"{source} lacks or mangles a field ({error}); rebuild the engine with `sbdeploy build-engine`"
            ) from None


def sidecar_path(engine_path: str | Path) -> Path:
    """``engines/x.engine`` -> ``engines/x.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
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
        raise EngineMismatchError(
            f"{path} is not valid JSON ({error}); rebuild the engine with `sbdeploy build-engine`"
        ) from None
    return EngineSidecar.from_json(data, path)


# Version-compatible plans of one major version that TensorRT runtimes of a later major load
# (NVIDIA's 11.4 support matrix, "Engine Portability": 10 -> 11 and 8 -> 10, no other pair).
CROSS_MAJOR_COMPATIBLE = {(10, 11), (8, 10)}


def check_compatible(engine_path: str | Path, sidecar: EngineSidecar, here: MachineInfo) -> None:
    """Raise EngineMismatchError unless an engine built as ``sidecar`` says can run on ``here`` (TensorRT's rules)."""
    built = sidecar.built_on
    b, h = version_tuple(built.tensorrt_version), version_tuple(here.tensorrt_version)
    problems = []
    if sidecar.version_compatible:
        if not b or not h or h < b or (b[0] != h[0] and (b[0], h[0]) not in CROSS_MAJOR_COMPATIBLE):
            problems.append(
                "a version-compatible engine runs on the TensorRT that built it or a newer one of the same major "
                "version (a TensorRT 10 engine also on TensorRT 11), never on an older one"
            )
    elif b != h:
        problems.append("engines run only on the TensorRT version that built them, build number included")
    if built.compute_capability != here.compute_capability:
        problems.append("engines run only on GPUs of the compute capability they were built for")
    if problems:
        raise EngineMismatchError(
            f"{engine_path} was built with {built.describe()}, but this machine has {here.describe()}: "
            f"{'; '.join(problems)}. Rebuild it here: sbdeploy build-engine MODEL.onnx -o {engine_path}"
        )


@dataclass(frozen=True)
class LoadFailure:
    """What TensorRT's log says a plan was built for, against this machine."""

    kind: str  # "TensorRT version" or "compute capability"
    engine: str  # what the plan was built for
    here: str  # what this machine has

    def describe(self) -> str:
        return f"the engine was built for {self.kind} {self.engine}, but this machine has {self.here}"


# TensorRT's refusals; "expecting" is this machine, "got" the plan (tests/data/tensorrt/load_errors.json).
_LOAD_FAILURES = (
    (
        "TensorRT version",
        re.compile(r"not compatible with this version of TensorRT, expecting library version ([\d.]+) got ([\d.]+)"),
    ),
    ("compute capability", re.compile(r"incompatible device, expecting compute ([\d.]+) got compute ([\d.]+)")),
)


def read_load_failure(log: Sequence[str]) -> LoadFailure | None:
    """The version or compute-capability mismatch TensorRT logged when it refused a plan, or None."""
    for line in log:
        for kind, pattern in _LOAD_FAILURES:
            match = pattern.search(line)
            if match:
                return LoadFailure(kind, engine=match.group(2).rstrip("."), here=match.group(1).rstrip("."))
    return None


def check_engine_hash(engine_path: str | Path, sidecar: EngineSidecar) -> None:
    """Raise EngineMismatchError when the engine file is not the one the sidecar describes."""
    actual = sha256_file(Path(engine_path))
    if actual != sidecar.engine_sha256:
        raise EngineMismatchError(
            f"{engine_path} does not match its sidecar {sidecar_path(engine_path)} (sha256 {actual[:12]}... vs "
            f"{sidecar.engine_sha256[:12]}...): the engine was replaced or truncated; rebuild it with `sbdeploy build-engine`"
        )


def current_machine() -> MachineInfo:
    """This machine's TensorRT and GPU (:func:`sbdeploy.environment.gpu_stack`); BackendUnavailableError without them."""
    stack = environment.gpu_stack()
    if stack.tensorrt is None:
        raise BackendUnavailableError(stack.tensorrt_problem or environment.NO_TENSORRT)
    if stack.gpu_name is None or stack.compute_capability is None:
        raise BackendUnavailableError(
            f"{environment.NO_GPU}; TensorRT engines need an NVIDIA GPU: to run on this machine use the ONNX Runtime backend: --backends ort-cpu"
        )
    cuda = (stack.cuda_runtime or "unknown", stack.cuda_driver or "unknown")
    return MachineInfo(stack.tensorrt, stack.gpu_name, stack.compute_capability, *cuda)
