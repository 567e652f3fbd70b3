"""The PyTorch runner: the training code itself, in eval mode, on the CPU or a CUDA device.

The reference every other backend is compared against, with the ONNX export's names (``input``, ``logits``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from sbdeploy.backends.base import Feed, Runner, TensorSpec, TimedCall
from sbdeploy.checkpoint import load_checkpoint
from sbdeploy.errors import BackendUnavailableError, ConfigError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class TorchRunner(Runner):
    """Runs a module or checkpoint folder in eval mode on ``cpu`` or ``cuda[:N]`` (default input: a checkpoint's)."""

    def __init__(
        self,
        model: nn.Module | str | Path,
        *,
        device: str = "cpu",
        input_shape: tuple[int | None, ...] | None = None,
    ) -> None:
        super().__init__()
        if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
            raise ConfigError(f"torch runner: device must be 'cpu' or 'cuda', got {device!r}")
        self.name = f"torch-{device.split(':')[0]}"
        self.device = device
        self._source = model
        self._input_shape = input_shape
        self._model: nn.Module | None = None

    def _activate(self) -> None:
        if self.device != "cpu" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"torch runner: device {self.device!r} asked but this torch ({torch.__version__}) sees no CUDA device; "
                "use device='cpu' (backend 'torch')"
            )
        if isinstance(self._source, nn.Module):
            model = self._source
        else:
            checkpoint = load_checkpoint(self._source)
            model = checkpoint.model
            if self._input_shape is None:
                self._input_shape = (None, checkpoint.config.in_chans, *checkpoint.config.input_size)
        self._model = model.eval().to(self.device)

    def input_specs(self) -> list[TensorSpec]:
        shape = self._input_shape if self._input_shape is not None else (None, None, None, None)
        return [TensorSpec(INPUT_NAME, tuple(shape), np.dtype(np.float32))]

    def _infer(self, feed: Feed) -> Feed:
        assert self._model is not None
        with torch.inference_mode():
            logits = self._model(torch.from_numpy(np.ascontiguousarray(feed[INPUT_NAME])).to(self.device))
        return {OUTPUT_NAME: logits.float().cpu().numpy()}

    def timed_call(self, feed: Feed) -> TimedCall:
        """One end-to-end run (H2D, forward, D2H) per call; on CUDA it returns the forward's event time in ms."""
        if self.device == "cpu":
            return super().timed_call(feed)
        self.check_call(feed, "timed_call")
        assert self._model is not None
        model, host = self._model, torch.from_numpy(np.ascontiguousarray(feed[INPUT_NAME]))
        with torch.cuda.device(self.device):  # an event belongs to the device current when it is made
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run() -> float:
            with torch.inference_mode(), torch.cuda.device(self.device):
                x = host.to(self.device)
                start.record()
                logits = model(x)
                end.record()
                logits.float().cpu()  # the D2H copy waits for the forward (same stream)
            end.synchronize()
            return float(start.elapsed_time(end))

        return run

    def _deactivate(self) -> None:
        self._model = None
        if self.device != "cpu" and torch.cuda.is_available():
            torch.cuda.empty_cache()
