"""Training: the recipe (:class:`TrainConfig`), distillation from a teacher, and the loop, one process or DDP.

After every epoch rank 0 writes the checkpoint folder and ``train_state.safetensors`` (momentum,
epoch), so an interrupted run resumes. Seeded from (seed, epoch, rank): a CPU run repeats exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, TensorDataset

from sbdeploy._io import atomic_write_bytes
from sbdeploy.checkpoint import (
    WEIGHTS_FILE,
    CheckpointConfig,
    read_config,
    read_weights,
    save_checkpoint,
    sb_options,
    state_mismatches,
)
from sbdeploy.data import ImageData, to_float
from sbdeploy.errors import CheckpointError, ConfigError
from sbdeploy.models import create_model
from sbdeploy.train import distributed
from sbdeploy.train.evaluate import measure_accuracy, normalize

STATE_FILE = "train_state.safetensors"


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train: the paper's CIFAR recipe by default; every field is a CLI option of ``sbdeploy train``."""

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


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation from a teacher's logits (Hinton et al. 2015), for fine-tuning a converted network.

    Loss ``(1 - alpha) * CE + alpha * T^2 * KL(teacher / T || student / T)``; ``T^2`` keeps the soft gradients' scale.
    """

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


@dataclass(frozen=True)
class StepStats:
    """Running figures of the current epoch, after one step (this process's shard)."""

    epoch: int  # 0-based
    step: int  # 1-based within the epoch
    steps: int
    loss: float
    accuracy: float
    images_per_s: float  # over all processes


@dataclass(frozen=True)
class EpochStats:
    """Figures of one finished epoch (train figures summed over all processes)."""

    epoch: int  # 0-based
    lr: float
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    test_top5: float | None
    images_per_s: float
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class TrainCallbacks:
    """Progress hooks (called on rank 0 only); the default does nothing. The CLI draws bars with them."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        """An epoch (0-based) of ``steps`` steps begins."""

    def on_step(self, stats: StepStats) -> None:
        """A step finished."""

    def on_epoch_end(self, stats: EpochStats) -> None:
        """An epoch finished and the checkpoint was written."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    out: Path
    arch: str
    options: dict[str, Any]
    epochs: int  # epochs completed in total
    start_epoch: int  # > 0 when the run resumed
    test_accuracy: float
    test_top5: float | None
    wall_time_s: float  # training time of all runs of this checkpoint (resumes added up)
    world_size: int
    rank: int
    model: nn.Module  # the trained network (unwrapped from DDP), in train mode, on the training device
    history: tuple[EpochStats, ...] = field(default_factory=tuple)


def augment(images: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Reflect-pad by ``pad`` pixels and crop back at a random offset; randomly mirror left-right."""
    n, _, h, w = images.shape
    if pad:
        padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).tolist()
        images = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    if flip:
        mirror = torch.rand(n, generator=gen) < 0.5
        images = torch.where(mirror[:, None, None, None], images.flip(3), images)
    return images


def _save_state(out: Path, model: nn.Module, optimizer: torch.optim.SGD, next_epoch: int, run: dict[str, str]) -> None:
    """Momentum buffers and the next epoch, beside the checkpoint, so that an interrupted run resumes."""
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {
        f"momentum.{names[id(p)]}": state["momentum_buffer"].detach().cpu().contiguous()
        for p, state in optimizer.state.items()
        if state.get("momentum_buffer") is not None
    }
    metadata = {"epoch": str(next_epoch), **run}
    atomic_write_bytes(out / STATE_FILE, save_safetensors_bytes(tensors, metadata=metadata))


def _load_state(
    out: Path, model: nn.Module, arch: str, options: dict[str, Any], recipe: dict[str, Any]
) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]]:
    """Weights into ``model``; returns (next epoch, momentum buffers by parameter name, previous metrics)."""
    state_path = out / STATE_FILE
    if not out.is_dir():
        raise CheckpointError(
            f"nothing to resume: {out} is {'a file' if out.exists() else 'not there'}; --resume continues the run in the --out folder"
        )
    if not state_path.is_file():
        raise CheckpointError(
            f"nothing to resume in {out}: no {STATE_FILE} (the run finished, or never wrote an epoch)"
        )
    config = read_config(out)
    if config.arch != arch or config.options != options:
        raise CheckpointError(
            f"{out} holds {config.arch} {config.options}, not {arch} {options}; resume with the same model and data"
        )
    changed = sorted(k for k in set(recipe) | set(config.training) if recipe.get(k) != config.training.get(k))
    if changed:
        raise CheckpointError(
            f"{out} was trained with other settings ({', '.join(f'{k}={config.training.get(k)!r}' for k in changed)}); "
            "resume with the same options as the interrupted run"
        )
    momentum = read_weights(state_path)  # checks it is safetensors, never unpickles
    with safe_open(str(state_path), framework="pt") as f:
        epoch = int((f.metadata() or {}).get("epoch", "0"))
    weights = read_weights(out / WEIGHTS_FILE)
    problem = state_mismatches(model.state_dict(), weights)
    if problem:
        raise CheckpointError(
            f"{out / WEIGHTS_FILE} does not fit {arch} {options}, the run in config.json: {problem}; it is another network's"
        )
    model.load_state_dict(weights, strict=True)
    return epoch, {k.removeprefix("momentum."): v for k, v in momentum.items()}, config.metrics


def train(
    arch: str,
    data: ImageData,
    out: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    sampling: str | None = None,
    sb_stages: Sequence[int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    callbacks: TrainCallbacks | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
    distill: Distillation | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``arch`` on ``data`` and write the checkpoint folder ``out`` (alone or under torchrun; rank 0 writes).

    ``init_state``: weights to start a fine-tune from; ``provenance``: merged into the recorded recipe.
    """
    out = Path(out)
    hooks = callbacks or TrainCallbacks()
    options = {"num_classes": data.num_classes, "in_chans": data.in_chans, **sb_options(arch, sampling, sb_stages)}
    pad = data.pad if config.pad is None else config.pad
    flip = data.flip if config.flip is None else config.flip
    if pad >= min(data.input_size):
        raise ConfigError(f"padding {pad} must be smaller than the image size {data.input_size}")
    recipe = {**config.to_dict(), "pad": pad, "flip": flip}
    del recipe["max_steps_per_epoch"], recipe["eval_batch_size"]
    if distill is not None:
        recipe["distill"] = distill.to_dict()
    recipe.update(provenance or {})
    if not resume and (out / WEIGHTS_FILE).exists() and not overwrite:
        raise ConfigError(
            f"{out} already holds a checkpoint; pass --resume to continue it or --overwrite to replace it"
        )
    run = {"arch": arch, "options": json.dumps(options, sort_keys=True), "recipe": json.dumps(recipe, sort_keys=True)}
    checkpoint_config = CheckpointConfig(
        arch=arch,
        options=options,
        input_size=data.input_size,
        mean=data.mean,
        std=data.std,
        class_names=data.class_names,
        dataset=data.source,
        training=recipe,
    )

    ctx = distributed.setup(device)
    try:
        if config.batch_size % ctx.world_size:
            raise ConfigError(f"batch size {config.batch_size} does not split evenly over {ctx.world_size} processes")
        per_rank = config.batch_size // ctx.world_size
        torch.manual_seed(config.seed)
        model = create_model(arch, **options)
        start_epoch, momentum, previous = 0, {}, {}
        if resume:
            start_epoch, momentum, previous = _load_state(out, model, arch, options, recipe)
        elif init_state is not None:
            model.load_state_dict(dict(init_state), strict=True)
        model.to(ctx.device)
        if distill is not None:
            distill.teacher.to(ctx.device)
        if ctx.distributed and config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net: nn.Module = model
        if ctx.distributed:
            net = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
        for name, p in model.named_parameters():
            if name in momentum:
                optimizer.state[p]["momentum_buffer"] = momentum[name].to(ctx.device)
        sampler: DistributedSampler[Any] = DistributedSampler(
            TensorDataset(data.train_labels), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
        )
        steps = math.ceil(len(sampler) / per_rank)
        if config.max_steps_per_epoch:
            steps = min(steps, config.max_steps_per_epoch)
        history = [EpochStats(**h) for h in previous.get("history", [])][:start_epoch]
        wall_before = float(previous.get("train_time_s", 0.0)) if resume else 0.0
        test_split = (data.test_images, data.test_labels, data.mean, data.std)
        run_start = time.perf_counter()
        for epoch in range(start_epoch, config.epochs):
            lr = config.lr_at(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.int64)
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 1009 + ctx.rank)
            if ctx.is_main:
                hooks.on_epoch_start(epoch, config.epochs, steps)
            net.train()
            epoch_start = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for step in range(steps):
                idx = order[step * per_rank : (step + 1) * per_rank]
                x = augment(to_float(data.train_images[idx]), pad, flip, gen).to(ctx.device, non_blocking=True)
                x = normalize(x, data.mean, data.std)
                y = data.train_labels[idx].to(ctx.device, non_blocking=True)
                logits = net(x)
                loss = F.cross_entropy(logits, y) if distill is None else distill.loss(logits, distill.targets(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                if ctx.is_main:
                    speed = seen * ctx.world_size / (time.perf_counter() - epoch_start)
                    hooks.on_step(StepStats(epoch, step + 1, steps, loss_sum / seen, correct / seen, speed))
            epoch_time = time.perf_counter() - epoch_start
            ctx.average_buffers(model)
            test = [0.0, 0.0, 0.0]  # top-1, whether there is a top-5, top-5: measured on rank 0, summed to every rank
            if ctx.is_main:
                acc = measure_accuracy(model, *test_split, batch_size=config.eval_batch_size, device=ctx.device)
                test = [acc.top1, float(acc.top5 is not None), acc.top5 or 0.0]
            totals = ctx.all_sum([loss_sum, float(correct), float(seen), *test])
            loss_total, correct_total, seen_total, test_acc, has5, top5_value = totals
            stats = EpochStats(
                epoch=epoch,
                lr=lr,
                train_loss=loss_total / seen_total,
                train_accuracy=correct_total / seen_total,
                test_accuracy=test_acc,
                test_top5=top5_value if has5 else None,
                images_per_s=seen_total / epoch_time,
                time_s=epoch_time,
            )
            history.append(stats)
            if ctx.is_main:
                wall = wall_before + time.perf_counter() - run_start
                figures = stats.to_dict()
                metrics = {
                    **{k: figures[k] for k in ("test_accuracy", "test_top5", "train_loss", "train_accuracy")},
                    "epochs": epoch + 1,
                    "epochs_planned": config.epochs,
                    "train_time_s": round(wall, 1),
                    "world_size": ctx.world_size,
                    "device": str(ctx.device) if ctx.device.type != "cuda" else torch.cuda.get_device_name(ctx.device),
                    "torch_threads": torch.get_num_threads(),
                    "history": [h.to_dict() for h in history],
                }
                save_checkpoint(out, model, dataclasses.replace(checkpoint_config, metrics=metrics))
                if epoch + 1 < config.epochs:
                    _save_state(out, model, optimizer, epoch + 1, run)
                else:
                    (out / STATE_FILE).unlink(missing_ok=True)
                hooks.on_epoch_end(stats)
            ctx.barrier()
        if not history:
            raise ConfigError(f"{out} already finished {start_epoch} of {config.epochs} epochs; nothing to train")
        last = history[-1]
        return TrainResult(
            out=out,
            arch=arch,
            options=options,
            epochs=config.epochs,
            start_epoch=start_epoch,
            test_accuracy=last.test_accuracy,
            test_top5=last.test_top5,
            wall_time_s=wall_before + time.perf_counter() - run_start,
            world_size=ctx.world_size,
            rank=ctx.rank,
            model=model,
            history=tuple(history),
        )
    finally:
        distributed.teardown(ctx)
