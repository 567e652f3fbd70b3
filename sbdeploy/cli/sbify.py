"""``sbdeploy sbify``: a trained baseline checkpoint -> an SB checkpoint, without training from scratch.

Renders the accuracy after each stage (mapping, BN recalibration, fine-tune) with its wall and CPU time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from sbdeploy.cli._options import parse_ints
from sbdeploy.cli._render import console, print_json
from sbdeploy.cli.train import SOURCE_OPTION_HELP, EpochBars, epoch_progress, parse_floats


class _Bars(EpochBars):
    """:class:`sbdeploy.convert.run.SbifyCallbacks`: one bar for the recalibration, one per fine-tune epoch, the stage in a line."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(progress)
        self.calibration: TaskID | None = None

    def on_stage(self, name: str) -> None:
        self.progress.start()  # on the first stage: an error before it leaves stderr one line
        if name == "recalibration":
            self.calibration = self.progress.add_task("BN recalibration", total=None, stats="")
        elif name != "evaluation":
            self.progress.console.print(name, style="dim", markup=False, highlight=False)

    def on_calibration_batch(self, done: int, total: int) -> None:
        assert self.calibration is not None
        self.progress.update(self.calibration, completed=done, total=total)


def sbify(
    baseline: Annotated[
        Path, typer.Argument(help="Baseline checkpoint folder (a zoo baseline, or one from `sbdeploy import`).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="SB checkpoint folder to write (model.safetensors + config.json).")
    ],
    sampling: Annotated[str, typer.Option(help="SB sampling set: single, chessboard, three or dense.")] = "chessboard",
    stages: Annotated[
        str | None,
        typer.Option(
            help="Map only the blocks of these stages, e.g. 2,3 (numbered from 1; the rest copied). Default: all."
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help=f"{SOURCE_OPTION_HELP} Default: the baseline's recorded data set.")
    ] = None,
    recalibrate: Annotated[
        bool, typer.Option("--recalibrate/--no-recalibrate", help="Re-estimate BN statistics on training images.")
    ] = True,
    calibration_images: Annotated[
        int, typer.Option(min=1, help="Training images for BN recalibration and the bottleneck fit.")
    ] = 2048,
    bottleneck_fit: Annotated[
        str,
        typer.Option(help="Fit bottleneck blocks' linear SBs on calibration images or on Gaussian noise (data-free)."),
    ] = "calibration",
    epochs: Annotated[int, typer.Option(min=0, help="Fine-tune epochs after the recalibration (0: none).")] = 0,
    distill: Annotated[
        bool, typer.Option("--distill", help="Fine-tune on the baseline's logits too (knowledge distillation).")
    ] = False,
    distill_alpha: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Weight of the baseline's soft targets.")
    ] = 0.5,
    distill_temperature: Annotated[
        float, typer.Option(min=0.01, help="Softmax temperature of the distillation.")
    ] = 4.0,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Fine-tune batch size (default: the training recipe's, 128).")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(min=0.0, help="Fine-tune initial learning rate (default: a tenth of training's, 0.01)."),
    ] = None,
    milestones: Annotated[
        str, typer.Option(help="Fractions of the fine-tune where the LR is multiplied by 0.1.")
    ] = "0.5,0.75",
    seed: Annotated[int, typer.Option(help="Seed of the fine-tune's shuffling and augmentation.")] = 0,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Cut each fine-tune epoch to this many steps (smoke tests).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted fine-tune in --out (same options).")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a checkpoint already in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Turn a trained baseline into its SB network: weights mapped, BN recalibrated, optionally fine-tuned.

    Regular blocks map exactly (SB conv = conv1, SB deconv = conv2 transposed and flipped;
    with --sampling dense the SB network computes the baseline); bottleneck blocks get a
    fitted rank-C/2 linear SB. The fine-tune uses the training recipe at LR 0.01.
    """
    from sbdeploy.convert import sbify_checkpoint
    from sbdeploy.convert.run import FINE_TUNE, SbifyCallbacks, sbify_data
    from sbdeploy.train.trainer import TrainConfig

    dataset = sbify_data(baseline, data, needed=recalibrate or epochs > 0)
    fine_tune = None
    if epochs:
        fine_tune = TrainConfig(
            epochs=epochs,
            batch_size=FINE_TUNE.batch_size if batch_size is None else batch_size,
            lr=FINE_TUNE.lr if lr is None else lr,
            milestones=parse_floats(milestones, "--milestones"),
            seed=seed,
            max_steps_per_epoch=max_steps,
        )
    show = not quiet and not as_json
    progress = epoch_progress(show)
    try:
        result = sbify_checkpoint(
            baseline,
            out,
            data=dataset,
            sampling=sampling,
            sb_stages=None if stages is None else parse_ints(stages, "--stages"),
            recalibrate=recalibrate,
            calibration_count=calibration_images,
            bottleneck_fit=bottleneck_fit,
            fine_tune=fine_tune,
            distill=(distill_alpha, distill_temperature) if distill else None,
            resume=resume,
            overwrite=overwrite,
            device=device,
            callbacks=_Bars(progress) if show else SbifyCallbacks(),
        )
    finally:
        if progress.live.is_started:  # stopping an unstarted Progress prints a blank line
            progress.stop()
    summary = {
        "out": str(result.out),
        "model": result.arch,
        "baseline": str(result.source),
        "baseline_model": result.baseline_arch,
        "baseline_sha256": result.source_sha256,
        "sampling": result.sampling,
        "sb_stages": None if result.sb_stages is None else list(result.sb_stages),
        "bottleneck_fit_error": result.bottleneck_error,
        "stages": [s.to_dict() for s in result.stages],
    }
    if as_json:
        print_json(summary)
        return
    placed = "" if result.sb_stages is None else f", stages {','.join(map(str, result.sb_stages))}"
    table = Table(title=escape(f"sbdeploy sbify: {result.baseline_arch} -> {result.arch} ({result.sampling}{placed})"))
    for column in ("stage", "test accuracy", "wall s", "CPU s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for s in result.stages:
        accuracy = "-" if s.test_accuracy is None else f"{s.test_accuracy:.2%}"
        table.add_row(escape(s.name), accuracy, f"{s.time_s:.1f}", f"{s.cpu_s:.1f}")
    console.print(table)
    if result.bottleneck_error is not None:
        console.print(
            f"bottleneck linear SBs: mean relative error {result.bottleneck_error:.3f} of the 3x3 convs' output on the fit inputs"
        )
    console.print(f"-> {result.out}", highlight=False, markup=False)
