"""The fused SB operator for ONNX Runtime's CPU provider (``csrc/``, built by ``scripts/build_kernels.sh``).

The library registers op ``SBConv`` in domain :data:`DOMAIN`; a plain ONNX Runtime user registers it with
``SessionOptions.register_custom_ops_library(library_path())``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sbdeploy.errors import BackendUnavailableError

DOMAIN = "sbdeploy.ai"
OP_TYPE = "SBConv"
OPSET_VERSION = 1
MIN_ONNXRUNTIME = "1.21"  # the C API headers the library is built against (API version 21)
LIBRARY = Path(__file__).with_name("libsbkernels.so")


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
