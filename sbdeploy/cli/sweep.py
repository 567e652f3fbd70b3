"""``sbdeploy sweep``: which SB network of a trained baseline is fastest on this machine within an accuracy budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sbdeploy.bench.defaults import DEFAULT_BUDGET_S
from sbdeploy.cli import _options as opt
from sbdeploy.cli._progress import progress_bar
from sbdeploy.cli._render import console, line, new_table, show
from sbdeploy.cli.train import SOURCE_OPTION_HELP


def render_sweep(result) -> None:  # noqa: ANN001  (SweepResult)
    """One table per batch size (fastest first, the front marked), then the picks and where the files are."""
    for batch in result.batches:
        columns = ("", "candidate", "stages", "top-1 (95%)", "median ms (95%)", "speedup (95%)")
        table = new_table(escape(f"sbdeploy sweep: {result.baseline}, batch {batch}"), columns, columns[:3])
        for r in sorted((r for r in result.rows if r.batch == batch), key=lambda r: r.median_ms):
            low, high = r.speedup_low, r.speedup_high
            table.add_row(
                "*" if r.front else "",
                escape(r.name),
                ",".join(map(str, r.stages)) or "-",
                f"{r.top1:.2%} ({r.top1_low:.1%}-{r.top1_high:.1%})",
                f"{r.median_ms:.3f}",
                f"{r.speedup:.2f}" + (f" ({low:.2f}-{high:.2f})" if low is not None and high is not None else ""),
            )
        console.print(table)
    line("*: on the accuracy / latency Pareto front")
    for p in result.picks:
        line(p.message)
    for note in result.notes:
        line(note)
    line(f"reports: {result.out / 'sweep.md'}, {result.out / 'sweep.png'}")


def sweep(
    baseline: Annotated[
        Path, typer.Argument(help="Baseline checkpoint folder (a zoo baseline, or one from `sbdeploy import`).")
    ],
    data: Annotated[str, typer.Option("--data", help=f"{SOURCE_OPTION_HELP} Its test split measures top-1.")],
    out: Annotated[Path, typer.Option("--out", help="Sweep folder (an interrupted sweep goes on in it).")],
    batch: opt.Batches = "1,8",
    max_drop: Annotated[
        float | None, typer.Option(min=0.0, help="Name the fastest candidate within this many points of top-1.")
    ] = None,
    epochs: Annotated[int, typer.Option(min=0, help="Fine-tune epochs of each candidate (0: recalibration only).")] = 0,
    distill: Annotated[bool, typer.Option("--distill", help="Fine-tune on the baseline's logits too.")] = False,
    tune: Annotated[bool, typer.Option("--tune", help="Tune each candidate's ort-cpu file (tuning.md).")] = False,
    target: opt.Target = None,
    budget: opt.Budget = DEFAULT_BUDGET_S,
    threads: opt.Threads = None,
    calibration_images: Annotated[int, typer.Option(min=1, help="Training images for BN recalibration.")] = 2048,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Cut each fine-tune epoch to this many steps (smoke tests).")
    ] = None,
    as_json: opt.AsJson = False,
) -> None:
    """Sbify, recalibrate, measure top-1, export, validate and time every SB candidate of a trained baseline: the
    accuracy / latency front, and with --max-drop the fastest candidate within that many points of the baseline."""
    from sbdeploy.sweep import SweepOptions, run_sweep

    options = SweepOptions(
        batches=opt.parse_ints(batch, "--batch"),
        max_drop=max_drop,
        epochs=epochs,
        distill=distill,
        tune=tune,
        target=target,
        budget_s=budget,
        threads=threads,
        calibration_images=calibration_images,
        max_steps=max_steps,
    )
    with progress_bar("stage timing") as on_progress:
        result = run_sweep(baseline, data, out, options, on_progress=on_progress)
    show(
        result,
        render_sweep,
        as_json=as_json,
        written=[out / n for n in ("sweep.json", "sweep.md", "sweep.png")],
    )
