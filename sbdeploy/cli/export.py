"""``sbdeploy export`` (checkpoint or zoo name -> ONNX) and ``sbdeploy check`` (TensorRT compatibility)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sbdeploy.cli import _options as opt
from sbdeploy.cli._progress import progress_bar
from sbdeploy.cli._render import console, line, new_table, print_json, warn
from sbdeploy.targets import get_target, requested_precisions


def _render_trt(report, gating: bool = True) -> None:  # noqa: ANN001  (TrtCheckReport)
    verdict = (
        "[green]ok[/]" if report else "[bold red]unsupported nodes[/]" if gating else "[yellow]unsupported nodes[/]"
    )
    console.print(
        f"TensorRT check ({escape(report.source)}): {verdict}, {len(report.errors)} error(s), "
        f"{len(report.warnings)} warning(s), {report.nodes} nodes, opset {report.opset}",
        highlight=False,
    )
    if not gating:
        if not report:
            console.print(
                "  (this target is not run by TensorRT: for information only, --check does not fail on it)",
                style="dim",
                highlight=False,
            )
        return
    for issue in report.issues:
        colour = "red" if issue.severity == "error" else "yellow"
        console.print(
            f"  [{colour}]{issue.severity}[/] {escape(f'{issue.op_type} {issue.node}: {issue.message}')}",
            highlight=False,
        )


def render_export(result, tuning, gating: bool) -> None:  # noqa: ANN001  (ExportResult, TuneResult | None)
    """The passes table, the op census, the TensorRT check, int8's calibration, the tuning and the file written."""
    for warning in result.warnings:
        warn(warning)
    meta = result.metadata
    title = escape(f"passes on {meta['arch']} (target {meta['target']}: {meta['lowering']}, {meta['precision']})")
    changed_ops = "changed ops (before -> after)"
    table = new_table(title, ("pass", "nodes before", "nodes after", changed_ops), ("pass", changed_ops))
    for r in result.pass_reports:
        changed = ", ".join(f"{op} {a}->{b}" for op, (a, b) in r.changed_ops().items()) or "-"
        table.add_row(escape(r.name), str(r.nodes_before), str(r.nodes_after), escape(changed))
    console.print(table)
    line("ops: " + ", ".join(f"{op} {n}" for op, n in result.ops.items()))
    _render_trt(result.trt_check, gating)
    if "int8" in meta:
        cal = meta["int8"]["calibration"]
        line(f"int8: {meta['int8']['form']}; calibrated on {cal['images']} images of {cal['source']} ({cal['split']})")
    if tuning is not None:
        _render_tuning(tuning)
    elif (meta.get("tuning") or {}).get("tuned") is False:
        warn(
            f"form {meta['lowering']} chosen by the target's rule ({meta['tuning']['rule']}), not tuned: "
            "--tune times every candidate form and session setting on this machine",
            label="note",
        )
    line(f"wrote {result.path} (sha256 {result.sha256[:16]}...)")


def _render_tuning(tuning) -> None:  # noqa: ANN001  (TuneResult)
    title = f"tuning: {tuning.target} {tuning.precision}, batch {tuning.batch}, {tuning.threads} threads"
    columns = ("stage", "form", "session settings", "median ms (95% CI)", "CV", "speedup vs default (95% CI)")
    table = new_table(title, columns, ("stage", "form", "session settings"))
    for t in tuning.times:
        form = f"[bold]{t.candidate.lowering} (chosen)[/]" if tuning.is_chosen(t) else t.candidate.lowering
        table.add_row(t.stage, form, t.candidate.describe_settings(), *t.cells())
    console.print(table)
    for stage in tuning.stages:
        line(stage.describe())
    line(f"chosen: {tuning.chosen.label} ({tuning.decision})")
    if tuning.busy_warning():
        warn(tuning.busy_warning())


def export(
    source: Annotated[str, typer.Argument(help="Checkpoint folder, or a zoo name (random weights).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.", dir_okay=False)],
    opset: Annotated[int, typer.Option(help="Target ONNX opset (13 or newer).", min=13)] = 17,
    batch: Annotated[str, typer.Option(help="'dynamic' or a fixed batch size.")] = "dynamic",
    input_size: opt.InputSize = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Deploy target: grouped (the canonical form, default), separate, ort-cpu, ov-cpu, ort-cuda or trt."
        ),
    ] = None,
    lowering: opt.OldLowering = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Write the fp16 artifact (fp32 inputs and outputs).")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="Write the int8 artifact, the target's recipe (fp32 inputs and outputs).")
    ] = False,
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16",
            help="Write the bf16 artifact: the fused SB nodes compute in bf16, the rest in fp32 (ort-cpu, where "
            "sbdeploy's kernel library is built). On ov-cpu bf16 is a run-time setting of the fp32 file: with --tune "
            "the forms are timed in bf16 and the fp32 file is written.",
        ),
    ] = False,
    calibration: opt.Calibration = None,
    passes: Annotated[str | None, typer.Option(help="Comma-separated passes; default: the target's.")] = None,
    sampling: Annotated[str | None, typer.Option(help="Sampling set, for a zoo name only.")] = None,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Fail on TensorRT check errors (targets TensorRT runs).")
    ] = True,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Time every candidate form (and ONNX Runtime session setting) of the target (default with --tune: "
            "ort-cpu; or ov-cpu) for this model, batch and thread count on this machine; write the fastest.",
        ),
    ] = False,
    threads: Annotated[
        int | None, typer.Option(help="--tune: the thread budget (default: the CPUs this process may use).", min=1)
    ] = None,
    tune_budget: opt.TuneBudget = None,
    tune_forms: Annotated[
        str | None, typer.Option(help="--tune: comma-separated variants to try too (default: all; e.g. taps,stacked).")
    ] = None,
    as_json: opt.AsJson = False,
) -> None:
    """Export a checkpoint (or zoo network) to ONNX in a deploy target's exact form."""
    from sbdeploy.flow import ExportOptions, run_export

    options = ExportOptions(
        target=opt.target_flags(target, lowering),
        precisions=requested_precisions(fp16, int8, bf16),
        batch=opt.parse_batch(batch),
        input_size=opt.parse_size(input_size),
        opset=opset,
        passes=None if passes is None else tuple(p.strip() for p in passes.split(",") if p.strip()),
        calibration=calibration,
        tune=tune,
        tune_budget=10.0 if tune_budget is None else tune_budget,
        threads=threads,
        variants=None if tune_forms is None else tuple(v.strip() for v in tune_forms.split(",") if v.strip()),
    )
    new_folder = not output.parent.exists()
    with progress_bar("tuning") if tune else contextlib.nullcontext() as on_progress:
        result, tuning = run_export(
            source, output, options, model_options={"sampling": sampling} if sampling else None, on_progress=on_progress
        )
    # TensorRT runs this target's files: its parser's verdict gates the export
    gating = any(b in ("trt", "ort-trt") for b in get_target(result.metadata["target"]).backends)
    if new_folder:
        warn(f"created folder {output.parent}", label="note")
    if as_json:
        print_json(
            {
                "path": str(result.path),
                "sha256": result.sha256,
                "metadata": result.metadata,
                "passes": [r.to_dict() for r in result.pass_reports],
                "ops": result.ops,
                "trt_check": result.trt_check.to_dict(),
                "warnings": list(result.warnings),
                "tuning": result.metadata.get("tuning"),
            }
        )
    else:
        render_export(result, tuning, gating)
    if check and gating and not result.trt_check:
        raise typer.Exit(1)


def check(
    path: Annotated[Path, typer.Argument(help="ONNX file to check.", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Check an ONNX file against TensorRT's ONNX parser support list (exit 1 on errors)."""
    from sbdeploy.export.metadata import load_onnx
    from sbdeploy.passes.trt_check import check_trt_compat

    report = check_trt_compat(load_onnx(path))
    if as_json:
        print_json(report.to_dict())
    else:
        _render_trt(report)
    if not report:
        raise typer.Exit(1)
