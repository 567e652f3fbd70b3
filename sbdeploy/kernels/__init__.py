"""The fused SB operator for ONNX Runtime's CPU provider (``csrc/``, built by ``scripts/build_kernels.sh``).

The library registers op ``SBConv`` in domain :data:`DOMAIN`; a plain ONNX Runtime user registers it with
``SessionOptions.register_custom_ops_library(library_path())``.
"""

from __future__ import annotations

from pathlib import Path

from sbdeploy.errors import BackendUnavailableError

DOMAIN = "sbdeploy.ai"
LIBRARY = Path(__file__).with_name("libsbkernels.so")


def library_path() -> Path:
    """The built kernel library; raises BackendUnavailableError when it is not built."""
    if not LIBRARY.is_file():
        raise BackendUnavailableError(
            f"sbdeploy's fused SB kernel library is not built ({LIBRARY} is missing); "
            "build it with `bash scripts/build_kernels.sh`"
        )
    return LIBRARY
