"""Backends: one runner per inference engine (torch, onnxruntime, tensorrt), one interface."""

from sbdeploy.backends.base import Feed, Runner, TensorSpec
from sbdeploy.backends.factory import RUNNERS, get_runner

__all__ = ["RUNNERS", "Feed", "Runner", "TensorSpec", "get_runner"]
