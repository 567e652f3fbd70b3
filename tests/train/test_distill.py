"""Distillation loss, and the trainer's fine-tune hooks: start weights, teacher, provenance in the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sbdeploy import create_model
from sbdeploy.checkpoint import CONFIG_FILE, read_weights
from sbdeploy.data import open_source
from sbdeploy.errors import CheckpointError, ConfigError
from sbdeploy.train.trainer import Distillation, TrainConfig, train


def test_loss_blends_labels_and_soft_targets() -> None:
    torch.manual_seed(0)
    logits, teacher, labels = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    net = torch.nn.Identity()
    assert torch.allclose(Distillation(net, alpha=0.0).loss(logits, teacher, labels), F.cross_entropy(logits, labels))
    assert float(Distillation(net, alpha=1.0).loss(logits, logits, labels)) == pytest.approx(0.0, abs=1e-6)
    t = 3.0
    soft = (F.softmax(teacher / t, 1) * (F.log_softmax(teacher / t, 1) - F.log_softmax(logits / t, 1))).sum(1).mean()
    blended = Distillation(net, alpha=0.25, temperature=t).loss(logits, teacher, labels)
    assert torch.allclose(blended, 0.75 * F.cross_entropy(logits, labels) + 0.25 * t * t * soft, atol=1e-6)
    with pytest.raises(ConfigError):
        Distillation(net, alpha=1.5)
    with pytest.raises(ConfigError):
        Distillation(net, temperature=0.0)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return open_source("synthetic", size=8)


def test_fine_tune_starts_from_the_given_weights_and_records_its_origin(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(42)
    start = create_model("cifar_resnet20", num_classes=10, in_chans=3).state_dict()
    teacher = create_model("cifar_resnet20", num_classes=10, in_chans=3).eval()
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-9, weight_decay=0.0, max_steps_per_epoch=1)
    origin = {"sbify": {"source": "somewhere", "source_sha256": "ab" * 32}}
    train(
        "cifar_resnet20",
        data,
        tmp_path / "ft",
        config,
        device="cpu",
        init_state=start,
        distill=Distillation(teacher, alpha=0.3, temperature=2.0),
        provenance=origin,
    )
    weights = read_weights(tmp_path / "ft" / "model.safetensors")
    convs = [k for k in start if k.endswith("conv1.weight")]
    assert all(
        torch.allclose(weights[k], start[k], atol=1e-6) for k in convs
    )  # lr ~0: the start weights, not a fresh init
    train("cifar_resnet20", data, tmp_path / "fresh", config, device="cpu")
    fresh = read_weights(tmp_path / "fresh" / "model.safetensors")
    assert not all(torch.allclose(fresh[k], start[k], atol=1e-3) for k in convs)
    recipe = json.loads((tmp_path / "ft" / CONFIG_FILE).read_text())["training"]
    assert recipe["distill"] == {"alpha": 0.3, "temperature": 2.0} and recipe["sbify"] == origin["sbify"]
    assert "distill" not in json.loads((tmp_path / "fresh" / CONFIG_FILE).read_text())["training"]


def test_resume_refuses_another_origin(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.train.test_trainer import _Crash

    config = TrainConfig(epochs=2, batch_size=16, max_steps_per_epoch=1)
    with pytest.raises(KeyboardInterrupt):
        train(
            "cifar_resnet20",
            data,
            tmp_path / "cut",
            config,
            device="cpu",
            callbacks=_Crash(),
            provenance={"sbify": {"source": "a"}},
        )
    with pytest.raises(CheckpointError, match="other settings"):
        train(
            "cifar_resnet20",
            data,
            tmp_path / "cut",
            config,
            device="cpu",
            resume=True,
            provenance={"sbify": {"source": "b"}},
        )
    done = train(
        "cifar_resnet20",
        data,
        tmp_path / "cut",
        config,
        device="cpu",
        resume=True,
        provenance={"sbify": {"source": "a"}},
    )
    assert done.start_epoch == 1
