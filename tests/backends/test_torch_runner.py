"""The PyTorch runner: same numbers as calling the module, specs from a checkpoint, clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sbdeploy.backends.torch_runner import TorchRunner
from sbdeploy.errors import BackendUnavailableError, ConfigError, InputError
from tests.backends.conftest import save_sb_checkpoint


def test_matches_the_module(sb_model: nn.Module) -> None:
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with TorchRunner(sb_model) as runner:
        out = runner.infer({"input": x})
    with torch.no_grad():
        expected = sb_model(torch.from_numpy(x)).numpy()
    assert list(out) == ["logits"]
    np.testing.assert_array_equal(out["logits"], expected)


def test_checkpoint_folder_gives_specs(sb_model: nn.Module, tmp_path: Path) -> None:
    folder = save_sb_checkpoint(sb_model, tmp_path / "ckpt")
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with TorchRunner(folder) as runner:
        assert [s.shape for s in runner.input_specs()] == [(None, 3, 32, 32)]
        out = runner.infer({"input": x})["logits"]
        with pytest.raises(InputError, match="shape 2x3x30x30"):
            runner.infer({"input": x[:, :, :30, :30]})
    with torch.no_grad():
        np.testing.assert_allclose(out, sb_model(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-6)


def test_refuses_bad_feeds(sb_model: nn.Module) -> None:
    x = np.zeros((1, 3, 32, 32), np.float32)
    runner = TorchRunner(sb_model, input_shape=(None, 3, 32, 32))
    with pytest.raises(RuntimeError, match="with"):
        runner.infer({"input": x})
    with runner:
        with pytest.raises(InputError, match="dtype float64"):
            runner.infer({"input": x.astype(np.float64)})
        with pytest.raises(InputError, match="missing \\['input'\\]"):
            runner.infer({"images": x})
        with pytest.raises(InputError, match="shape 1x3x32"):
            runner.infer({"input": x[..., 0]})


def test_device_checks() -> None:
    with pytest.raises(ConfigError, match="device"):
        TorchRunner(nn.Identity(), device="tpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        with TorchRunner(nn.Identity(), device="cuda"):
            pass


def test_cuda_events_are_made_on_the_runners_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event belongs to the device current when it is made: for cuda:1 it must be made inside torch.cuda.device(1).

    No GPU here, so torch.cuda.device and torch.cuda.Event are stood in for by recorders
    (on a GPU, tests/backends/test_gpu_timing.py times the real thing).
    """
    current: list[str] = ["cuda:0"]
    made_on: list[str] = []

    class Device:
        def __init__(self, device: str) -> None:
            self.device, self.previous = device, current[0]

        def __enter__(self) -> None:
            current[0] = self.device

        def __exit__(self, *exc: object) -> None:
            current[0] = self.previous

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            made_on.append(current[0])

    monkeypatch.setattr(torch.cuda, "device", Device)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    runner = TorchRunner(nn.Identity(), device="cuda:1", input_shape=(None, 3, 4, 4))
    runner._model, runner.is_active = nn.Identity(), True  # activation needs a GPU; the timed call's set-up does not
    runner.timed_call({"input": np.zeros((1, 3, 4, 4), np.float32)})
    assert made_on == ["cuda:1", "cuda:1"]
