"""Knowledge distillation from a teacher's logits (Hinton et al. 2015), for fine-tuning a converted network.

The student's loss is ``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``;
the ``T^2`` keeps the soft term's gradients on the scale of the hard one. The teacher
runs in eval mode without gradient on the same (augmented) batch as the student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.errors import ConfigError


@dataclass(frozen=True)
class Distillation:
    """A teacher and the weights of its soft targets."""

    teacher: nn.Module = field(compare=False)
    alpha: float = 0.5  # weight of the soft (teacher) term; 1 - alpha goes to the labels
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"distillation alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ConfigError(f"distillation temperature must be > 0, got {self.temperature}")

    @torch.no_grad()
    def targets(self, x: Tensor) -> Tensor:
        """The teacher's logits for a batch (eval mode, no gradient)."""
        self.teacher.eval()
        return self.teacher(x)

    def loss(self, logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> Tensor:
        """The blended loss of a batch."""
        t = self.temperature
        soft = F.kl_div(
            F.log_softmax(logits / t, dim=1),
            F.log_softmax(teacher_logits / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (1 - self.alpha) * F.cross_entropy(logits, labels) + self.alpha * t * t * soft

    def to_dict(self) -> dict[str, Any]:
        """The settings, as recorded in a checkpoint's recipe."""
        return {"alpha": self.alpha, "temperature": self.temperature}
