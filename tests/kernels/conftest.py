"""The kernel library, loaded once for the kernel tests (skipped when not built; see tests/conftest.py)."""

from __future__ import annotations

import ctypes

import pytest

from tests.conftest import kernel_library


@pytest.fixture(scope="module")
def library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(kernel_library()))  # the same loaded object ONNX Runtime registers: counters are shared
    lib.sbdeploy_kernel_macs.restype = ctypes.c_uint64
    lib.sbdeploy_kernel_last_isa.restype = ctypes.c_char_p
    lib.sbdeploy_kernel_isa.restype = ctypes.c_char_p
    return lib
