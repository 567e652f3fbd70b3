"""``sbdeploy pipeline``: the whole chain on one model, into one folder with one summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.cli._render import OldLowering, console, print_json, target_flags
from sbdeploy.cli.bench import parse_ints


def pipeline(
    source: Annotated[str, typer.Argument(help="Checkpoint folder (or zoo name, random weights).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: runs/<name>).", file_okay=False)] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also make, validate and bench fp16 artifacts.")] = False,
    batch: Annotated[str, typer.Option(help="Bench batch sizes, comma-separated.")] = "1,8",
    iters: Annotated[int, typer.Option(help="Bench timed runs per model.", min=1)] = 30,
    warmup: Annotated[int, typer.Option(help="Bench warm-up runs per model.", min=0)] = 5,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads of torch and ONNX Runtime CPU.", min=1)] = None,
    limit: Annotated[int | None, typer.Option(help="Validate on at most this many real images.", min=1)] = None,
    baseline: Annotated[str | None, typer.Option(help="Baseline to bench against (checkpoint or zoo name).")] = None,
    target: Annotated[
        str | None, typer.Option(help="One deploy target for every backend (e.g. grouped) instead of each backend's own.")
    ] = None,
    lowering: OldLowering = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export -> passes -> engine (TensorRT if present, else ONNX Runtime CPU) -> validate -> bench, every file kept in --out."""
    from sbdeploy.pipeline import PipelineOptions, run_pipeline

    folder = out or Path("runs") / Path(source).name
    forced = target_flags(target, lowering)
    options = PipelineOptions(
        fp16=fp16, batches=tuple(parse_ints(batch, "--batch")), iters=iters, warmup_iters=warmup, threads=threads, limit=limit,
        baseline=baseline, target=forced,
    )
    with console.status("pipeline") as status:
        result = run_pipeline(source, folder, options, on_step=lambda name: status.update(f"pipeline: {name}"))
    if as_json:
        print_json(result.to_dict())
    else:
        table = Table(title=f"sbdeploy pipeline: {source} -> {folder}")
        for column in ("step", "result", "seconds", "detail"):
            table.add_column(column, justify="right" if column == "seconds" else "left", overflow="fold")
        colour = {"ok": "[green]ok[/]", "skipped": "[yellow]skipped[/]", "FAILED": "[bold red]FAILED[/]"}
        for s in result.steps:
            table.add_row(s.name, colour[s.status], f"{s.seconds:.1f}", escape(s.detail))
        console.print(table)
        console.print(f"reports: {folder / 'summary.md'}", highlight=False)
    if not result:
        raise typer.Exit(1)
