"""The training recipe as a frozen dataclass; the defaults are the paper's CIFAR recipe.

SGD with Nesterov momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by 10 at
50% and 75% of training, batch 128, 4-pixel reflect padding + random crop + horizontal
flip (the padding and flip default to what the data source asks for: no flips for digits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sbdeploy.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train; every field is a CLI option of ``sbdeploy train``."""

    epochs: int = 30
    batch_size: int = 128  # global batch: split evenly over the processes of a torchrun job
    lr: float = 0.1  # initial learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training where the LR is multiplied by gamma
    gamma: float = 0.1
    pad: int | None = None  # reflect padding before the random crop; None: the source's default (4 for CIFAR)
    flip: bool | None = None  # random horizontal flip; None: the source's default (on for CIFAR)
    seed: int = 0  # weights, shuffling and augmentation: the same seed repeats a CPU run exactly
    sync_bn: bool = False  # convert BatchNorm to SyncBatchNorm under DDP (off: each replica's own BN)
    eval_batch_size: int = 256
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke tests)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (not self.nesterov or self.momentum > 0, "Nesterov momentum needs momentum > 0"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (all(0 < m < 1 for m in self.milestones), f"milestones must be fractions in (0, 1), got {self.milestones}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.pad is None or self.pad >= 0, f"pad must be >= 0, got {self.pad}"),
            (self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1, "max steps per epoch must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of a (0-based) epoch: ``lr * gamma ** (milestones passed)``."""
        passed = sum(epoch >= e for e in self.milestone_epochs())
        return self.lr * self.gamma**passed

    def milestone_epochs(self) -> tuple[int, ...]:
        """0-based epochs at which the learning rate drops (milestones that fall on epoch 0 are skipped)."""
        return tuple(e for e in (int(m * self.epochs) for m in self.milestones) if e > 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data
