"""``sbdeploy validate``: PyTorch vs every artifact (ONNX on ONNX Runtime, TensorRT engines)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.cli._options import OldLowering, parse_ints, precisions, split_list, target_flags
from sbdeploy.cli._progress import progress_bar
from sbdeploy.cli._render import console, err_console, print_json
from sbdeploy.errors import ConfigError
from sbdeploy.targets import ONNX_BACKENDS

if TYPE_CHECKING:
    from sbdeploy.validate.compare import ValidationReport


def _checkpoint_argument(path: Path) -> Path:
    """The CHECKPOINT argument, refused in one line when it is the file to check (``validate r20.onnx``)."""
    from sbdeploy.files import ENGINE_SUFFIXES

    if (path.suffix == ".onnx" or path.suffix in ENGINE_SUFFIXES) and not path.is_dir():
        option = "--onnx" if path.suffix == ".onnx" else "--engine"
        what = "is a model file" if path.is_file() else "does not exist (and is named like a model file)"
        raise ConfigError(
            f"{path} {what}: validate takes the checkpoint folder it was exported from first and the file "
            f"after {option}: `sbdeploy validate CHECKPOINT {option} {path}`"
        )
    return path


def render_validation(report: ValidationReport) -> None:
    """Checks table (one row per file and input), accuracy table and the verdict line."""
    from sbdeploy.validate.compare import tf32_notes

    table = Table(title="parity against PyTorch")
    columns = ("file", "backend", "precision", "input", "max abs", "mean abs", "min cosine", "top-1 agree", "verdict")
    for column in columns:
        table.add_column(
            column,
            justify="left" if column in ("file", "backend", "precision", "input", "verdict") else "right",
            no_wrap=column == "file",
        )
    for c in report.checks:
        s = c.stats
        verdict = (
            ("[green]pass[/]" if c.passed else f"[bold red]FAIL[/] {escape(c.reason)}")
            if c.judged
            else f"[dim]{escape(c.verdict_text)}[/]"
        )
        table.add_row(
            escape(c.file),
            c.backend,
            c.precision,
            escape(c.case),
            f"{s.max_abs:.3g}",
            f"{s.mean_abs:.3g}",
            f"{s.min_cosine:.6f}",
            f"{s.top1_agreement:.1%}",
            verdict,
        )
    console.print(table)
    if report.accuracy:
        acc = Table(title="accuracy")
        for column in ("file", "backend", "dataset", "images", "top-1", "top-5", "vs PyTorch"):
            acc.add_column(column, justify="left" if column in ("file", "backend", "dataset") else "right")
        for a in report.accuracy:
            acc.add_row(
                escape(a.file or "PyTorch"),
                a.backend,
                escape(a.dataset),
                str(a.samples),
                f"{a.top1:.2%}",
                "-" if a.top5 is None else f"{a.top5:.2%}",
                f"{a.delta_top1:+.2f} pt",
            )
        console.print(acc)
    for a in report.artifacts:
        console.print(f"{a.file}: sha256 {a.sha256}", style="dim", highlight=False, markup=False)
    for note in tf32_notes(report.artifacts):
        console.print(f"TF32: {note}", style="dim", highlight=False, markup=False)
    failed = report.failures
    if report:
        console.print(
            f"[bold green]PASSED[/]: {len(report.checks)} checks of {len(report.file_verdicts())} files",
            highlight=False,
        )
    else:
        console.print(f"[bold red]FAILED[/]: {len(failed)} of {len(report.checks)} checks", highlight=False)


def validate(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="Checkpoint folder: the PyTorch training code is the reference (none with --load-outputs)."
        ),
    ] = None,
    onnx: Annotated[
        list[Path] | None,
        typer.Option("--onnx", help="ONNX file to check (repeatable). Default: make the deploy artifacts now."),
    ] = None,
    engine: Annotated[
        list[Path] | None, typer.Option("--engine", help="TensorRT engine to check (repeatable; needs its sidecar).")
    ] = None,
    backends: Annotated[
        str, typer.Option(help=f"Backends that run the ONNX files: {', '.join(ONNX_BACKENDS)}.")
    ] = "ort-cpu",
    target: Annotated[
        str | None,
        typer.Option(
            help="Without files: make this deploy target's artifacts (default: each backend's own, e.g. ort-cpu)."
        ),
    ] = None,
    lowering: OldLowering = None,
    batch: Annotated[
        str, typer.Option(help="Without files: the batch sizes to make per-batch artifacts for (as bench times them).")
    ] = "1,8",
    fp16: Annotated[bool, typer.Option("--fp16", help="Without files: also make and check fp16 artifacts.")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="Without files: also make and check int8 artifacts (each target's recipe).")
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="With --int8: calibration data, a data source or a .npy of normalized inputs (default: the checkpoint's dataset)."
        ),
    ] = None,
    artifacts: Annotated[
        Path | None,
        typer.Option(
            help="Without files: make the artifacts into this folder and keep them (default: a temporary one).",
            file_okay=False,
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Data source for real images (default: the checkpoint's own dataset).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many real images.", min=1)] = None,
    atol: Annotated[
        float | None, typer.Option(help="Absolute tolerance (overrides every target's and precision's default).", min=0)
    ] = None,
    rtol: Annotated[
        float | None, typer.Option(help="Relative tolerance (overrides every target's and precision's default).", min=0)
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Folder for validate.json and validate.md.", file_okay=False)
    ] = None,
    save_outputs: Annotated[
        Path | None,
        typer.Option(
            help="Keep every output (PyTorch's and each file's) in this folder, to judge again.", file_okay=False
        ),
    ] = None,
    load_outputs: Annotated[
        Path | None,
        typer.Option(
            help="Judge the outputs a --save-outputs run kept (e.g. with other --atol/--rtol), running nothing.",
            file_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run PyTorch and every artifact on the same inputs; exit 1 when any check fails.

    Each file is judged by its deploy target's tolerance for its precision (default fp32
    |diff| <= 1e-4 + 1e-3*|ref|; fp16 5e-2 + 5e-2*|ref|; int8 cosine >= 0.98 and top-1
    agreement >= 90%, on real images: its random-batch runs are shown, not judged). Any NaN/Inf fails.
    Without --onnx/--engine, validate makes the artifacts bench would time for --backends and checks those.
    """
    from sbdeploy.flow import ValidateOptions, judge_saved, run_validate
    from sbdeploy.validate.report import write_report

    options = ValidateOptions(
        backends=tuple(split_list(backends, "--backends")),
        target=target_flags(target, lowering),
        batches=tuple(parse_ints(batch, "--batch")),
        precisions=precisions(fp16, int8),
        calibration=calibration,
        data=data,
        limit=limit,
        atol=atol,
        rtol=rtol,
    )
    if load_outputs is not None:
        if checkpoint is not None or onnx or engine or save_outputs is not None:
            raise ConfigError(
                "--load-outputs judges saved outputs: give it alone (with --atol/--rtol, --report, --json)"
            )
        result = judge_saved(load_outputs, options)
    elif checkpoint is None:
        raise ConfigError("give the CHECKPOINT folder (or --load-outputs DIR)")
    else:
        with progress_bar("validating") as on_progress:
            result = run_validate(
                _checkpoint_argument(checkpoint),
                onnx=onnx or [],
                engines=engine or [],
                options=options,
                workdir=artifacts,
                save_outputs=save_outputs,
                on_progress=on_progress,
            )
    if report is not None:
        for path in write_report(result, report):  # with --json, stdout stays JSON
            (err_console if as_json else console).print(f"wrote {path}", highlight=False, markup=False)
    if as_json:
        print_json(result.to_dict())
    else:
        render_validation(result)
    if not result:
        raise typer.Exit(1)
