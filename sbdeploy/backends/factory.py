"""``get_runner(kind, artifact)``: one name per backend, for validate, bench and the CLI.

Runners are imported only when asked for, so the other backends never notice a missing TensorRT;
options are checked against the runner's signature, so only a wrong option is the user's error.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sbdeploy.backends.base import Runner
from sbdeploy.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

_TORCH, _ORT = "sbdeploy.backends.torch_runner:TorchRunner", "sbdeploy.backends.ort:OrtRunner"
# Backend name -> its runner class (module:Class; torch-* run an nn.Module or checkpoint folder, ort-* and ov-cpu an
# .onnx file, trt an .engine) and the options the name fixes.
RUNNERS: dict[str, tuple[str, dict[str, str]]] = {
    "torch": (_TORCH, {}),
    "torch-cuda": (_TORCH, {"device": "cuda"}),
    "ort-cpu": (_ORT, {"provider": "cpu"}),
    "ort-cuda": (_ORT, {"provider": "cuda"}),
    "ort-trt": (_ORT, {"provider": "tensorrt"}),
    "ov-cpu": ("sbdeploy.backends.openvino:OpenVinoRunner", {}),
    "trt": ("sbdeploy.backends.tensorrt.runner:TrtRunner", {}),
}


def get_runner(kind: str, artifact: nn.Module | str | Path, **opts: Any) -> Runner:
    """A (not yet active) runner of backend ``kind`` for ``artifact``; ``opts`` go to the runner's constructor."""
    if kind not in RUNNERS:
        raise ConfigError(f"unknown backend {kind!r}; choose from {', '.join(RUNNERS)}")
    path, fixed = RUNNERS[kind]
    module, _, name = path.partition(":")
    runner: type[Runner] = getattr(importlib.import_module(module), name)
    try:
        if set(opts) & set(fixed):
            raise TypeError(f"{kind} sets {', '.join(sorted(set(opts) & set(fixed)))} itself")
        inspect.signature(runner).bind(artifact, **fixed, **opts)
    except TypeError as error:
        raise ConfigError(f"backend {kind!r} does not take these options ({error})") from None
    return runner(artifact, **fixed, **opts)
