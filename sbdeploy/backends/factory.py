"""``get_runner(kind, artifact)``: one name per backend, for validate, bench and the CLI.

Runners are imported only when asked for, so naming ``trt`` on a machine without
TensorRT fails with a clear :class:`BackendUnavailableError` when the runner starts,
and the other backends never notice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sbdeploy.backends.base import Runner
from sbdeploy.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


def _torch(artifact: Any, **opts: Any) -> Runner:
    from sbdeploy.backends.torch_runner import TorchRunner

    return TorchRunner(artifact, **opts)


def _torch_cuda(artifact: Any, **opts: Any) -> Runner:
    from sbdeploy.backends.torch_runner import TorchRunner

    return TorchRunner(artifact, device="cuda", **opts)


def _ort(provider: str) -> Callable[..., Runner]:
    def make(artifact: Any, **opts: Any) -> Runner:
        from sbdeploy.backends.ort import OrtRunner

        return OrtRunner(artifact, provider=provider, **opts)

    return make


def _trt(artifact: Any, **opts: Any) -> Runner:
    from sbdeploy.backends.tensorrt.runner import TrtRunner

    return TrtRunner(artifact, **opts)


# name -> (what the artifact is, factory)
RUNNERS: dict[str, tuple[str, Callable[..., Runner]]] = {
    "torch": ("nn.Module or checkpoint folder", _torch),
    "torch-cuda": ("nn.Module or checkpoint folder", _torch_cuda),
    "ort-cpu": (".onnx file", _ort("cpu")),
    "ort-cuda": (".onnx file", _ort("cuda")),
    "ort-trt": (".onnx file", _ort("tensorrt")),
    "trt": (".engine file", _trt),
}


def get_runner(kind: str, artifact: nn.Module | str | Path, **opts: Any) -> Runner:
    """A (not yet active) runner of backend ``kind`` for ``artifact``.

    Args:
        kind: one of :data:`RUNNERS` (``torch``, ``torch-cuda``, ``ort-cpu``, ``ort-cuda``, ``ort-trt``, ``trt``).
        artifact: what that backend runs: a module or checkpoint folder for torch, an ONNX file
            for ort-*, an engine file for trt.
        **opts: keyword options of the runner's constructor (e.g. ``threads`` for ort-*).
    """
    if kind not in RUNNERS:
        raise ConfigError(f"unknown backend {kind!r}; choose from {', '.join(RUNNERS)}")
    try:
        return RUNNERS[kind][1](artifact, **opts)
    except TypeError as error:
        raise ConfigError(f"backend {kind!r} does not take these options ({error})") from None
