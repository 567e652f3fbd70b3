"""Training: the paper's recipe (:class:`TrainConfig`), the loop (:func:`train`, DDP under torchrun), evaluation,
distillation from a teacher's logits and BatchNorm recalibration."""

from sbdeploy.train.evaluate import measure_accuracy
from sbdeploy.train.recalibrate import calibration_images, recalibrate_bn
from sbdeploy.train.trainer import TrainCallbacks, TrainConfig, train

__all__ = ["TrainCallbacks", "TrainConfig", "calibration_images", "measure_accuracy", "recalibrate_bn", "train"]
