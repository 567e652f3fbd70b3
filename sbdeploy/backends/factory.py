"""``get_runner(kind, artifact)``: one name per backend, for validate, bench and the CLI.

Runners are imported only when asked for, so the other backends never notice a missing
TensorRT. Options are checked against the runner's signature before it is made: a wrong
option is the user's error, a ``TypeError`` from inside the constructor is a bug.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sbdeploy.backends.base import Runner
from sbdeploy.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class RunnerKind:
    """What a backend runs, the runner class that runs it (``module:Class``) and the options the name fixes."""

    artifact: str
    runner: str
    fixed: dict[str, str] = field(default_factory=dict)

    def runner_class(self) -> type[Runner]:
        module, _, name = self.runner.partition(":")
        return getattr(importlib.import_module(module), name)


_TORCH, _ORT = "sbdeploy.backends.torch_runner:TorchRunner", "sbdeploy.backends.ort:OrtRunner"
RUNNERS: dict[str, RunnerKind] = {
    "torch": RunnerKind("nn.Module or checkpoint folder", _TORCH),
    "torch-cuda": RunnerKind("nn.Module or checkpoint folder", _TORCH, {"device": "cuda"}),
    "ort-cpu": RunnerKind(".onnx file", _ORT, {"provider": "cpu"}),
    "ort-cuda": RunnerKind(".onnx file", _ORT, {"provider": "cuda"}),
    "ort-trt": RunnerKind(".onnx file", _ORT, {"provider": "tensorrt"}),
    "trt": RunnerKind(".engine file", "sbdeploy.backends.tensorrt.runner:TrtRunner"),
}


def get_runner(kind: str, artifact: nn.Module | str | Path, **opts: Any) -> Runner:
    """A (not yet active) runner of backend ``kind`` for ``artifact``; ``opts`` go to the runner's constructor."""
    if kind not in RUNNERS:
        raise ConfigError(f"unknown backend {kind!r}; choose from {', '.join(RUNNERS)}")
    spec = RUNNERS[kind]
    runner = spec.runner_class()
    try:
        if set(opts) & set(spec.fixed):
            raise TypeError(f"{kind} sets {', '.join(sorted(set(opts) & set(spec.fixed)))} itself")
        inspect.signature(runner).bind(artifact, **spec.fixed, **opts)
    except TypeError as error:
        raise ConfigError(f"backend {kind!r} does not take these options ({error})") from None
    return runner(artifact, **spec.fixed, **opts)
