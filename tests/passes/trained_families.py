"""Small members of every SB block family (``tests/export/families.py``), briefly trained on digits, for int8 tests.

int8 accuracy means something only on trained weights: a random network's logits hardly
depend on its input (every CIFAR-family member predicts one class for all inputs), and
its int8 error, which a trained network's margins absorb, turns into flipped top-1 on
near ties (measured: the ImageNet families with random weights miss validate's int8 gate
in the baseline as much as in the SB network). So each family's small member is trained
for a few dozen Adam steps on the digits train split (replicated to 3 channels), which
makes its outputs depend on the image, and int8 is checked on the test split with
calibration on training images: the model's own input distribution.

Training is seeded and runs on one thread (several threads on a shared 2-core machine
slow it many-fold); it takes about 1 s (CIFAR-size families at 16x16) to 10 s (ImageNet
families at 32x32) on an idle core.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sbdeploy.data.digits import load_digits
from tests.export.families import FAMILIES

MEAN, STD = 0.25, 0.35
STEPS, BATCH, LR = 120, 32, 3e-3


@dataclass(frozen=True)
class TrainedFamily:
    """A trained family member with its digits images (normalized, 3 channels)."""

    model: nn.Module
    size: tuple[int, int]
    calibration: np.ndarray  # training images
    test: np.ndarray  # test images
    test_labels: np.ndarray
    accuracy: float  # top-1 of the PyTorch model on ``test``


def family_size(family: str) -> int:
    """Input size: 16 for the CIFAR-size families, 32 for the ImageNet ones (stride-4 stem)."""
    return 32 if family.startswith("imagenet") else 16


def _digits(split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_digits(split, size=size)
    return np.ascontiguousarray(((images - MEAN) / STD).repeat(3, axis=1), dtype=np.float32), labels


@functools.cache
def trained_family(family: str, *, test_images: int = 120, calibration_images: int = 128) -> TrainedFamily:
    """The family's small member (chessboard sampling) after :data:`STEPS` Adam steps on digits, in eval mode."""
    size = family_size(family)
    x, y = _digits("train", size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = FAMILIES[family][0]("chessboard")
            optimizer = torch.optim.Adam(model.parameters(), lr=LR)
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=STEPS)
            order = torch.randint(0, len(x), (STEPS, BATCH))
            xs, ys = torch.from_numpy(x), torch.from_numpy(y)
            model.train()
            for idx in order:
                loss = F.cross_entropy(model(xs[idx]), ys[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        model.eval()
        x_test, y_test = _digits("test", size)
        x_test, y_test = x_test[:test_images], y_test[:test_images]
        with torch.no_grad():
            accuracy = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    finally:
        torch.set_num_threads(threads)
    return TrainedFamily(model, (size, size), x[:calibration_images], x_test, y_test, accuracy)
