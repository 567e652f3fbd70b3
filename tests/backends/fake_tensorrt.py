"""A stand-in for the ``tensorrt`` module, for the CPU tests of code that cannot meet the real one here.

TensorRT needs an NVIDIA GPU and NVIDIA's package index, so the builder's and the
runtime's calls are exercised against this module: it implements, with the real names
and argument order (tests/backends/test_fake_tensorrt.py checks every name against the
10.13 and 11.4 stubs), the part of the API that ``sbdeploy.backends.tensorrt`` calls,
and records what it was asked: flags set and cleared, the path given to the parser, the
order of ``engine_host_code_allowed`` and ``deserialize_cuda_engine``. What the engine
inspector says comes from the fixtures of NVIDIA's documented JSON (tests/data/tensorrt).
It computes nothing; the real build is tested under ``-m gpu``.
"""

from __future__ import annotations

import enum
import types
from typing import Any

import numpy as np

BuilderFlag = enum.IntEnum("BuilderFlag", {"TF32": 7, "VERSION_COMPATIBLE": 14, "FP16": 0})
NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})
LayerInformationFormat = enum.IntEnum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})
TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1})


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class Dims(tuple):  # type: ignore[type-arg]
    def __new__(cls, shape: Any) -> Dims:
        return super().__new__(cls, tuple(shape))


def nptype(dtype: Any) -> type:
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[dtype]


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name, self.shape, self.dtype = name, Dims(shape), DataType.FLOAT


class _Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs = [_Tensor("input", (-1, 3, 32, 32))]
        self.outputs = [_Tensor("logits", (-1, 10))]

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]

    def get_output(self, index: int) -> _Tensor:
        return self.outputs[index]


class _ParserError:
    def __init__(self, node: int, name: str, op: str, desc: str) -> None:
        self._values = (node, name, op, desc)

    def node(self) -> int:
        return self._values[0]

    def node_name(self) -> str:
        return self._values[1]

    def node_operator(self) -> str:
        return self._values[2]

    def desc(self) -> str:
        return self._values[3]


class OnnxParser:
    errors: list[_ParserError] = []  # set by a test to make parse() fail

    def __init__(self, network: _Network, logger: ILogger) -> None:
        self.network, self.calls = network, STATE.setdefault("parse", [])

    def parse(self, model: bytes, path: str | None = None) -> bool:
        self.calls.append((model, path))
        return not self.errors

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, index: int) -> _ParserError:
        return self.errors[index]


class _TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data or b"fresh timing cache"

    def serialize(self) -> bytes:
        return self.data


class _Profile:
    def set_shape(self, name: str, min: Dims, opt: Dims, max: Dims) -> None:  # noqa: A002 (TensorRT's names)
        STATE.setdefault("profile", {})[name] = (tuple(min), tuple(opt), tuple(max))


class _Config:
    def __init__(self) -> None:
        self.flags = {BuilderFlag.TF32}  # TensorRT's default
        self.cache: _TimingCache | None = None
        self.builder_optimization_level = 3
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.progress_monitor: Any = None
        STATE["config"] = self

    def set_flag(self, flag: int) -> None:
        self.flags.add(BuilderFlag(flag))

    def clear_flag(self, flag: int) -> None:
        self.flags.discard(BuilderFlag(flag))

    def get_flag(self, flag: int) -> bool:
        return BuilderFlag(flag) in self.flags

    def set_memory_pool_limit(self, pool: int, size: int) -> None:
        STATE["workspace"] = size

    def add_optimization_profile(self, profile: _Profile) -> int:
        return 0

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        return _TimingCache(data)

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self.cache


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> _Network:
        return _Network(flags)

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes:
        return (b"VC-PLAN " if BuilderFlag.VERSION_COMPATIBLE in config.flags else b"PLAN ") + bytes(
            str(sorted(config.flags)), "ascii"
        )


class _Inspector:
    def __init__(self) -> None:
        self.execution_context: Any = None

    def get_engine_information(self, format: int) -> str:  # noqa: A002 (TensorRT's name)
        return str(STATE["engine_information"])


class _Context:
    def set_input_shape(self, name: str, shape: Dims) -> bool:
        STATE.setdefault("input_shapes", []).append((name, tuple(shape)))
        return True


class _Engine:
    def create_execution_context(self) -> _Context:
        return _Context()

    def create_engine_inspector(self) -> _Inspector:
        return _Inspector()


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, plan: bytes) -> _Engine | None:
        """None, with TensorRT's log line, for a version-compatible plan unless host code is allowed (and for junk)."""
        STATE.setdefault("deserialized", []).append(self.engine_host_code_allowed)
        if plan.startswith(b"VC-PLAN") and not self.engine_host_code_allowed:
            self.logger.log(
                ILogger.Severity.ERROR,
                "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (engine contains host code)",
            )
            return None
        return _Engine() if plan.startswith((b"PLAN", b"VC-PLAN")) else None


STATE: dict[str, Any] = {}
"""What the stand-in was asked, reset by :func:`install`."""


def install(version: str, engine_information: str) -> types.ModuleType:
    """This module, reset, as TensorRT ``version`` whose inspector answers ``engine_information``."""
    import sys

    module = sys.modules[__name__]
    STATE.clear()
    STATE["engine_information"] = engine_information
    OnnxParser.errors = []
    module.__version__ = version  # type: ignore[attr-defined]
    return module
