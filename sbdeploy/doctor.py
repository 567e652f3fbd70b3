"""``sbdeploy doctor``: what this machine has, and which backends can run on it.

Every probe is cheap and never raises: a missing library is reported as missing, with what to
install. The GPU, CUDA, TensorRT and pycuda answers are :func:`sbdeploy.environment.gpu_stack`'s.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import asdict, dataclass, field

from sbdeploy import environment, kernels
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
    gpu_found_by: str | None = None  # which probe saw the GPU: pycuda, cuda-python, torch or nvidia-smi
    kernels: str = ""  # the fused SB kernel library: built and its instruction set, or why not
    openvino: str | None = None  # None: not installed or unusable (the ov-cpu backend row says why)
    openvino_capabilities: list[str] = field(default_factory=list)  # the CPU plugin's OPTIMIZATION_CAPABILITIES
    backends: list[BackendStatus] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def diagnose() -> DoctorReport:
    """Probe this machine (never raises)."""
    stack = environment.gpu_stack()
    torch_version = package_version("torch")
    try:
        import onnxruntime

        ort_version, providers = onnxruntime.__version__, list(onnxruntime.get_available_providers())
    except ImportError:
        ort_version, providers = None, []
    no_gpu = environment.NO_GPU
    torch_cpu = "PyTorch on the CPU" if torch_version else "torch is not installed"
    if torch_version is None:
        torch_cuda_reason = "torch is not installed"
    elif stack.torch_sees_gpu:
        torch_cuda_reason = f"PyTorch on {stack.gpu_name}"
    elif stack.torch_cuda is None:
        torch_cuda_reason = f"torch {torch_version} is a CPU build" + (
            f" (this machine has {stack.gpu_name})" if stack.has_gpu else ""
        )
    else:
        torch_cuda_reason = f"torch {torch_version} (CUDA {stack.torch_cuda}) sees no GPU: {no_gpu}"
    ort_cpu = "ONNX Runtime CPU provider (the embedded default)" if providers else "onnxruntime is not installed"
    backends = [
        BackendStatus("torch", torch_version is not None, torch_cpu),
        BackendStatus("torch-cuda", bool(stack.torch_sees_gpu), torch_cuda_reason),
        BackendStatus("ort-cpu", "CPUExecutionProvider" in providers, ort_cpu),
    ]
    for name, provider in (("ort-cuda", "CUDAExecutionProvider"), ("ort-trt", "TensorrtExecutionProvider")):
        if provider not in providers:
            reason = f"no {provider} in this onnxruntime; install onnxruntime-gpu on a machine with an NVIDIA GPU"
        elif not stack.has_gpu:
            reason = f"{provider} is installed but {no_gpu}"
        else:
            reason = f"{provider} on {stack.gpu_name}"
        backends.append(BackendStatus(name, provider in providers and stack.has_gpu, reason))
    if stack.trt_ready:
        trt_reason = f"TensorRT {stack.tensorrt} with pycuda on {stack.gpu_name}"
    elif stack.tensorrt is None:
        trt_reason = stack.tensorrt_problem or environment.NO_TENSORRT
    elif stack.pycuda is None:
        trt_reason = stack.pycuda_problem or environment.NO_PYCUDA
    else:
        trt_reason = f"TensorRT {stack.tensorrt} is installed but {no_gpu}"
    backends.append(BackendStatus("trt", stack.trt_ready, trt_reason))
    from sbdeploy.backends import openvino  # numpy and openvino stay out of a light command's import

    ov_version, capabilities, ov_problem = openvino.probe()
    ov_reason = f"OpenVINO {ov_version} CPU plugin ({', '.join(capabilities)})" if ov_version else ov_problem
    backends.append(BackendStatus("ov-cpu", ov_version is not None, ov_reason))

    return DoctorReport(
        python=platform.python_version(),
        platform=platform.platform(),
        torch=torch_version,
        torch_cuda=stack.torch_cuda,
        onnx=package_version("onnx"),
        onnxruntime=ort_version,
        ort_providers=providers,
        tensorrt=stack.tensorrt,
        pycuda=package_version("pycuda") if importlib.util.find_spec("pycuda") is not None else None,
        gpu_name=stack.gpu_name,
        compute_capability=stack.compute_capability,
        driver=stack.driver,
        gpu_found_by=stack.gpu_found_by,
        kernels=kernels.status(),
        openvino=ov_version,
        openvino_capabilities=capabilities,
        backends=backends,
    )
