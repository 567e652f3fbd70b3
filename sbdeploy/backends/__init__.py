"""Backends: one runner per inference engine (torch, onnxruntime, tensorrt), one interface."""

from sbdeploy.backends.factory import RUNNERS, get_runner

__all__ = ["RUNNERS", "get_runner"]
