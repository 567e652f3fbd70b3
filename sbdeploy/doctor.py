"""``sbdeploy doctor``: what this machine has, and which backends can run on it.

Every probe is cheap and never raises: a missing library is reported as missing, with
the reason a backend cannot run and what to install. Nothing here imports TensorRT or
pycuda unless they are installed.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from sbdeploy.environment import package_version


@dataclass(frozen=True)
class BackendStatus:
    """Whether one runner (a name of :data:`sbdeploy.backends.RUNNERS`) can run here, and why not."""

    name: str
    available: bool
    reason: str  # what it runs on, or what is missing and how to get it


@dataclass(frozen=True)
class DoctorReport:
    """What ``sbdeploy doctor`` found."""

    python: str
    platform: str
    torch: str | None
    torch_cuda: str | None  # CUDA version torch was built with; None for a CPU build
    onnx: str | None
    onnxruntime: str | None
    ort_providers: list[str]
    tensorrt: str | None  # None: not installed (type stubs alone do not count)
    pycuda: str | None
    gpu_name: str | None
    compute_capability: str | None
    driver: str | None
    backends: list[BackendStatus] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _nvidia_smi() -> tuple[str | None, str | None, str | None]:
    """(GPU name, compute capability, driver version) from nvidia-smi, when the tool is there."""
    if shutil.which("nvidia-smi") is None:
        return None, None, None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None, None
    if not out:
        return None, None, None
    parts = [p.strip() for p in out.splitlines()[0].split(",")]
    return (parts + [None, None, None])[0], (parts + [None, None])[1], (parts + [None, None, None])[2]


def _probe_torch() -> tuple[str | None, str | None, tuple[str, str] | None]:
    """(torch version, the CUDA version it was built with, (GPU name, compute capability) it sees).

    A CPU build says so in its version ("2.13.0+cpu"): it is read from the package metadata
    without importing torch (seconds on a loaded machine). Any other build is imported and asked.
    """
    version = package_version("torch")
    if version is None or version.endswith("+cpu"):
        return version, None, None
    try:
        import torch
    except ImportError:
        return None, None, None
    gpu = None
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        gpu = (torch.cuda.get_device_name(0), f"{major}.{minor}")
    return torch.__version__, torch.version.cuda, gpu


def diagnose() -> DoctorReport:
    """Probe this machine (never raises)."""
    from sbdeploy.backends.tensorrt._compat import NO_PYCUDA, NO_TENSORRT, require_tensorrt, tensorrt_available
    from sbdeploy.errors import BackendUnavailableError

    torch_version, torch_cuda, torch_gpu = _probe_torch()

    providers: list[str] = []
    ort_version = None
    try:
        import onnxruntime

        ort_version, providers = onnxruntime.__version__, list(onnxruntime.get_available_providers())
    except ImportError:
        pass

    trt_version = None
    trt_problem = NO_TENSORRT
    if tensorrt_available():
        try:
            trt_version = require_tensorrt()
        except BackendUnavailableError as error:  # installed but unusable (libraries missing, unsupported version)
            trt_problem = str(error)
    pycuda_version = package_version("pycuda") if importlib.util.find_spec("pycuda") is not None else None

    gpu_name, capability, driver = _nvidia_smi()
    if gpu_name is None and torch_gpu is not None:
        gpu_name, capability = torch_gpu
    has_gpu = gpu_name is not None

    no_gpu = "no NVIDIA GPU found (nvidia-smi and torch see none)"
    backends = [
        BackendStatus("torch", torch_version is not None, "PyTorch on the CPU" if torch_version else "torch is not installed"),
        BackendStatus(
            "torch-cuda",
            torch_gpu is not None,
            f"PyTorch on {torch_gpu[0]}" if torch_gpu else (f"torch {torch_version} is a CPU build" if torch_cuda is None else no_gpu),
        ),
        BackendStatus(
            "ort-cpu",
            "CPUExecutionProvider" in providers,
            "ONNX Runtime CPU provider (the embedded default)" if providers else "onnxruntime is not installed",
        ),
    ]
    for name, provider in (("ort-cuda", "CUDAExecutionProvider"), ("ort-trt", "TensorrtExecutionProvider")):
        if provider not in providers:
            reason = f"no {provider} in this onnxruntime; install onnxruntime-gpu on a machine with an NVIDIA GPU"
        elif not has_gpu:
            reason = f"{provider} is installed but {no_gpu}"
        else:
            reason = f"{provider} on {gpu_name}"
        backends.append(BackendStatus(name, provider in providers and has_gpu, reason))
    if trt_version is None:
        trt_reason = trt_problem
    elif pycuda_version is None:
        trt_reason = NO_PYCUDA
    elif not has_gpu:
        trt_reason = f"TensorRT {trt_version} is installed but {no_gpu}"
    else:
        trt_reason = f"TensorRT {trt_version} with pycuda on {gpu_name}"
    backends.append(BackendStatus("trt", trt_version is not None and pycuda_version is not None and has_gpu, trt_reason))

    return DoctorReport(
        python=platform.python_version(),
        platform=platform.platform(),
        torch=torch_version,
        torch_cuda=torch_cuda,
        onnx=package_version("onnx"),
        onnxruntime=ort_version,
        ort_providers=providers,
        tensorrt=trt_version,
        pycuda=pycuda_version,
        gpu_name=gpu_name,
        compute_capability=capability,
        driver=driver,
        backends=backends,
    )
