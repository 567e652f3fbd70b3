"""``sbdeploy bench``: latency of models and files on backends, SB beside its baseline, with reports and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sbdeploy.bench.defaults import DEFAULT_BUDGET_S, DEFAULT_GOAL
from sbdeploy.cli import _options as opt
from sbdeploy.cli._progress import progress_bar
from sbdeploy.cli._render import console, line, new_table, show
from sbdeploy.targets import file_precision, requested_precisions


def render_warnings(report) -> None:  # noqa: ANN001  (BenchReport)
    """In yellow, one line per reason with every figure it holds for; what to do, once per advice."""
    for advice, summaries in report.warning_summary():
        for w in summaries:
            line(f"warning: {w.line()}", style="yellow", soft_wrap=True)
        line(f"  what to do: {advice}", style="yellow", soft_wrap=True)


def fail_if_unstable(report, figures: str = "figures") -> None:  # noqa: ANN001  (BenchReport)
    """``--strict``: exit 1 when a figure of the report is unstable."""
    if report.unstable:
        line(f"--strict: some {figures} are unstable (see the warnings); exit 1", style="bold red")
        raise typer.Exit(1)


SCREEN_OMITS = ("form", "precision", "GMACs/img", "p90 ms", "p99 ms", "img/s", "MAC ratio")
"""Columns of bench.md the terminal table leaves out, so no number is broken on 160 columns (the file name
says the form and precision, a run-time precision is said under it; bench.md, .csv and .json hold every column)."""


def _screen_cell(column: str, cell: str, row) -> str:  # noqa: ANN001  (BenchRow)
    if column == "file" and row.file is None:
        return f"{row.form}, {row.precision}"  # a torch row: the training code, no file
    if column == "file" and file_precision(row.backend, row.precision) != row.precision:
        return f"{cell}\n(run in {row.precision})"  # OpenVINO's bf16: a hint on the fp32 file, not in its name
    if column == "stable":
        return cell.replace(", ", ",\n")  # one flag a line
    return cell.replace(" (", "\n(", 1) if column.endswith("(CI)") else cell  # the interval under its figure


def render_bench(report) -> None:  # noqa: ANN001  (BenchReport)
    """The latency table and its legend, each group's length and load, int8's verdicts, notes and warnings."""
    from rich import box

    from sbdeploy.bench.render import (
        MARKDOWN_COLUMNS,
        baseline_lines,
        fastest_lines,
        fp16_lines,
        int8_lines,
        legend_lines,
        markdown_rows,
        shown_columns,
    )

    shown = [i for i in shown_columns(report.rows) if MARKDOWN_COLUMNS[i] not in SCREEN_OMITS]
    if "vs fp32 (CI)" in (MARKDOWN_COLUMNS[i] for i in shown):  # its room: the CV (bench.md keeps it)
        shown = [i for i in shown if MARKDOWN_COLUMNS[i] != "CV"]
    columns = [MARKDOWN_COLUMNS[i] for i in shown]
    text, no_wrap = ("model", "file", "backend", "stable"), set(columns) - {"stable"}
    table = new_table("sbdeploy bench (latency per batch)", columns, text, no_wrap, box=box.SIMPLE_HEAD)
    for row, cells in zip(report.rows, markdown_rows(report.rows)):
        screen = [escape(_screen_cell(MARKDOWN_COLUMNS[i], cells[i], row)) for i in shown]
        table.add_row(*screen, style="yellow" if row.unstable else None)
    console.print(table)
    for legend in legend_lines(report):
        line(legend, style="dim")
    if "GPU ms" in columns:
        line("GPU ms = median device compute time (CUDA events or a device-bound run), without host copies", "dim")
    for g in report.groups:
        m, rec = g.record.machine, g.record
        others = "" if m.others_cpu is None else f", other processes {m.others_cpu:.2f} CPUs"
        settle = f", each after {rec.settle_s * 1e3:.0f} ms of untimed runs" if rec.settle_s else ""
        line(
            f"{g.backend} batch {g.batch}: {rec.rounds} turns of {rec.turn} runs{settle} in {rec.seconds:.1f} s ({rec.stop}); "
            f"load {m.loads()} on {m.cpus_available} CPUs{others}",
            style="dim",
        )
    for comparison in fastest_lines(report) + baseline_lines(report):
        line(comparison, style="bold", soft_wrap=True)
    for verdict in fp16_lines(report) + int8_lines(report):
        line(verdict, style="bold" if "does not pay" in verdict else None)
    for note in report.settings.get("notes") or []:
        line(f"note: {note}", style="yellow")
    render_warnings(report)


def bench(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Zoo name, checkpoint folder, .onnx file or engine (repeatable).")
    ],
    backends: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: torch, torch-cuda, ort-cpu, ort-cuda, ort-trt, trt "
            "(default: torch,ort-cpu for models; the backend that runs each file for files)."
        ),
    ] = None,
    batch: opt.Batches = "1,8",
    warmup: Annotated[str, typer.Option(help="Warm-up per model: iterations (10) or seconds (2s).")] = "10",
    iters: opt.Iters = None,
    duration: Annotated[
        float | None, typer.Option(help="Fixed length: seconds per backend and batch.", min=0.01)
    ] = None,
    budget: opt.Budget = DEFAULT_BUDGET_S,
    ci: Annotated[
        float, typer.Option("--ci", help="Adaptive length: stop at 95% intervals within +-this %.", min=1.0, max=50.0)
    ] = DEFAULT_GOAL * 100,
    strict: opt.Strict = False,
    turn: Annotated[int, typer.Option(help="Timed runs of a model in a row (after 2 untimed) per turn.", min=1)] = 10,
    threads: opt.Threads = None,
    input_size: opt.InputSize = None,
    target: opt.Target = None,
    lowering: opt.OldLowering = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Time every -m against this one (zoo name, checkpoint folder, .onnx file or engine): "
            "one speedup each, with its interval."
        ),
    ] = None,
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Do not add the SB models' baselines.")] = False,
    fp16: opt.Fp16 = False,
    int8: opt.Int8 = False,
    bf16: opt.Bf16 = False,
    calibration: opt.Calibration = None,
    cuda_graph: Annotated[
        bool, typer.Option("--cuda-graph", help="trt: replay inference as a CUDA graph (needs cuda-python).")
    ] = False,
    artifacts: opt.Artifacts = None,
    report: Annotated[Path | None, opt.folder("Folder for bench.json/.csv/.md and the PNG plots.")] = None,
    as_json: opt.AsJson = False,
) -> None:
    """Time every model or file on every backend and batch size, in rotating turns, with one method.

    SB checkpoints and zoo names are timed beside their baselines; files are paired among themselves;
    with --baseline, every model and file against that one.
    """
    from sbdeploy.bench.render import write_report
    from sbdeploy.bench.timing import TimingPlan
    from sbdeploy.flow import run_bench

    warmup_iters, warmup_s = opt.parse_span(warmup, "--warmup")
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
            backends=None if backends is None else opt.split_list(backends, "--backends"),
            batches=opt.parse_ints(batch, "--batch"),
            plan=plan,
            threads=threads,
            input_size=opt.parse_size(input_size),
            target=opt.target_flags(target, lowering),
            add_baselines=not no_baselines,
            baseline=baseline,
            precisions=requested_precisions(fp16, int8, bf16),
            calibration=calibration,
            cuda_graph=cuda_graph,
            workdir=artifacts,
            on_progress=on_progress,
        )
    show(result, render_bench, as_json=as_json, written=write_report(result, report) if report else ())
    if strict:
        fail_if_unstable(result)
