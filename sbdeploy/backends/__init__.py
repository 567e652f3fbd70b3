"""Backends: one runner per inference engine (torch, onnxruntime, tensorrt), one interface."""

from sbdeploy.backends.base import Feed, Runner, TensorSpec

__all__ = ["Feed", "Runner", "TensorSpec"]
