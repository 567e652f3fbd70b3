"""The training loop: the loss falls, a seed repeats a CPU run, a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sbdeploy.checkpoint import CONFIG_FILE, load_checkpoint, read_weights
from sbdeploy.data import open_source
from sbdeploy.errors import CheckpointError, ConfigError
from sbdeploy.train import TrainCallbacks, TrainConfig, train
from sbdeploy.train.trainer import STATE_FILE, augment

TINY = TrainConfig(epochs=3, batch_size=32, lr=0.05, max_steps_per_epoch=4, seed=3)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return open_source("synthetic", size=8)


def test_loss_falls_and_checkpoint_loads(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = train("cifar_resnet20", data, tmp_path / "ckpt", TINY, device="cpu")
    losses = [h.train_loss for h in result.history]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0], losses
    assert result.history[-1].train_accuracy > 0.3  # chance is 0.1
    assert [h.lr for h in result.history] == pytest.approx([0.05, 0.005, 0.0005])  # drops at 50% and 75%
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.config.metrics["test_accuracy"] == pytest.approx(result.test_accuracy, abs=1e-5)
    assert not (tmp_path / "ckpt" / STATE_FILE).exists()


def test_same_seed_repeats_on_cpu(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=3, seed=5, pad=2, flip=True)
    for name in ("a", "b"):
        train("cifar_resnet20_sb", data, tmp_path / name, config, device="cpu")
    train("cifar_resnet20_sb", data, tmp_path / "c", TrainConfig(**{**config.__dict__, "seed": 6}), device="cpu")
    a, b, c = (read_weights(tmp_path / n / "model.safetensors") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class _Crash(TrainCallbacks):
    """Stops the run after the first epoch was written, like a killed job."""

    def on_epoch_end(self, stats) -> None:  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt


def test_resume_continues_exactly(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(epochs=2, batch_size=32, max_steps_per_epoch=3, pad=1, flip=True)
    whole = train("cifar_resnet20", data, tmp_path / "whole", config, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train("cifar_resnet20", data, tmp_path / "cut", config, device="cpu", callbacks=_Crash())
    assert (tmp_path / "cut" / STATE_FILE).exists()
    assert json.loads((tmp_path / "cut" / CONFIG_FILE).read_text())["metrics"]["epochs"] == 1
    with pytest.raises(ConfigError, match="--resume"):
        train("cifar_resnet20", data, tmp_path / "cut", config, device="cpu")
    with pytest.raises(CheckpointError, match="other settings"):
        train(
            "cifar_resnet20",
            data,
            tmp_path / "cut",
            TrainConfig(**{**config.__dict__, "lr": 0.2}),
            resume=True,
            device="cpu",
        )
    resumed = train("cifar_resnet20", data, tmp_path / "cut", config, resume=True, device="cpu")
    assert resumed.start_epoch == 1 and len(resumed.history) == 2
    a, b = read_weights(tmp_path / "whole" / "model.safetensors"), read_weights(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test_accuracy == whole.test_accuracy


def test_augment_pads_crops_and_flips() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, 6, 6)
    assert torch.equal(augment(x, 0, False, gen), x)
    flipped = augment(x, 0, True, gen)
    same = [torch.equal(f, o) for f, o in zip(flipped, x)]
    mirrored = [torch.equal(f, o.flip(2)) for f, o in zip(flipped, x)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54
    cropped = augment(x, 2, False, gen)
    assert cropped.shape == x.shape and not torch.equal(cropped, x)
    # each crop is a window of the reflect-padded image
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(8):
        assert any(
            torch.equal(cropped[i], padded[i, :, dy : dy + 6, dx : dx + 6]) for dy in range(5) for dx in range(5)
        )


def test_recipe_defaults_are_the_papers() -> None:
    c = TrainConfig()
    assert (c.lr, c.momentum, c.nesterov, c.weight_decay, c.milestones, c.gamma) == (
        0.1,
        0.9,
        True,
        1e-4,
        (0.5, 0.75),
        0.1,
    )
    assert TrainConfig(epochs=4).milestone_epochs() == (2, 3)
    with pytest.raises(ConfigError):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError):
        TrainConfig(milestones=(1.5,))


def test_sampling_only_for_sb_networks(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="SB networks only"):
        train("cifar_resnet20", data, tmp_path, TINY, sampling="single")
