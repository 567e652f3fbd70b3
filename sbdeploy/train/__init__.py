"""Training: the paper's recipe (:class:`TrainConfig`), the loop (:func:`train`, DDP under torchrun), evaluation,
distillation from a teacher's logits and BatchNorm recalibration."""

from sbdeploy.train.evaluate import evaluate_checkpoint, measure_accuracy
from sbdeploy.train.recalibrate import calibration_images, recalibrate_bn
from sbdeploy.train.trainer import Distillation, TrainCallbacks, TrainConfig, train

__all__ = [
    "Distillation",
    "TrainCallbacks",
    "TrainConfig",
    "calibration_images",
    "evaluate_checkpoint",
    "measure_accuracy",
    "recalibrate_bn",
    "train",
]
