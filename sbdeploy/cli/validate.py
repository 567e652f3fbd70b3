"""``sbdeploy validate``: PyTorch vs every artifact (ONNX on ONNX Runtime, TensorRT engines)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from sbdeploy.cli import _options as opt
from sbdeploy.cli._progress import progress_bar
from sbdeploy.cli._render import console, line, new_table, show
from sbdeploy.errors import ConfigError
from sbdeploy.targets import ONNX_BACKENDS, requested_precisions

if TYPE_CHECKING:
    from sbdeploy.validate.compare import ValidationReport


def render_validation(report: ValidationReport) -> None:
    """Checks table (one row per file and input), accuracy table and the verdict line."""
    from sbdeploy.validate.compare import tf32_notes

    columns = ("file", "backend", "precision", "input", "max abs", "mean abs", "min cosine", "top-1 agree", "verdict")
    text = ("file", "backend", "precision", "input", "verdict")
    table = new_table("parity against PyTorch", columns, text, no_wrap=("file",))
    for c in report.checks:
        if not c.judged:
            verdict = f"[dim]{escape(c.verdict_text)}[/]"
        else:
            verdict = "[green]pass[/]" if c.passed else f"[bold red]FAIL[/] {escape(c.reason)}"
        s = c.stats
        figures = (f"{s.max_abs:.3g}", f"{s.mean_abs:.3g}", f"{s.min_cosine:.6f}", f"{s.top1_agreement:.1%}")
        table.add_row(escape(c.file), c.backend, c.precision, escape(c.case), *figures, verdict)
    console.print(table)
    if report.accuracy:
        columns = ("file", "backend", "dataset", "images", "top-1", "top-5", "vs PyTorch")
        table = new_table("accuracy", columns, ("file", "backend", "dataset"))
        for a in report.accuracy:
            top5 = "-" if a.top5 is None else f"{a.top5:.2%}"
            figures = (str(a.samples), f"{a.top1:.2%}", top5, f"{a.delta_top1:+.2f} pt")
            table.add_row(escape(a.file or "PyTorch"), a.backend, escape(a.dataset), *figures)
        console.print(table)
    for a in report.artifacts:
        line(f"{a.file}: sha256 {a.sha256}", style="dim")
    for note in tf32_notes(report.artifacts):
        line(f"TF32: {note}", style="dim")
    if report:
        verdict = f"[bold green]PASSED[/]: {len(report.checks)} checks of {len(report.file_verdicts())} files"
    else:
        verdict = f"[bold red]FAILED[/]: {len(report.failures)} of {len(report.checks)} checks"
    console.print(verdict, highlight=False)


def validate(
    checkpoint: Annotated[
        Path | None, typer.Argument(help="Checkpoint folder, the PyTorch reference (none with --load-outputs).")
    ] = None,
    onnx: Annotated[
        list[Path] | None, typer.Option("--onnx", help="ONNX file to check (repeatable); none: make the artifacts.")
    ] = None,
    engine: Annotated[
        list[Path] | None, typer.Option("--engine", help="TensorRT engine to check (repeatable; needs its sidecar).")
    ] = None,
    backends: Annotated[str, typer.Option(help=f"Backends of the ONNX files: {', '.join(ONNX_BACKENDS)}.")] = "ort-cpu",
    target: opt.Target = None,
    lowering: opt.OldLowering = None,
    batch: opt.Batches = "1,8",
    fp16: opt.Fp16 = False,
    int8: opt.Int8 = False,
    bf16: opt.Bf16 = False,
    calibration: opt.Calibration = None,
    artifacts: opt.Artifacts = None,
    data: Annotated[str | None, typer.Option(help="Data source of real images (default: the checkpoint's).")] = None,
    limit: opt.Limit = None,
    atol: Annotated[float | None, typer.Option(help="Absolute tolerance (overrides every default).", min=0)] = None,
    rtol: Annotated[float | None, typer.Option(help="Relative tolerance (overrides every default).", min=0)] = None,
    report: Annotated[Path | None, opt.folder("Folder for validate.json and validate.md.")] = None,
    save_outputs: Annotated[Path | None, opt.folder("Keep every output here, PyTorch's and each file's.")] = None,
    load_outputs: Annotated[
        Path | None, opt.folder("Judge outputs --save-outputs kept (e.g. with other --atol/--rtol), running nothing.")
    ] = None,
    as_json: opt.AsJson = False,
) -> None:
    """Run PyTorch and every artifact on the same inputs; exit 1 when any check fails.

    Each file is judged by its deploy target's tolerance for its precision (default fp32
    |diff| <= 1e-4 + 1e-3*|ref|; fp16 5e-2 + 5e-2*|ref|; int8 cosine >= 0.98 and top-1
    agreement >= 90%, on real images: its random-batch runs are shown, not judged; bf16 on ov-cpu, the fp32
    file run with OpenVINO's bf16 hint, 1e-1 + 1e-1*|ref|). Any NaN/Inf fails.
    Without --onnx/--engine, validate makes the artifacts bench would time for --backends and checks those.
    """
    from sbdeploy.flow import ValidateOptions, judge_saved, run_validate
    from sbdeploy.validate.report import write_report

    options = ValidateOptions(
        backends=tuple(opt.split_list(backends, "--backends")),
        target=opt.target_flags(target, lowering),
        batches=tuple(opt.parse_ints(batch, "--batch")),
        precisions=requested_precisions(fp16, int8, bf16),
        calibration=calibration,
        data=data,
        limit=limit,
        atol=atol,
        rtol=rtol,
    )
    if load_outputs is not None:
        made = checkpoint is not None or onnx or engine or save_outputs is not None or artifacts is not None
        if made or dataclasses.replace(options, atol=None, rtol=None) != ValidateOptions():
            raise ConfigError(
                "--load-outputs judges saved outputs: give it alone (with --atol/--rtol, --report, --json)"
            )
        result = judge_saved(load_outputs, options)
    elif checkpoint is None:
        raise ConfigError("give the CHECKPOINT folder (or --load-outputs DIR)")
    else:
        with progress_bar("validating") as on_progress:
            result = run_validate(
                checkpoint,
                onnx=onnx or [],
                engines=engine or [],
                options=options,
                workdir=artifacts,
                save_outputs=save_outputs,
                on_progress=on_progress,
            )
    show(result, render_validation, as_json=as_json, written=write_report(result, report) if report else ())
    if not result:
        raise typer.Exit(1)
