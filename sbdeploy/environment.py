"""What this machine is: CPU, threads, library versions, GPU. Recorded in every report.

Only cheap look-ups; TensorRT and pycuda are probed without failing when absent.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import asdict, dataclass, field


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
    gpu: str | None  # first CUDA device as torch sees it
    packages: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


PACKAGES = ("onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "pycuda", "numpy", "sbdeploy")


def collect_environment() -> Environment:
    """Describe this machine (cheap: no GPU context is created unless torch has CUDA)."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} (sm_{props.major}{props.minor})"
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        torch_cuda=torch.version.cuda,
        gpu=gpu,
        packages={name: package_version(name) for name in PACKAGES},
    )
