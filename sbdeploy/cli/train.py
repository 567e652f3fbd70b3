"""``sbdeploy train`` and ``sbdeploy evaluate``; under torchrun only rank 0 draws progress bars and writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sbdeploy.cli._render import console, err_console, print_json
from sbdeploy.data import SOURCE_HELP
from sbdeploy.errors import ConfigError

if TYPE_CHECKING:  # the trainer needs torch: imported when a command runs, not for --help
    from sbdeploy.train.trainer import EpochStats, StepStats

SOURCE_OPTION_HELP = f"Data SOURCE: {SOURCE_HELP}."


def parse_floats(text: str, option: str, numbers: str = "fractions such as 0.5,0.75") -> tuple[float, ...]:
    """Comma-separated numbers; ConfigError saying what ``option`` takes."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated {numbers}, got {text!r}") from None


def epoch_progress(show: bool) -> Progress:
    """The progress display of training stages and epochs, on stderr (disabled unless ``show``)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show,
    )


class EpochBars:
    """:class:`sbdeploy.train.TrainCallbacks` drawing one rich progress bar per epoch and a summary line after it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, stats="")

    def on_step(self, stats: StepStats) -> None:
        assert self.task is not None
        self.progress.update(
            self.task,
            completed=stats.step,
            stats=f"loss {stats.loss:.3f}  acc {stats.accuracy:6.2%}  {stats.images_per_s:,.0f} img/s",
        )

    def on_epoch_end(self, stats: EpochStats) -> None:
        assert self.task is not None
        top5 = f"  top-5 {stats.test_top5:6.2%}" if stats.test_top5 is not None else ""
        self.progress.update(
            self.task,
            stats=f"loss {stats.train_loss:.3f}  acc {stats.train_accuracy:6.2%}  test {stats.test_accuracy:6.2%}{top5}  "
            f"lr {stats.lr:g}  {stats.images_per_s:,.0f} img/s",
        )


def train(
    model: Annotated[str, typer.Argument(help="Registered network, e.g. cifar_resnet20_sb (see `sbdeploy zoo`).")],
    data: Annotated[str, typer.Option("--data", help=SOURCE_OPTION_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint folder to write (model.safetensors + config.json).")],
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch size (split over torchrun processes).")] = 128,
    lr: Annotated[float, typer.Option(min=0.0, help="Initial learning rate.")] = 0.1,
    momentum: Annotated[float, typer.Option(min=0.0, max=0.999, help="SGD momentum.")] = 0.9,
    nesterov: Annotated[bool, typer.Option(help="Nesterov momentum.")] = True,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="L2 weight decay.")] = 1e-4,
    milestones: Annotated[
        str, typer.Option(help="Fractions of training where the LR is multiplied by --gamma.")
    ] = "0.5,0.75",
    gamma: Annotated[float, typer.Option(min=0.0, max=1.0, help="LR factor at each milestone.")] = 0.1,
    pad: Annotated[
        int | None,
        typer.Option(min=0, help="Reflect padding before the random crop (default: the source's, 4 for CIFAR)."),
    ] = None,
    flip: Annotated[
        bool | None,
        typer.Option(
            "--flip/--no-flip", help="Random horizontal flips (default: the source's: on for CIFAR, off for digits)."
        ),
    ] = None,
    size: Annotated[
        int | None, typer.Option(min=8, help="Image size for resized sources (digits, synthetic, image folders).")
    ] = None,
    sampling: Annotated[str | None, typer.Option(help="Sampling set of an SB network (default: chessboard).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, shuffling and augmentation (repeatable on the CPU).")] = 0,
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="SyncBatchNorm across torchrun processes.")] = False,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Cut each epoch to this many steps (smoke tests).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run in --out (same options).")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a checkpoint already in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train MODEL on --data with the paper's recipe and write a checkpoint folder to --out.

    Defaults: SGD, Nesterov momentum 0.9, weight decay 1e-4, LR 0.1 divided by 10 at 50% and
    75% of training, batch 128, 4-pixel reflect padding + random crop (+ horizontal flip on
    CIFAR). Run under `torchrun --nproc_per_node=K` for DistributedDataParallel.
    """
    from sbdeploy.data import open_source
    from sbdeploy.train import TrainCallbacks, TrainConfig
    from sbdeploy.train import train as run_training

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        milestones=parse_floats(milestones, "--milestones"),
        gamma=gamma,
        pad=pad,
        flip=flip,
        seed=seed,
        sync_bn=sync_bn,
        max_steps_per_epoch=max_steps,
    )
    dataset = open_source(data, size=size)
    main_process = os.environ.get("RANK", "0") == "0"
    show = main_process and not quiet and not as_json
    with epoch_progress(show) as progress:
        callbacks = EpochBars(progress) if show else TrainCallbacks()
        result = run_training(
            model,
            dataset,
            out,
            config,
            sampling=sampling,
            resume=resume,
            overwrite=overwrite,
            device=device,
            callbacks=callbacks,
        )
    if not main_process:
        return
    summary = {
        "out": str(result.out),
        "model": result.arch,
        "options": result.options,
        "data": dataset.source,
        "epochs": result.epochs,
        "resumed_from_epoch": result.start_epoch,
        "test_accuracy": result.test_accuracy,
        "test_top5": result.test_top5,
        "train_time_s": round(result.wall_time_s, 1),
        "processes": result.world_size,
    }
    if as_json:
        print_json(summary)
        return
    top5 = f", top-5 {result.test_top5:.2%}" if result.test_top5 is not None else ""
    console.print(
        f"[bold]{escape(result.arch)}[/] on {escape(dataset.source)}: test accuracy [bold]{result.test_accuracy:.2%}[/]{top5} after "
        f"{result.epochs} epochs, {result.wall_time_s:.0f} s on {result.world_size} process(es) -> {escape(str(result.out))}"
    )


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder (model.safetensors + config.json).")],
    data: Annotated[str, typer.Option("--data", help=SOURCE_OPTION_HELP)],
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Accuracy (top-1, and top-5 with more than 5 classes) of a checkpoint on a split of --data."""
    from sbdeploy.train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, data, split=split, batch_size=batch_size, device=device)
    acc = result.accuracy
    if as_json:
        print_json(
            {
                "checkpoint": str(result.checkpoint),
                "model": result.arch,
                "data": result.source,
                "split": result.split,
                "images": acc.count,
                "top1": acc.top1,
                "top5": acc.top5,
                "loss": acc.loss,
                "recorded_test_accuracy": result.recorded_accuracy,
                "time_s": round(result.time_s, 3),
            }
        )
        return
    table = Table(title=escape(f"{result.arch} ({result.checkpoint}) on {result.source} [{result.split}]"))
    for column in ("images", "top-1", "top-5", "loss", "recorded top-1"):
        table.add_column(column, justify="right")
    table.add_row(
        str(acc.count),
        f"{acc.top1:.2%}",
        f"{acc.top5:.2%}" if acc.top5 is not None else "-",
        f"{acc.loss:.4f}",
        f"{result.recorded_accuracy:.2%}" if result.recorded_accuracy is not None else "-",
    )
    console.print(table)
