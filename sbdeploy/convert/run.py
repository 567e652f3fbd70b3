"""``sbdeploy sbify`` as a library call: baseline checkpoint -> SB checkpoint folder.

Map the weights, recalibrate BN, optionally fine-tune (distilled if asked), write the folder; the test
accuracy, wall and CPU time after each stage go to ``config.json`` ``training.sbify`` (docs/sbify.md).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbdeploy.checkpoint import WEIGHTS_FILE, load_checkpoint, read_config, save_checkpoint, sb_options
from sbdeploy.convert.mapping import BLOCK_MAPS, convert, sb_counterpart
from sbdeploy.data import ImageData
from sbdeploy.errors import ConfigError
from sbdeploy.models import check_sb_stages, create_model, model_info
from sbdeploy.nn.sampling import resolve_sampling
from sbdeploy.train.distributed import pick_device
from sbdeploy.train.evaluate import measure_accuracy, normalize, open_fitting_source
from sbdeploy.train.recalibrate import calibration_images, recalibrate_bn
from sbdeploy.train.trainer import Distillation, TrainCallbacks, TrainConfig, TrainResult, train

FIT_IMAGES = 512  # calibration images the bottleneck fit uses at most: its sums settle long before
FINE_TUNE = TrainConfig(epochs=1, lr=0.01)  # the training recipe at a tenth of its learning rate


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
    sb_stages: tuple[int, ...] | None  # the stages mapped (None: every stage)
    stages: tuple[Stage, ...]
    bottleneck_error: float | None  # mean relative error of the linear SB fits (Conversion.bottleneck_error)
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


def sbify_data(baseline: str | Path, source: str | None, *, needed: bool) -> ImageData | None:
    """The images of an sbify run, fit to the baseline: ``source``, else (where ``needed``) its recorded data set."""
    config = read_config(baseline)
    chosen = source or (config.dataset if needed else None)
    if needed and not chosen:
        raise ConfigError(f"{baseline} records no data set; give --data SOURCE (or --no-recalibrate and no --epochs)")
    return open_fitting_source(chosen, config) if chosen else None


def sbify_checkpoint(
    baseline: str | Path,
    out: str | Path,
    *,
    data: ImageData | None,
    sampling: str = "chessboard",
    sb_stages: Sequence[int] | None = None,
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
    """Write the SB checkpoint of a baseline checkpoint folder to ``out``.

    Args:
        data: training and test images (``open_fitting_source``); None: mapping only.
        sb_stages: map only the blocks of these stages (numbered from 1; the others copied exactly): the SB network's
            ``sb_stages``; None: every block.
        calibration_count: training images for recalibration and the bottleneck fit (None: all).
        bottleneck_fit: ``calibration`` (images run through the baseline) or ``noise`` (data-free).
        distill: (alpha, temperature) to distil the fine-tune from the baseline's logits.
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
    sb_stages = check_sb_stages(sb_stages, model_info(arch).stages)
    options = {**cfg.options, **sb_options(arch, sampling, sb_stages)}
    has_bottleneck = any(BLOCK_MAPS[type(m)].deconv_from is None for m in ckpt.model.modules() if type(m) in BLOCK_MAPS)
    settings: dict[str, Any] = {
        "source": str(source),
        "source_sha256": ckpt.weights_sha256,
        "source_arch": cfg.arch,
        "sampling": sampling,
        "sb_stages": None if sb_stages is None else list(sb_stages),
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
        stages = [Stage(**s) for s in previous.get("stages", [])]
        bottleneck_error = previous.get("bottleneck_fit_error")
        state = None
    else:
        stages = [Stage("baseline", accuracy(ckpt.model), 0.0, 0.0)]
        hooks.on_stage("mapping")
        clock = _Clock()
        batches = None
        if settings["bottleneck_init"] == "calibration" and calibration is not None:
            batches = [normalize(b.to(dev), cfg.mean, cfg.std) for b in calibration[:FIT_IMAGES].split(128)]
        conversion = convert(ckpt.model, sampling, calibration=batches, stages=sb_stages)
        sb_model, bottleneck_error = conversion.model, conversion.bottleneck_error
        mapped = clock.stage("mapped", None)
        stages.append(dataclasses.replace(mapped, test_accuracy=accuracy(sb_model)))
        if recalibrate:
            assert calibration is not None
            hooks.on_stage("recalibration")
            clock = _Clock()
            recalibrate_bn(sb_model, calibration, cfg.mean, cfg.std, device=dev, on_batch=hooks.on_calibration_batch)
            done = clock.stage("recalibrated", None)
            stages.append(dataclasses.replace(done, test_accuracy=accuracy(sb_model)))
        state = sb_model.state_dict()
    settings["bottleneck_fit_error"] = None if bottleneck_error is None else round(bottleneck_error, 5)
    settings["stages"] = [s.to_dict() for s in stages]
    if fine_tune is None:
        assert state is not None
        model = create_model(arch, **options)
        model.load_state_dict(state, strict=True)  # the registered SB network, exactly
        accuracy_now = stages[-1].test_accuracy
        config = dataclasses.replace(
            cfg,
            arch=arch,
            options=options,
            dataset=data.source if data is not None else cfg.dataset,
            metrics={"test_accuracy": accuracy_now} if accuracy_now is not None else {},
            training={"sbify": settings},
            sbdeploy_version="",
        )
        save_checkpoint(out, model.eval(), config)
        result = None
    else:
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
            sb_stages=sb_stages,
            resume=resume,
            overwrite=overwrite,
            device=dev.type,
            callbacks=hooks,
            init_state=state,
            distill=teacher,
            provenance={"sbify": settings},
        )
        stages.append(clock.stage("fine-tuned", result.test_accuracy))
    return SbifyResult(
        out, source, ckpt.weights_sha256, arch, cfg.arch, sampling, sb_stages, tuple(stages), bottleneck_error, result
    )
