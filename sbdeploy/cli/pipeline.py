"""``sbdeploy pipeline``: the whole chain on one model, into one folder with one summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sbdeploy.bench.defaults import DEFAULT_BUDGET_S
from sbdeploy.cli import _options as opt
from sbdeploy.cli._progress import steps_display
from sbdeploy.cli._render import STATUS_MARKS, console, line, new_table, show
from sbdeploy.cli.bench import fail_if_unstable, render_warnings
from sbdeploy.errors import ConfigError


def render_pipeline(result, source: str, folder: Path) -> None:  # noqa: ANN001  (PipelineResult)
    """One row per step (its status, seconds and detail), the bench's warnings and where the reports are."""
    title = escape(f"sbdeploy pipeline: {source} -> {folder}")
    table = new_table(title, ("step", "result", "seconds", "detail"), ("step", "result", "detail"))
    for column in table.columns:  # long paths fold, whole
        column.overflow = "fold"
    for s in result.steps:
        seconds = "-" if s.skipped else f"{s.seconds:.1f}"
        table.add_row(escape(s.name), STATUS_MARKS[s.status], seconds, escape(s.detail))
    console.print(table)
    if result.bench is not None:
        render_warnings(result.bench)
    line(f"reports: {folder / 'summary.md'}")


def pipeline(
    source: Annotated[str, typer.Argument(help="Checkpoint folder (or zoo name, random weights).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: runs/<name>).", file_okay=False)] = None,
    fp16: opt.Fp16 = False,
    int8: opt.Int8 = False,
    bf16: opt.Bf16 = False,
    backends: Annotated[
        str | None, typer.Option(help="CPU backends of the deploy files (default ort-cpu): ort-cpu, ov-cpu.")
    ] = None,
    calibration: opt.Calibration = None,
    batch: opt.Batches = "1,8",
    iters: opt.Iters = None,
    budget: opt.Budget = DEFAULT_BUDGET_S,
    strict: opt.Strict = False,
    warmup: Annotated[int, typer.Option(help="Bench warm-up runs per model.", min=0)] = 5,
    threads: opt.Threads = None,
    limit: opt.Limit = None,
    baseline: Annotated[str | None, typer.Option(help="Baseline to bench against (checkpoint or zoo name).")] = None,
    target: opt.Target = None,
    lowering: opt.OldLowering = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Tune each fp32/fp16 ort-cpu and ov-cpu file's form (and ort-cpu session settings; tuning.md).",
        ),
    ] = False,
    tune_budget: opt.TuneBudget = None,
    as_json: opt.AsJson = False,
) -> None:
    """Export -> passes -> engine (TensorRT if present, else ONNX Runtime CPU) -> validate -> bench, every file kept in --out."""
    from sbdeploy.pipeline.run import STEPS, PipelineOptions, run_pipeline
    from sbdeploy.tune import tune_budget_options

    if tune_budget is not None and not tune:
        raise ConfigError("--tune-budget belongs to --tune; add --tune")
    options = PipelineOptions(
        fp16=fp16,
        int8=int8,
        bf16=bf16,
        backends=tuple(opt.split_list(backends, "--backends")) if backends else ("ort-cpu",),
        calibration=calibration,
        batches=opt.parse_ints(batch, "--batch"),
        iters=iters,
        budget_s=budget,
        warmup_iters=warmup,
        threads=threads,
        limit=limit,
        baseline=baseline,
        target=opt.target_flags(target, lowering),
        tune=tune_budget_options(10.0 if tune_budget is None else tune_budget) if tune else None,
    )
    folder = out or Path("runs") / Path(source).name
    with steps_display(STEPS) as display:
        result = run_pipeline(
            source, folder, options, on_step=display.start, on_progress=display.progress, on_step_done=display.finish
        )
    show(result, lambda r: render_pipeline(r, source, folder), as_json=as_json)
    if not result:
        raise typer.Exit(1)
    if strict and result.bench is not None:
        fail_if_unstable(result.bench, "bench figures")
