"""Training: the paper's recipe (:class:`TrainConfig`), the loop (:func:`train`, DDP under torchrun) and evaluation."""

from sbdeploy.train.config import TrainConfig
from sbdeploy.train.evaluate import Accuracy, EvalResult, evaluate_checkpoint, measure_accuracy
from sbdeploy.train.trainer import EpochStats, StepStats, TrainCallbacks, TrainResult, train

__all__ = [
    "Accuracy", "EpochStats", "EvalResult", "StepStats", "TrainCallbacks", "TrainConfig", "TrainResult",
    "evaluate_checkpoint", "measure_accuracy", "train",
]
