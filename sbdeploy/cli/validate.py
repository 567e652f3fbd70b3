"""``sbdeploy validate``: PyTorch vs every artifact (ONNX on ONNX Runtime, TensorRT engines)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.cli._progress import progress_bar
from sbdeploy.cli._render import OldLowering, console, err_console, precision_flags, print_json, target_flags
from sbdeploy.errors import ConfigError
from sbdeploy.targets import ONNX_BACKENDS


def split_list(text: str, option: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c']; ConfigError when empty."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{option} needs at least one value")
    return items


def _checkpoint_argument(path: Path) -> Path:
    """The CHECKPOINT argument, refused in one line when it is the file to check (``validate r20.onnx``)."""
    from sbdeploy.files import ENGINE_SUFFIXES

    if (path.suffix == ".onnx" or path.suffix in ENGINE_SUFFIXES) and not path.is_dir():
        option = "--onnx" if path.suffix == ".onnx" else "--engine"
        what = "is a model file" if path.is_file() else "does not exist (and is named like a model file)"
        raise ConfigError(f"{path} {what}: validate takes the checkpoint folder it was exported from first and the file "
                          f"after {option}: `sbdeploy validate CHECKPOINT {option} {path}`")  # fmt: skip
    return path


def render_validation(report) -> None:  # noqa: ANN001  (ValidationReport)
    """Checks table (one row per file and input), accuracy table and the verdict line."""
    table = Table(title="parity against PyTorch")
    columns = ("file", "backend", "precision", "input", "max abs", "mean abs", "min cosine", "top-1 agree", "verdict")
    for column in columns:
        table.add_column(column, justify="left" if column in ("file", "backend", "precision", "input", "verdict") else "right",
                         no_wrap=column == "file")  # fmt: skip
    for c in report.checks:
        s = c.stats
        verdict = (
            ("[green]pass[/]" if c.passed else f"[bold red]FAIL[/] {escape(c.reason)}")
            if c.judged
            else f"[dim]{escape(c.verdict_text)}[/]"
        )
        table.add_row(escape(c.file), c.backend, c.precision, escape(c.case), f"{s.max_abs:.3g}", f"{s.mean_abs:.3g}", f"{s.min_cosine:.6f}",
                      f"{s.top1_agreement:.1%}", verdict)  # fmt: skip
    console.print(table)
    if report.accuracy:
        acc = Table(title="accuracy")
        for column in ("file", "backend", "dataset", "images", "top-1", "top-5", "vs PyTorch"):
            acc.add_column(column, justify="left" if column in ("file", "backend", "dataset") else "right")
        for a in report.accuracy:
            acc.add_row(escape(a.file or "PyTorch"), a.backend, escape(a.dataset), str(a.samples), f"{a.top1:.2%}",
                        "-" if a.top5 is None else f"{a.top5:.2%}", f"{a.delta_top1:+.2f} pt")  # fmt: skip
        console.print(acc)
    for a in report.artifacts:
        console.print(f"{a.file}: sha256 {a.sha256}", style="dim", highlight=False, markup=False)
    from sbdeploy.validate.run import tf32_notes

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


def write_validation_report(report, folder: Path) -> list[Path]:  # noqa: ANN001
    """validate.json and validate.md in ``folder`` (atomic writes)."""
    from sbdeploy._io import atomic_write_bytes
    from sbdeploy.validate.run import to_markdown

    paths = [folder / "validate.json", folder / "validate.md"]
    atomic_write_bytes(paths[0], (json.dumps(report.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(paths[1], to_markdown(report).encode())
    return paths


def validate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder: the PyTorch training code is the reference.")],
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run PyTorch and every artifact on the same inputs; exit 1 when any check fails.

    Each file is judged by its deploy target's tolerance for its precision (default fp32
    |diff| <= 1e-4 + 1e-3*|ref|; fp16 5e-2 + 5e-2*|ref|; int8 cosine >= 0.98 and top-1
    agreement >= 90%, on real images: its random-batch runs are shown, not judged). Any NaN/Inf fails. Without --onnx/--engine, validate makes the
    artifacts bench would time for --backends (sbdeploy.artifacts) and checks those.
    """
    from sbdeploy.artifacts import make_artifacts, plan_artifacts
    from sbdeploy.backends import get_runner
    from sbdeploy.calibration import calibration_for
    from sbdeploy.checkpoint import load_checkpoint
    from sbdeploy.cli.bench import parse_ints
    from sbdeploy.export import resolve_source
    from sbdeploy.files import describe_file
    from sbdeploy.validate.compare import DEFAULT_TOLERANCES
    from sbdeploy.validate.run import artifact_of, check_same_model, dataset_case, engine_artifact
    from sbdeploy.validate.run import validate as run_validate

    names = split_list(backends, "--backends")
    unknown = [b for b in names if b not in ONNX_BACKENDS]
    if unknown:
        raise ConfigError(
            f"--backends takes {', '.join(ONNX_BACKENDS)} (engines are given with --engine), got {unknown}"
        )
    forced = target_flags(target, lowering)
    if (onnx or engine) and int8:
        raise ConfigError(
            "--int8 makes int8 artifacts; a given file (--onnx/--engine) is judged by the precision it holds"
        )
    precisions = precision_flags(fp16, int8, calibration)
    ckpt = load_checkpoint(_checkpoint_argument(checkpoint))
    tolerances = None
    if atol is not None or rtol is not None:
        tolerances = {
            k: dataclasses.replace(
                t, atol=atol if atol is not None else t.atol, rtol=rtol if rtol is not None else t.rtol
            )
            for k, t in DEFAULT_TOLERANCES.items()
        }
    source = data or ckpt.config.dataset or None
    calibrations = calibration_for({checkpoint.name: ckpt.config}, calibration) if int8 else None
    if int8 and source is None:  # said before anything is made
        raise ConfigError(
            "--int8 files are judged on real images (their scales are calibrated on them); the checkpoint names "
            "no dataset: give --data SOURCE"
        )
    with tempfile.TemporaryDirectory(prefix="sbdeploy-validate-") as tmp:
        if onnx or engine:
            files = [describe_file(f) for f in onnx or []]  # each read and hashed once, whatever the backends
            checked = [artifact_of(f, b) for f in files for b in names] + [engine_artifact(e) for e in engine or []]
            for artifact in checked:  # a given file of another model: said before reading any data or running anything
                if artifact.file_info is not None:
                    check_same_model(artifact.file_info, ckpt)
        else:
            label = checkpoint.name
            plans, _ = plan_artifacts(
                [(label, "model")], names, parse_ints(batch, "--batch"), precisions=precisions, target=forced
            )
            with progress_bar("making the deploy artifacts") as on_progress:
                made = make_artifacts(plans, {label: resolve_source(checkpoint)}, artifacts or Path(tmp), on_progress=on_progress,
                                      calibration=calibrations)  # fmt: skip
            checked = [artifact_of(made[p.filename], b) for p in plans for b in p.backends]
        dataset = dataset_case(source, ckpt.config, limit=limit) if source else None
        with progress_bar("validating") as on_progress:
            result = run_validate(
                ckpt,
                checked,
                runner_factory=lambda a: get_runner(a.backend, a.path),
                dataset=dataset,
                tolerances=tolerances,
                on_progress=lambda text, done, total: on_progress(f"validating: {text}", done, total),
            )
    if report is not None:
        for path in write_validation_report(result, report):
            (err_console if as_json else console).print(
                f"wrote {path}", highlight=False, markup=False
            )  # stdout stays JSON
    if as_json:
        print_json(result.to_dict())
    else:
        render_validation(result)
    if not result:
        raise typer.Exit(1)
