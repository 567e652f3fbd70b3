"""Training: the paper's recipe (:class:`TrainConfig`), the loop (:func:`train`, DDP under torchrun), evaluation,
distillation from a teacher's logits and BatchNorm recalibration."""

from sbdeploy.train.config import TrainConfig
from sbdeploy.train.distill import Distillation
from sbdeploy.train.evaluate import Accuracy, EvalResult, evaluate_checkpoint, measure_accuracy, open_fitting_source
from sbdeploy.train.recalibrate import Recalibration, calibration_images, recalibrate_bn
from sbdeploy.train.trainer import EpochStats, StepStats, TrainCallbacks, TrainResult, train

__all__ = [
    "Accuracy",
    "Distillation",
    "EpochStats",
    "EvalResult",
    "Recalibration",
    "StepStats",
    "TrainCallbacks",
    "TrainConfig",
    "TrainResult",
    "calibration_images",
    "evaluate_checkpoint",
    "measure_accuracy",
    "open_fitting_source",
    "recalibrate_bn",
    "train",
]
