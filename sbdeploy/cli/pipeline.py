"""``sbdeploy pipeline``: the whole chain on one model, into one folder with one summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.bench.defaults import DEFAULT_BUDGET_S
from sbdeploy.cli._options import OldLowering, parse_ints, target_flags
from sbdeploy.cli._progress import steps_display
from sbdeploy.cli._render import console, print_json
from sbdeploy.cli.bench import render_warnings
from sbdeploy.errors import ConfigError


def pipeline(
    source: Annotated[str, typer.Argument(help="Checkpoint folder (or zoo name, random weights).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: runs/<name>).", file_okay=False)] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also make, validate and bench fp16 artifacts.")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also make, validate and bench int8 artifacts (each target's recipe).")
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="With --int8: calibration data, a data source or a .npy of normalized inputs (default: the checkpoint's dataset)."
        ),
    ] = None,
    batch: Annotated[str, typer.Option(help="Bench batch sizes, comma-separated.")] = "1,8",
    iters: Annotated[
        int | None,
        typer.Option(help="Bench: fixed length, timed runs per model (default: adaptive, see --budget).", min=1),
    ] = None,
    budget: Annotated[
        float, typer.Option(help="Bench: at most this many seconds of timed turns per backend and batch.", min=0.01)
    ] = DEFAULT_BUDGET_S,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a bench figure is unstable.")] = False,
    warmup: Annotated[int, typer.Option(help="Bench warm-up runs per model.", min=0)] = 5,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads of torch and ONNX Runtime CPU.", min=1)] = None,
    limit: Annotated[int | None, typer.Option(help="Validate on at most this many real images.", min=1)] = None,
    baseline: Annotated[str | None, typer.Option(help="Baseline to bench against (checkpoint or zoo name).")] = None,
    target: Annotated[
        str | None,
        typer.Option(help="One deploy target for every backend (e.g. grouped) instead of each backend's own."),
    ] = None,
    lowering: OldLowering = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Time the candidate forms and session settings of every fp32/fp16 ort-cpu "
            "file on this machine and keep the fastest (tuning.md).",
        ),
    ] = False,
    tune_budget: Annotated[
        float | None,
        typer.Option(help="--tune: at most this many seconds of timed turns per tuning stage [default: 10].", min=0.01),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export -> passes -> engine (TensorRT if present, else ONNX Runtime CPU) -> validate -> bench, every file kept in --out."""
    from sbdeploy.pipeline.run import STEPS, PipelineOptions, run_pipeline
    from sbdeploy.tune import tune_budget_options

    if tune_budget is not None and not tune:
        raise ConfigError("--tune-budget belongs to --tune; add --tune")
    options = PipelineOptions(
        fp16=fp16,
        int8=int8,
        calibration=calibration,
        batches=tuple(parse_ints(batch, "--batch")),
        iters=iters,
        budget_s=budget,
        warmup_iters=warmup,
        threads=threads,
        limit=limit,
        baseline=baseline,
        target=target_flags(target, lowering),
        tune=tune_budget_options(10.0 if tune_budget is None else tune_budget) if tune else None,
    )
    folder = out or Path("runs") / Path(source).name
    with steps_display(STEPS) as display:
        result = run_pipeline(
            source, folder, options, on_step=display.start, on_progress=display.progress, on_step_done=display.finish
        )
    if as_json:
        print_json(result.to_dict())
    else:
        table = Table(title=escape(f"sbdeploy pipeline: {source} -> {folder}"))
        for column in ("step", "result", "seconds", "detail"):
            table.add_column(column, justify="right" if column == "seconds" else "left", overflow="fold")
        colour = {"ok": "[green]ok[/]", "skipped": "[yellow]skipped[/]", "FAILED": "[bold red]FAILED[/]"}
        for s in result.steps:
            table.add_row(escape(s.name), colour[s.status], "-" if s.skipped else f"{s.seconds:.1f}", escape(s.detail))
        console.print(table)
        if result.bench is not None:
            render_warnings(result.bench)
        console.print(f"reports: {folder / 'summary.md'}", highlight=False, markup=False)
    if not result:
        raise typer.Exit(1)
    if strict and result.bench is not None and result.bench.unstable:
        console.print(
            "--strict: some bench figures are unstable (see the warnings); exit 1", style="bold red", highlight=False
        )
        raise typer.Exit(1)
