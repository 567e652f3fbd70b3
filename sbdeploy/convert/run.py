"""``sbdeploy sbify`` as a library call: baseline checkpoint -> SB checkpoint folder.

:func:`sbify_checkpoint` loads a baseline checkpoint, maps its weights onto the matching
registered SB network (:func:`sbdeploy.convert.sbify`), recalibrates the BN statistics on
training images, optionally fine-tunes with the training code's recipe (distilled from
the baseline's logits if asked) through :func:`sbdeploy.train.train`, and writes a
checkpoint folder like ``sbdeploy train`` does. The accuracy after each stage, with its
wall and CPU time, is measured on the test split and recorded in ``config.json``
(``training.sbify``, beside the source checkpoint's path and sha256).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbdeploy.checkpoint import WEIGHTS_FILE, CheckpointConfig, load_checkpoint, read_config, save_checkpoint
from sbdeploy.convert.mapping import BLOCK_MAPS, convert, sb_counterpart
from sbdeploy.data import ImageData
from sbdeploy.errors import ConfigError
from sbdeploy.models import create_model
from sbdeploy.nn.sampling import resolve_sampling
from sbdeploy.train import (
    Distillation,
    TrainCallbacks,
    TrainConfig,
    TrainResult,
    calibration_images,
    measure_accuracy,
    recalibrate_bn,
    train,
)
from sbdeploy.train.distributed import pick_device
from sbdeploy.train.recalibrate import normalized_batches

FIT_IMAGES = 512
"""Calibration images the bottleneck fit uses at most: its sums settle long before (each image gives H*W positions)."""

FINE_TUNE = TrainConfig(epochs=1, lr=0.01)
"""The fine-tune's default recipe: the training recipe at a tenth of its learning rate (the weights are trained)."""


@dataclass(frozen=True)
class Stage:
    """One step of the conversion and the network's test accuracy after it."""

    name: str  # "baseline", "mapped", "recalibrated", "fine-tuned"
    test_accuracy: float | None  # None without data
    time_s: float  # wall time of the step (measuring excluded)
    cpu_s: float  # CPU time of this process during the step, all threads

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class SbifyResult:
    """What :func:`sbify_checkpoint` wrote and measured."""

    out: Path
    source: Path
    source_sha256: str
    arch: str  # the SB network written
    baseline_arch: str
    sampling: str
    stages: tuple[Stage, ...]
    bottleneck_error: (
        float | None
    )  # mean relative error of the fitted linear SBs on their fit inputs; None: no bottleneck
    fine_tune: TrainResult | None


class SbifyCallbacks(TrainCallbacks):
    """Progress hooks: the stages, the recalibration batches, then the fine-tune's epochs (TrainCallbacks)."""

    def on_stage(self, name: str) -> None:
        """A stage (``mapping``, ``recalibration``, ``fine-tune``, ``evaluation``) begins."""

    def on_calibration_batch(self, done: int, total: int) -> None:
        """A recalibration batch finished."""


class _Clock:
    """Wall and process CPU time since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stage(self, name: str, accuracy: float | None) -> Stage:
        return Stage(name, accuracy, time.perf_counter() - self.wall, time.process_time() - self.cpu)


def sbify_checkpoint(
    baseline: str | Path,
    out: str | Path,
    *,
    data: ImageData | None,
    sampling: str = "chessboard",
    recalibrate: bool = True,
    calibration_count: int | None = 2048,
    bottleneck_fit: str = "calibration",
    fine_tune: TrainConfig | None = None,
    distill: tuple[float, float] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "cpu",
    callbacks: SbifyCallbacks | None = None,
) -> SbifyResult:
    """Write the SB checkpoint of a baseline checkpoint to ``out``.

    Args:
        baseline: a baseline checkpoint folder (a zoo baseline, or a torchvision-layout
            ResNet brought in by ``sbdeploy import``).
        out: the SB checkpoint folder to write.
        data: training images for recalibration, the bottleneck fit and the fine-tune,
            and test images for the accuracies (``open_fitting_source``); None: mapping
            only (bottleneck blocks then fitted data-free).
        sampling: the SB sampling set.
        recalibrate: recalibrate BN statistics on ``calibration_count`` training images.
        calibration_count: training images for recalibration and the bottleneck fit (None: all).
        bottleneck_fit: fit bottleneck blocks' linear SBs on the ``calibration`` images run
            through the baseline, or on Gaussian ``noise`` (data-free; always so without data).
        fine_tune: the recipe of a fine-tune after the recalibration; None: none.
        distill: (alpha, temperature) to distil the fine-tune from the baseline's logits.
        resume: continue an interrupted fine-tune in ``out`` (same options).
        overwrite: replace a checkpoint already in ``out``.
        device: ``cpu``, ``cuda`` or ``auto``.
        callbacks: progress hooks.

    Raises:
        CheckpointError: the baseline folder is missing or broken, or ``out`` cannot be resumed.
        ConfigError: the baseline is an SB network or has no SB twin; options that need
            data without data; ``out`` holds a checkpoint and neither resume nor overwrite was asked.
        DataError: ``data`` does not fit the baseline.
    """
    hooks = callbacks or SbifyCallbacks()
    sampling = resolve_sampling(sampling)
    source = Path(baseline)
    out = Path(out)
    dev = pick_device(device)
    ckpt = load_checkpoint(source)
    ckpt.model.to(dev)
    cfg = ckpt.config
    arch = sb_counterpart(cfg.arch)
    if bottleneck_fit not in ("calibration", "noise"):
        raise ConfigError(f"bottleneck fit must be calibration or noise, got {bottleneck_fit!r}")
    if data is None and (recalibrate or fine_tune is not None):
        raise ConfigError("BN recalibration and fine-tuning need training images: give a data SOURCE, or skip both")
    if distill is not None and fine_tune is None:
        raise ConfigError("distillation applies to the fine-tune: give a number of fine-tune epochs")
    if resume and fine_tune is None:
        raise ConfigError("--resume continues an interrupted fine-tune; nothing to resume without fine-tune epochs")
    if not resume and (out / WEIGHTS_FILE).exists() and not overwrite:
        raise ConfigError(
            f"{out} already holds a checkpoint; pass --resume to continue it or --overwrite to replace it"
        )
    if data is not None:
        data = dataclasses.replace(data, mean=cfg.mean, std=cfg.std)  # the baseline's weights expect its normalization
    calibration = calibration_images(data, calibration_count) if data is not None else None
    has_bottleneck = any(BLOCK_MAPS[type(m)].deconv_from is None for m in ckpt.model.modules() if type(m) in BLOCK_MAPS)
    settings: dict[str, Any] = {
        "source": str(source),
        "source_sha256": ckpt.weights_sha256,
        "source_arch": cfg.arch,
        "sampling": sampling,
        "bottleneck_init": None if not has_bottleneck else ("noise" if calibration is None else bottleneck_fit),
        "recalibration_images": len(calibration) if recalibrate and calibration is not None else None,
    }

    def accuracy(model: Any) -> float | None:
        if data is None:
            return None
        hooks.on_stage("evaluation")
        return measure_accuracy(model, data.test_images, data.test_labels, cfg.mean, cfg.std, device=dev).top1

    if resume:
        previous = read_config(out).training.get("sbify", {})
        stages = tuple(Stage(**s) for s in previous.get("stages", []))
        bottleneck_error = previous.get("bottleneck_fit_error")
        state = None
    else:
        stages_list = [Stage("baseline", accuracy(ckpt.model), 0.0, 0.0)]
        hooks.on_stage("mapping")
        clock = _Clock()
        batches = None
        if settings["bottleneck_init"] == "calibration" and calibration is not None:
            fit_images = calibration[:FIT_IMAGES]
            batches = list(normalized_batches(fit_images, cfg.mean, cfg.std, batch_size=128, device=dev))
        conversion = convert(ckpt.model, sampling, calibration=batches)
        sb_model = conversion.model
        mapped = clock.stage("mapped", None)
        stages_list.append(dataclasses.replace(mapped, test_accuracy=accuracy(sb_model)))
        bottleneck_error = conversion.bottleneck_error
        if recalibrate:
            assert calibration is not None
            hooks.on_stage("recalibration")
            clock = _Clock()
            recalibrate_bn(sb_model, calibration, cfg.mean, cfg.std, device=dev, on_batch=hooks.on_calibration_batch)
            done = clock.stage("recalibrated", None)
            stages_list.append(dataclasses.replace(done, test_accuracy=accuracy(sb_model)))
        stages = tuple(stages_list)
        state = sb_model.state_dict()
    settings["bottleneck_fit_error"] = None if bottleneck_error is None else round(bottleneck_error, 5)
    settings["stages"] = [s.to_dict() for s in stages]
    options = {**cfg.options, "sampling": sampling}
    if fine_tune is None:
        assert state is not None
        model = create_model(arch, **options)
        model.load_state_dict(state, strict=True)  # the registered SB network, exactly
        metrics: dict[str, Any] = (
            {"test_accuracy": stages[-1].test_accuracy} if stages[-1].test_accuracy is not None else {}
        )
        save_checkpoint(
            out,
            model.eval(),
            dataclasses.replace(_sb_config(cfg, arch, options, data), metrics=metrics, training={"sbify": settings}),
        )
        return SbifyResult(out, source, ckpt.weights_sha256, arch, cfg.arch, sampling, stages, bottleneck_error, None)
    assert data is not None
    hooks.on_stage("fine-tune")
    teacher = Distillation(ckpt.model, alpha=distill[0], temperature=distill[1]) if distill is not None else None
    clock = _Clock()
    result = train(
        arch,
        data,
        out,
        fine_tune,
        sampling=sampling,
        resume=resume,
        overwrite=overwrite,
        device=dev.type,
        callbacks=hooks,
        init_state=state,
        distill=teacher,
        provenance={"sbify": settings},
    )
    tuned = clock.stage("fine-tuned", result.test_accuracy)
    return SbifyResult(
        out, source, ckpt.weights_sha256, arch, cfg.arch, sampling, (*stages, tuned), bottleneck_error, result
    )


def _sb_config(cfg: CheckpointConfig, arch: str, options: dict[str, Any], data: ImageData | None) -> CheckpointConfig:
    return CheckpointConfig(
        arch=arch,
        options=options,
        input_size=cfg.input_size,
        mean=cfg.mean,
        std=cfg.std,
        class_names=cfg.class_names,
        dataset=data.source if data is not None else cfg.dataset,
    )
