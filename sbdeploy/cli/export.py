"""``sbdeploy export`` (checkpoint or zoo name -> ONNX) and ``sbdeploy check`` (TensorRT compatibility)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.cli._render import OldLowering, console, precision_flags, print_json, target_flags, warn
from sbdeploy.errors import ConfigError

TUNED_DEFAULT = "ort-cpu"
"""The target ``export --tune`` tunes when no ``--target`` is given (the one whose form is chosen on the machine)."""


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--input-size must be H or HxW (e.g. 32 or 97x75), got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise ConfigError(f"--input-size must be H or HxW with positive integers, got {text!r}")
    return (values[0], values[-1])


def _parse_batch(text: str) -> str | int:
    if text == "dynamic":
        return "dynamic"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--batch must be 'dynamic' or a positive integer, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"--batch must be a positive integer, got {value}")
    return value


TENSORRT_BACKENDS = ("trt", "ort-trt")


def runs_on_tensorrt(target: str) -> bool:
    """Whether TensorRT runs this target's files, so its parser's verdict gates the export."""
    from sbdeploy.targets import get_target

    return any(b in TENSORRT_BACKENDS for b in get_target(target).backends)


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
            console.print("  (this target is not run by TensorRT: for information only, --check does not fail on it)",
                          style="dim", highlight=False)  # fmt: skip
        return
    for issue in report.issues:
        colour = "red" if issue.severity == "error" else "yellow"
        console.print(
            f"  [{colour}]{issue.severity}[/] {escape(f'{issue.op_type} {issue.node}: {issue.message}')}",
            highlight=False,
        )


def export(
    source: Annotated[str, typer.Argument(help="Checkpoint folder, or a zoo name (random weights).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.", dir_okay=False)],
    opset: Annotated[int, typer.Option(help="Target ONNX opset (13 or newer).", min=13)] = 17,
    batch: Annotated[str, typer.Option(help="'dynamic' or a fixed batch size.")] = "dynamic",
    input_size: Annotated[str | None, typer.Option("--input-size", help="H or HxW; default: the checkpoint's.")] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Deploy target (sbdeploy.targets): grouped (the canonical interchange form, default), separate, "
            "ort-cpu, ort-cuda or trt (each exact)."
        ),
    ] = None,  # fmt: skip
    lowering: OldLowering = None,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Write the fp16 artifact (fp32 inputs and outputs kept).")
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8", help="Write the int8 artifact, quantized by the target's recipe (fp32 inputs and outputs kept)."
        ),
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="int8 calibration data: a data source (its training images, e.g. digits) or a .npy of normalized "
            "N x C x H x W inputs; default: the checkpoint's own dataset."
        ),
    ] = None,  # fmt: skip
    passes: Annotated[str | None, typer.Option(help="Comma-separated passes; default: the target's.")] = None,
    sampling: Annotated[str | None, typer.Option(help="Sampling set, for a zoo name only.")] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Fail when the TensorRT check finds errors (targets TensorRT runs: grouped, separate, trt).",
        ),
    ] = True,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Time every candidate form and ONNX Runtime session setting of the target "
            "(default with --tune: ort-cpu) for this model, batch and thread count on this machine; "
            "write the fastest.",
        ),
    ] = False,
    threads: Annotated[
        int | None, typer.Option(help="--tune: the thread budget (default: the CPUs this process may use).", min=1)
    ] = None,
    tune_budget: Annotated[
        float, typer.Option(help="--tune: at most this many seconds of timed turns per tuning stage.", min=0.01)
    ] = 10.0,
    tune_forms: Annotated[
        str | None,
        typer.Option(
            help="--tune: the target's variants to try besides its own form, "
            "comma-separated (default: all; e.g. taps,stacked)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Export a checkpoint (or zoo network) to ONNX in a deploy target's exact form."""
    from sbdeploy.export import export_source, resolve_source
    from sbdeploy.targets import CANONICAL

    forced = target_flags(target, lowering)
    if fp16 and int8:
        raise ConfigError("--fp16 and --int8 each write one artifact; give one of them")
    precision = precision_flags(fp16, int8, calibration)[
        -1
    ]  # the one file written; --calibration without --int8 is refused
    pass_names = None if passes is None else tuple(p.strip() for p in passes.split(",") if p.strip())
    new_folder = not output.parent.exists()
    if tune and int8:
        raise ConfigError(
            "--tune times fp32 and fp16 files; an int8 file keeps its target's rule form: drop --tune or --int8"
        )
    if not tune and (threads is not None or tune_forms is not None):
        raise ConfigError("--threads and --tune-forms belong to --tune; without --tune the form is the target's rule's")
    size = _parse_size(input_size)
    src = resolve_source(source, options={"sampling": sampling} if sampling else None)
    batch_size = _parse_batch(batch)
    deploy = forced or (TUNED_DEFAULT if tune else CANONICAL)
    tuning = None
    if tune:
        variants = None if tune_forms is None else tuple(v.strip() for v in tune_forms.split(",") if v.strip())
        result, tuning = _tuned_export(src, output, precision=precision, threads=threads, budget=tune_budget, variants=variants,
                                       opset=opset, batch=batch_size, input_size=size, target=deploy, passes=pass_names)  # fmt: skip
    else:
        calibration_data = None
        if int8:
            from sbdeploy.calibration import load_calibration

            calibration_data = load_calibration(calibration, src.config, input_size=size)
        result = export_source(src, {precision: output}, opset=opset, batch=batch_size, input_size=size, target=deploy,
                               passes=pass_names, calibration=calibration_data)[precision]  # fmt: skip
    gating = runs_on_tensorrt(result.metadata["target"])
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
        for warning in result.warnings:
            warn(warning)
        meta = result.metadata
        table = Table(
            title=escape(f"passes on {meta['arch']} (target {meta['target']}: {meta['lowering']}, {meta['precision']})")
        )
        for column in ("pass", "nodes before", "nodes after", "changed ops (before -> after)"):
            table.add_column(column, justify="left" if column in ("pass", "changed ops (before -> after)") else "right")
        for r in result.pass_reports:
            changed = ", ".join(f"{op} {a}->{b}" for op, (a, b) in r.changed_ops().items()) or "-"
            table.add_row(escape(r.name), str(r.nodes_before), str(r.nodes_after), escape(changed))
        console.print(table)
        console.print("ops: " + ", ".join(f"{op} {n}" for op, n in result.ops.items()), highlight=False, markup=False)
        _render_trt(result.trt_check, gating)
        if "int8" in meta:
            cal = meta["int8"]["calibration"]
            console.print(f"int8: {meta['int8']['form']}; calibrated on {cal['images']} images of {cal['source']} ({cal['split']})",
                          highlight=False, markup=False)  # fmt: skip
        if tuning is not None:
            _render_tuning(tuning)
        elif (result.metadata.get("tuning") or {}).get("tuned") is False:
            warn(f"form {meta['lowering']} chosen by the target's rule ({meta['tuning']['rule']}), not tuned: "
                 "--tune times every candidate form and session setting on this machine", label="note")  # fmt: skip
        console.print(f"wrote {result.path} (sha256 {result.sha256[:16]}...)", highlight=False, markup=False)
    if check and gating and not result.trt_check:
        raise typer.Exit(1)


def _tuned_export(
    src,
    output: Path,
    *,
    precision: str,
    threads: int | None,
    budget: float,  # noqa: ANN001  (ModelSource)
    variants: tuple[str, ...] | None,
    opset: int,
    batch: str | int,
    input_size: tuple[int, int] | None,
    target: str,
    passes: tuple[str, ...] | None,
) -> tuple:  # noqa: ANN001  (ExportResult, TuneResult)
    """``export --tune``: every candidate exported and timed (with a progress bar), the fastest written."""
    from sbdeploy.cli._progress import progress_bar
    from sbdeploy.tune import tune_budget_options, tune_export

    tune = tune_budget_options(budget, threads=threads, variants=variants)
    with progress_bar("tuning") as on_progress:
        results = tune_export(src, {precision: output}, target=target, batch=batch, input_size=input_size, opset=opset,
                              passes=passes, options=tune, on_progress=on_progress)  # type: ignore[arg-type]  # fmt: skip
    return results[precision]


def _render_tuning(tuning) -> None:  # noqa: ANN001  (TuneResult)
    table = Table(title=f"tuning: {tuning.target} {tuning.precision}, batch {tuning.batch}, {tuning.threads} threads")
    for column in ("stage", "form", "session settings", "median ms (95% CI)", "CV", "speedup vs default (95% CI)"):
        table.add_column(column, justify="left" if column in ("stage", "form", "session settings") else "right")
    for t in tuning.times:
        form = f"[bold]{t.candidate.lowering} (chosen)[/]" if tuning.is_chosen(t) else t.candidate.lowering
        table.add_row(t.stage, form, t.candidate.settings.describe(), *t.cells())
    console.print(table)
    for stage in tuning.stages:
        console.print(f"stage {stage.stage}: {stage.rounds} turns, {stage.seconds:.1f} s, {stage.stop}; {stage.load_text()}",
                      highlight=False)  # fmt: skip
    console.print(f"chosen: {tuning.chosen.label} ({tuning.decision})", highlight=False)
    if tuning.busy_warning():
        warn(tuning.busy_warning())


def check(
    path: Annotated[Path, typer.Argument(help="ONNX file to check.", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Check an ONNX file against TensorRT's ONNX parser support list (exit 1 on errors)."""
    from sbdeploy.export import load_onnx
    from sbdeploy.passes.trt_check import check_trt_compat

    report = check_trt_compat(load_onnx(path))
    if as_json:
        print_json(report.to_dict())
    else:
        _render_trt(report)
    if not report:
        raise typer.Exit(1)
