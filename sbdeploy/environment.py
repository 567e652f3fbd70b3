"""What this machine is: CPU, threads, library versions, and the one GPU/TensorRT probe.

:func:`gpu_stack` is the single answer to "is there an NVIDIA GPU, which TensorRT, can the ``trt`` backend
run" (doctor, the engine choice, the sidecar and every report read it); it probes once and never raises.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUPPORTED_TENSORRT_MAJORS = (10, 11)

_INSTEAD = "(pip install sbdeploy[gpu] on a machine with an NVIDIA GPU); to run on this machine use the ONNX Runtime backend: sbdeploy validate/bench --backends ort-cpu"
NO_TENSORRT = f"TensorRT is not installed {_INSTEAD}"
NO_PYCUDA = f"pycuda is not installed or finds no CUDA driver {_INSTEAD}"
NO_GPU = "no NVIDIA GPU found (pycuda, cuda-python, torch and nvidia-smi see none)"


@dataclass(frozen=True)
class GpuStack:
    """This machine's NVIDIA GPU and TensorRT stack, as far as the probes could tell."""

    gpu_name: str | None  # device 0; None: no GPU found
    compute_capability: str | None  # "major.minor", e.g. "9.0"
    gpu_found_by: str | None  # "pycuda", "cuda-python", "torch" or "nvidia-smi"
    driver: str | None  # the NVIDIA driver release (nvidia-smi), e.g. "580.95.05"
    cuda_runtime: str | None  # CUDA version of the toolkit in use (pycuda's, else torch's build), e.g. "12.8"
    cuda_driver: str | None  # the CUDA version the driver supports (driver API), e.g. "13.0"
    torch_cuda: str | None  # CUDA version torch was built with; None for a CPU build or no torch
    tensorrt: str | None  # the importable TensorRT's version; None when it cannot be used
    tensorrt_problem: str | None  # why not (None when TensorRT imports and is supported)
    pycuda: str | None  # pycuda's version when it imports and makes a context; None otherwise
    pycuda_problem: str | None
    torch_sees_gpu: bool = False  # torch.cuda.is_available(): the torch-cuda backend can run

    @property
    def has_gpu(self) -> bool:
        return self.gpu_name is not None

    @property
    def trt_ready(self) -> bool:
        """True when the ``trt`` backend can run: TensorRT, pycuda and a GPU."""
        return self.tensorrt is not None and self.pycuda is not None and self.has_gpu

    def why_not_trt(self) -> str:
        """One short clause saying what the ``trt`` backend lacks here ("" when it can run)."""
        if self.tensorrt is None:
            return _clause(self.tensorrt_problem or NO_TENSORRT)
        if self.pycuda is None:
            return _clause(self.pycuda_problem or NO_PYCUDA)
        if not self.has_gpu:
            return f"TensorRT {self.tensorrt} is installed but {NO_GPU}"
        return ""


def _clause(reason: str) -> str:
    """The first clause of a reason: "TensorRT is not installed (pip install ...)" -> "TensorRT is not installed"."""
    return reason.split(" (")[0].split("; ")[0].split(" [")[0]


def _cuda_version(number: int) -> str:
    """A CUDA version number as text: 12080 -> ``12.8``."""
    return f"{number // 1000}.{number % 1000 // 10}"


def tensorrt_installed() -> bool:
    """True when the real TensorRT bindings are importable (type stubs alone do not count)."""
    try:
        spec = importlib.util.find_spec("tensorrt")
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None and spec.origin.endswith(".py")


def probe_tensorrt() -> tuple[str | None, str | None]:
    """(version, None) when TensorRT imports and is 10.x/11.x, else (None, why)."""
    if not tensorrt_installed():
        return None, NO_TENSORRT
    try:
        trt = importlib.import_module("tensorrt")
        version = str(trt.__version__)
    except Exception as error:  # the wheel is there but its CUDA libraries are not (ImportError, OSError...)
        return None, f"{NO_TENSORRT} [import failed: {error}]"
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return None, f"cannot read the TensorRT version {version!r}"
    if major not in SUPPORTED_TENSORRT_MAJORS:
        why = f"TensorRT {version} is not supported; sbdeploy supports TensorRT 10.x and 11.x (pip install 'tensorrt>=10,<12')"
        return None, why
    return version, None


def probe_pycuda() -> tuple[str | None, str | None, tuple[str, str, str, str] | None]:
    """(version, None, (gpu name, capability, CUDA toolkit, CUDA driver)) when pycuda makes a context, else (None, why, None)."""
    if importlib.util.find_spec("pycuda") is None:
        return None, NO_PYCUDA, None
    try:
        importlib.import_module("pycuda.autoprimaryctx")
        cuda = importlib.import_module("pycuda.driver")
        device = cuda.Device(0)
        major, minor = device.compute_capability()
        driver = int(cuda.get_driver_version())
        toolkit = ".".join(str(v) for v in cuda.get_version()[:2])
        gpu = (str(device.name()), f"{major}.{minor}", toolkit, _cuda_version(driver))
    except Exception as error:  # pycuda raises its own LogicError/RuntimeError when there is no driver or device
        return None, f"{NO_PYCUDA} [{type(error).__name__}: {error}]", None
    return package_version("pycuda") or "unknown", None, gpu


def probe_cuda_python() -> tuple[str, str, str] | None:
    """(gpu name, capability, CUDA driver) of device 0 through cuda-python's runtime API, or None."""
    try:
        runtime = importlib.import_module("cuda.bindings.runtime")
        error, count = runtime.cudaGetDeviceCount()
        if error != runtime.cudaError_t.cudaSuccess or count < 1:
            return None
        error, props = runtime.cudaGetDeviceProperties(0)
        _, driver = runtime.cudaDriverGetVersion()
        if error != runtime.cudaError_t.cudaSuccess:
            return None
        name = props.name.decode(errors="replace").rstrip("\0") if isinstance(props.name, bytes) else str(props.name)
        return name, f"{props.major}.{props.minor}", _cuda_version(driver)
    except Exception:  # not installed, or no driver library
        return None


def probe_torch() -> tuple[str | None, tuple[str, str] | None]:
    """(CUDA torch was built with, (gpu name, capability) when torch sees a device); a CPU build is told without
    importing torch."""
    version = package_version("torch")
    if version is None or version.endswith("+cpu"):
        return None, None
    try:
        import torch
    except ImportError:
        return None, None
    if not torch.cuda.is_available():
        return torch.version.cuda, None
    major, minor = torch.cuda.get_device_capability(0)
    return torch.version.cuda, (torch.cuda.get_device_name(0), f"{major}.{minor}")


def probe_nvidia_smi() -> tuple[str, str, str] | None:
    """(GPU name, compute capability, driver version) from nvidia-smi, when the tool is there and sees a GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        query = ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=15, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    parts = [p.strip() for p in out.splitlines()[0].split(",")] if out else []
    return (parts[0], parts[1], parts[2]) if len(parts) >= 3 else None


def combine_probes(
    *,
    nvidia_smi: tuple[str, str, str] | None,
    pycuda: tuple[str | None, str | None, tuple[str, str, str, str] | None],
    cuda_python: tuple[str, str, str] | None,
    torch: tuple[str | None, tuple[str, str] | None],
    tensorrt: tuple[str | None, str | None],
) -> GpuStack:
    """The probes' answers as one :class:`GpuStack`; the GPU comes from the first probe that sees one, in order of
    trust (docs/backends.md)."""
    version, problem, pycuda_gpu = pycuda
    torch_cuda, torch_gpu = torch
    probes = ((pycuda_gpu, "pycuda"), (cuda_python, "cuda-python"), (torch_gpu, "torch"), (nvidia_smi, "nvidia-smi"))
    name, capability, found_by = next(((gpu[0], gpu[1], by) for gpu, by in probes if gpu is not None), (None,) * 3)
    return GpuStack(
        gpu_name=name,
        compute_capability=capability,
        gpu_found_by=found_by,
        driver=nvidia_smi[2] if nvidia_smi else None,
        cuda_runtime=pycuda_gpu[2] if pycuda_gpu else (torch_cuda if found_by else None),
        cuda_driver=pycuda_gpu[3] if pycuda_gpu else (cuda_python[2] if cuda_python else None),
        torch_cuda=torch_cuda,
        tensorrt=tensorrt[0],
        tensorrt_problem=tensorrt[1],
        pycuda=version,
        pycuda_problem=None if version else (problem or NO_PYCUDA),
        torch_sees_gpu=torch_gpu is not None,
    )


@functools.cache
def gpu_stack() -> GpuStack:
    """Probe this machine's GPU, CUDA, TensorRT and pycuda (once per process; never raises)."""
    pycuda = probe_pycuda()
    return combine_probes(
        nvidia_smi=probe_nvidia_smi(),
        pycuda=pycuda,
        cuda_python=probe_cuda_python() if pycuda[2] is None else None,
        torch=probe_torch(),
        tensorrt=probe_tensorrt(),
    )


@dataclass(frozen=True)
class Environment:
    """A snapshot of the machine and library versions."""

    python: str
    platform: str
    cpu: str
    cpu_count: int
    torch: str
    torch_threads: int
    torch_cuda: str | None  # CUDA version torch was built with
    gpu: str | None  # device 0 with its compute capability, e.g. "NVIDIA H100 80GB HBM3 (sm_90)"
    tensorrt: str | None = None  # the usable TensorRT's version, from gpu_stack()
    packages: dict[str, str | None] = field(default_factory=dict)
    cpu_int8: str | None = None  # the CPU's int8 dot-product instructions, from cpu_int8_support().describe()
    cpu_int8_dot: bool | None = None  # whether int8 dot products are single instructions: int8 can pay

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _cpuinfo() -> str:
    """/proc/cpuinfo's text ("" where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpuinfo_field(cpuinfo: str, *keys: str) -> str | None:
    """The value of the first line of ``cpuinfo`` whose key is one of ``keys``."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return None


@dataclass(frozen=True)
class CpuInt8Support:
    """The CPU's instructions for int8 dot products, which decide whether int8 inference can pay (docs/backends.md)."""

    machine: str  # platform.machine(): x86_64, aarch64...
    avx2: bool = False
    avx512: bool = False  # AVX-512 Foundation
    vnni: bool = False  # avx512_vnni or avx_vnni
    amx_int8: bool = False
    arm_dotprod: bool = False  # asimddp
    arm_i8mm: bool = False

    @property
    def int8_dot(self) -> bool:
        """True when int8 dot products are single instructions (VNNI, AMX-INT8, ARM dotprod/i8mm)."""
        return self.vnni or self.amx_int8 or self.arm_dotprod or self.arm_i8mm

    def describe(self) -> str:
        """One line for reports, e.g. ``x86_64 AVX-512, VNNI, AMX-INT8: int8 dot products in hardware``."""
        has = {"AVX2": self.avx2 and not self.avx512, "AVX-512": self.avx512, "VNNI": self.vnni}
        has |= {"AMX-INT8": self.amx_int8, "dotprod": self.arm_dotprod, "i8mm": self.arm_i8mm}
        names = [name for name, on in has.items() if on]
        found = f"{self.machine} {', '.join(names)}" if names else self.machine
        if self.int8_dot:
            return f"{found}: int8 dot products in hardware"
        if self.avx2:
            return (
                f"{found}, no VNNI: int8 dot products take two 16-bit multiply-add steps (vpmaddubsw, vpmaddwd), "
                "so int8 may not beat fp32 here: measure it (sbdeploy bench) before shipping int8"
            )
        return f"{found}: no int8 dot-product instructions known to sbdeploy; int8 is unlikely to beat fp32 here"


def cpu_int8_support(cpuinfo: str | None = None) -> CpuInt8Support:
    """What this CPU offers for int8 (from /proc/cpuinfo's ``flags`` / ``Features`` line; ``cpuinfo``: its text, for tests)."""
    flags = set((_cpuinfo_field(_cpuinfo() if cpuinfo is None else cpuinfo, "flags", "Features") or "").split())
    return CpuInt8Support(
        machine=platform.machine() or "unknown",
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        vnni=bool({"avx512_vnni", "avx_vnni"} & flags),
        amx_int8="amx_int8" in flags,
        arm_dotprod="asimddp" in flags,
        arm_i8mm="i8mm" in flags,
    )


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which taskset and cpusets narrow; else the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


PACKAGES = ("onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "pycuda", "cuda-bindings", "numpy", "sbdeploy")


def collect_environment() -> Environment:
    """Describe this machine (the GPU part from :func:`gpu_stack`)."""
    import torch

    stack = gpu_stack()
    cpuinfo = _cpuinfo()
    int8 = cpu_int8_support(cpuinfo)
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=_cpuinfo_field(cpuinfo, "model name") or platform.processor() or platform.machine(),
        cpu_int8=int8.describe(),
        cpu_int8_dot=int8.int8_dot,
        cpu_count=os.cpu_count() or 1,
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        torch_cuda=torch.version.cuda,
        gpu=f"{stack.gpu_name} (sm_{(stack.compute_capability or '?').replace('.', '')})" if stack.has_gpu else None,
        tensorrt=stack.tensorrt,
        packages={name: package_version(name) for name in PACKAGES},
    )
