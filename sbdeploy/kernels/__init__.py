"""The fused SB operator for ONNX Runtime's CPU provider (``csrc/``, built by ``scripts/build_kernels.sh``).

The library registers op ``SBConv`` in domain :data:`DOMAIN`; a plain ONNX Runtime user registers it with
``SessionOptions.register_custom_ops_library(library_path())``.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

from sbdeploy.errors import BackendUnavailableError

DOMAIN = "sbdeploy.ai"
OP_TYPE = "SBConv"
OPSET_VERSION = 1
MIN_ONNXRUNTIME = "1.21"  # the C API headers the library is built against (API version 21)
LIBRARY = Path(__file__).with_name("libsbkernels.so")
BUILD_LOG = Path(__file__).with_name("build.txt")  # the build script's one line: what it built, or why not


def is_built() -> bool:
    """Whether the kernel library is built (then the ``ort-cpu`` rule writes fused SBs)."""
    return LIBRARY.is_file()


def library_path() -> Path:
    """The built kernel library; raises BackendUnavailableError when it is not built."""
    if not LIBRARY.is_file():
        raise BackendUnavailableError(
            f"sbdeploy's fused SB kernel library is not built ({LIBRARY} is missing); "
            "build it with `bash scripts/build_kernels.sh`"
        )
    return LIBRARY


def uses_kernels(model: Any) -> bool:
    """Whether an ``onnx.ModelProto`` has nodes in :data:`DOMAIN` (it then runs only with the library registered)."""
    return any(o.domain == DOMAIN for o in model.opset_import)


def status() -> str:
    """One line for ``sbdeploy doctor``: built, and the instruction set it runs here; or why not. Never raises."""
    if not is_built():
        try:
            why = BUILD_LOG.read_text().strip()
        except OSError:
            why = ""
        why = why if "not built" in why else "kernels: not built here"  # a success line outlives a deleted library
        return f"not built ({why}); ort-cpu files take the exact ONNX forms: `bash scripts/build_kernels.sh` builds it"
    try:
        probe = ctypes.CDLL(str(LIBRARY)).sbdeploy_kernel_isa
    except (OSError, AttributeError) as error:
        return f"{LIBRARY} cannot be loaded ({error}): rebuild it with `bash scripts/build_kernels.sh`"
    probe.restype = ctypes.c_char_p
    isa = (probe() or b"?").decode(errors="replace")
    return f"built ({LIBRARY.name}), instruction set {isa} here (SBDEPLOY_KERNEL_ISA caps it)"
