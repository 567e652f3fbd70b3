"""``sbdeploy bench``: latency of models and files on backends, SB beside its baseline, with reports and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.bench.defaults import DEFAULT_BUDGET_S, DEFAULT_GOAL
from sbdeploy.cli._options import OldLowering, parse_ints, parse_size, parse_span, precisions, split_list, target_flags
from sbdeploy.cli._progress import progress_bar
from sbdeploy.cli._render import console, err_console, print_json


def render_warnings(report) -> None:  # noqa: ANN001  (BenchReport)
    """In yellow, one line per reason listing every figure (or group) it holds for with its numbers; what to do, once per advice.

    The machine's flags (load, other processes) are one line each across the groups; the
    JSON report keeps every flag of every figure.
    """
    for advice, summaries in report.warning_summary():
        for w in summaries:
            console.print(f"warning: {w.line()}", style="yellow", highlight=False, markup=False, soft_wrap=True)
        console.print(f"  what to do: {advice}", style="yellow", highlight=False, markup=False, soft_wrap=True)


SCREEN_OMITS = ("form", "precision", "GMACs/img", "p90 ms", "p99 ms", "img/s", "MAC ratio")
"""Columns of bench.md the terminal table leaves out, so no number is broken on 160 columns (the file name
says the form and precision; bench.md, .csv and .json hold every column)."""


def _screen_cell(column: str, cell: str, row) -> str:  # noqa: ANN001  (BenchRow)
    if column == "file" and row.file is None:
        return f"{row.form}, {row.precision}"  # a torch row: the training code, no file
    if column == "stable":
        return cell.replace(", ", ",\n")  # one flag a line
    return cell.replace(" (", "\n(", 1) if column.endswith("(CI)") else cell  # the interval under its figure


def render_bench(report) -> None:  # noqa: ANN001  (BenchReport)
    from rich import box

    from sbdeploy.bench.render import MARKDOWN_COLUMNS, int8_lines, legend_lines, markdown_rows, shown_columns

    table = Table(title="sbdeploy bench (latency per batch)", box=box.SIMPLE_HEAD)
    shown = [i for i in shown_columns(report.rows) if MARKDOWN_COLUMNS[i] not in SCREEN_OMITS]
    if "vs fp32 (CI)" in (MARKDOWN_COLUMNS[i] for i in shown):  # its room: the CV (the stable column says "spread")
        shown = [i for i in shown if MARKDOWN_COLUMNS[i] != "CV"]
    gpu = "GPU ms" in (MARKDOWN_COLUMNS[i] for i in shown)
    for i in shown:
        column = MARKDOWN_COLUMNS[i]
        left = column in ("model", "file", "backend", "stable")
        table.add_column(column, justify="left" if left else "right", no_wrap=column != "stable")
    for row, cells in zip(report.rows, markdown_rows(report.rows)):
        table.add_row(
            *(escape(_screen_cell(MARKDOWN_COLUMNS[i], cells[i], row)) for i in shown),
            style="yellow" if row.unstable else None,
        )
    console.print(table)
    for line in legend_lines(report):
        console.print(line, style="dim", highlight=False, markup=False)
    if gpu:
        console.print(
            "GPU ms = median device compute time (CUDA events or a device-bound run), without host copies", style="dim"
        )
    for g in report.groups:
        m, rec = g.record.machine, g.record
        others = "" if m.others_cpu is None else f", other processes {m.others_cpu:.2f} CPUs"
        console.print(
            f"{g.backend} batch {g.batch}: {rec.rounds} turns of {rec.turn} runs in {rec.seconds:.1f} s ({rec.stop}); "
            f"load {m.loads()} on {m.cpus_available} CPUs{others}",
            style="dim",
            highlight=False,
            markup=False,
        )
    for line in int8_lines(report):
        console.print(line, style="bold" if "does not pay" in line else None, highlight=False, markup=False)
    for note in report.settings.get("notes") or []:
        console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    render_warnings(report)


def bench(
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            "-m",
            help="Zoo name, checkpoint folder, .onnx file or TensorRT engine (repeatable); "
            "baselines of SB checkpoints and zoo names are added, files are paired among themselves.",
        ),
    ],
    backends: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: torch, torch-cuda, ort-cpu, ort-cuda, ort-trt, trt "
            "(default: torch,ort-cpu for models; the backend that runs each file for files)."
        ),
    ] = None,
    batch: Annotated[
        str, typer.Option(help="Comma-separated batch sizes (a fixed-batch file runs at its own).")
    ] = "1,8",
    warmup: Annotated[str, typer.Option(help="Warm-up per model: iterations (10) or seconds (2s).")] = "10",
    iters: Annotated[
        int | None, typer.Option(help="Fixed length: timed runs per model (default: adaptive, see --budget).", min=1)
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Fixed length: measure each backend and batch for this many seconds.", min=0.01)
    ] = None,
    budget: Annotated[
        float,
        typer.Option(help="Adaptive length: at most this many seconds of timed turns per backend and batch.", min=0.01),
    ] = DEFAULT_BUDGET_S,
    ci: Annotated[
        float,
        typer.Option(
            "--ci", help="Adaptive length: stop once every 95% interval is within +-this percentage.", min=1.0, max=50.0
        ),
    ] = DEFAULT_GOAL * 100,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when any figure is unstable (for CI gates).")
    ] = False,
    turn: Annotated[
        int,
        typer.Option(
            help="Timed runs of one model in a row, after 2 untimed ones, before the next model's turn.", min=1
        ),
    ] = 10,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads of torch and ONNX Runtime CPU.", min=1)] = None,
    input_size: Annotated[
        str | None, typer.Option("--input-size", help="H or HxW for every checkpoint or zoo model.")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="One deploy target for every backend (grouped, separate, ort-cpu, ort-cuda, trt); "
            "default: each backend's own (ort-cpu -> ort-cpu, ort-cuda -> ort-cuda, ort-trt and trt -> trt)."
        ),
    ] = None,
    lowering: OldLowering = None,
    no_baselines: Annotated[
        bool, typer.Option("--no-baselines", help="Do not add the baselines of SB models.")
    ] = False,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Also time fp16 artifacts (rows beside fp32; torch stays fp32).")
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8", help="Also time int8 artifacts, each target's recipe (rows beside fp32; torch stays fp32)."
        ),
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="With --int8: calibration data, a data source or a .npy of normalized inputs (default: a checkpoint's dataset)."
        ),
    ] = None,
    cuda_graph: Annotated[
        bool, typer.Option("--cuda-graph", help="trt: replay inference as a CUDA graph (needs cuda-python).")
    ] = False,
    artifacts: Annotated[
        Path | None,
        typer.Option(
            help="Make the artifacts of checkpoints and zoo names into this folder and keep them.", file_okay=False
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Folder for bench.json/.csv/.md and the PNG plots.", file_okay=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Time every model or file on every backend and batch size, in rotating turns, with one method."""
    from sbdeploy.bench.render import write_report
    from sbdeploy.bench.timing import TimingPlan
    from sbdeploy.flow import run_bench

    warmup_iters, warmup_s = parse_span(warmup, "--warmup")
    plan = TimingPlan(
        warmup_iters=warmup_iters or 0,
        warmup_s=warmup_s,
        iters=None if duration else iters,
        duration_s=duration,
        budget_s=budget,
        goal=ci / 100,
        turn=turn,
    )
    with progress_bar() as on_progress:
        result = run_bench(
            model,
            backends=None if backends is None else split_list(backends, "--backends"),
            batches=parse_ints(batch, "--batch"),
            plan=plan,
            threads=threads,
            input_size=parse_size(input_size),
            target=target_flags(target, lowering),
            add_baselines=not no_baselines,
            precisions=precisions(fp16, int8),
            calibration=calibration,
            cuda_graph=cuda_graph,
            workdir=artifacts,
            on_progress=on_progress,
        )
    if report is not None:
        for path in write_report(result, report):
            (err_console if as_json else console).print(
                f"wrote {path}", highlight=False, markup=False
            )  # stdout stays JSON
    if as_json:
        print_json(result.to_dict())
    else:
        render_bench(result)
    if strict and result.unstable:
        console.print(
            "--strict: some figures are unstable (see the warnings); exit 1", style="bold red", highlight=False
        )
        raise typer.Exit(1)
