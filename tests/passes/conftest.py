"""A trained SB network on real images (scikit-learn digits) for the precision-pass tests.

Uses a committed digits checkpoint under ``models/`` when one exists (trained by
``sbdeploy train``) or the folder named by ``SBDEPLOY_TEST_DIGITS_CHECKPOINT``; otherwise trains ``cifar_resnet20_sb`` (1 input channel) on the
digits train split at 16x16 for 4 epochs (about 98-99% test accuracy; about a minute on 2 idle cores) and saves it as a
checkpoint folder. int8/fp16 accuracy is only meaningful on trained weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sbdeploy.checkpoint import CheckpointConfig, read_config, save_checkpoint
from sbdeploy.data.digits import CLASS_NAMES, load_digits

REPO = Path(__file__).resolve().parents[2]
SIZE = 16
MEAN, STD = (0.25,), (0.35,)


def _committed_checkpoint() -> Path | None:
    given = os.environ.get("SBDEPLOY_TEST_DIGITS_CHECKPOINT")  # reuse one trained earlier
    if given:
        return Path(given)
    shipped = REPO / "models" / "digits_resnet20_sb"  # trained by `sbdeploy train` (branch train)
    for config in [shipped / "config.json", *sorted((REPO / "models").glob("*/config.json"))]:
        if not config.is_file():
            continue
        cfg = read_config(config.parent)
        if cfg.arch.endswith("_sb") and cfg.in_chans == 1 and "digits" in cfg.dataset:
            return config.parent
    return None


def _train(folder: Path) -> Path:
    from sbdeploy.models import create_model

    torch.manual_seed(0)
    images, labels = load_digits("train", size=SIZE)
    x = (torch.from_numpy(images) - MEAN[0]) / STD[0]
    y = torch.from_numpy(labels)
    model = create_model("cifar_resnet20_sb", num_classes=10, in_chans=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    epochs, batch = 4, 64
    steps = epochs * ((len(x) + batch - 1) // batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    config = CheckpointConfig(
        arch="cifar_resnet20_sb",
        options={"num_classes": 10, "in_chans": 1, "sampling": "chessboard"},
        input_size=(SIZE, SIZE),
        mean=MEAN,
        std=STD,
        class_names=CLASS_NAMES,
        dataset="digits (test fixture)",
    )
    return save_checkpoint(folder, model, config)


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _committed_checkpoint() or _train(tmp_path_factory.mktemp("digits") / "cifar_resnet20_sb_digits")


def digits_inputs(config: CheckpointConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalized digits images at the checkpoint's size, and their labels."""
    images, labels = load_digits(split, size=config.input_size[0])
    mean = np.asarray(config.mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(config.std, dtype=np.float32)[None, :, None, None]
    return ((images - mean) / std).astype(np.float32), labels
