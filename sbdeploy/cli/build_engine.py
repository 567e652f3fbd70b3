"""``sbdeploy build-engine``: ONNX -> TensorRT engine + ``NAME.engine.json``, with a progress display."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.cli._progress import progress_bar
from sbdeploy.cli._render import console, print_json, warn
from sbdeploy.errors import ConfigError, InputError

if TYPE_CHECKING:
    import numpy as np


def _load_calibration(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(
            f"--calibration {path} is not a readable .npy array ({error}); save one with numpy.save"
        ) from None
    if array.ndim != 4 or not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"--calibration {path} must be a float array N x C x H x W, got {array.dtype} {array.shape}")
    return array.astype(np.float32)


def build_engine(
    onnx_file: Annotated[
        Path, typer.Argument(help="The ONNX model (from `sbdeploy export`).", exists=True, dir_okay=False)
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Engine path (default: engines/NAME.engine).")
    ] = None,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="fp16 engine: the fp16 pass runs first (strongly typed).")
    ] = False,
    int8: Annotated[bool, typer.Option("--int8", help="int8 engine from the QDQ model of the int8 pass.")] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(help="For --int8: .npy float array N x C x H x W of real, normalized inputs.", exists=True),
    ] = None,
    min_batch: Annotated[int, typer.Option(min=1, help="Smallest batch of the profile.")] = 1,
    opt_batch: Annotated[int, typer.Option(min=1, help="Batch TensorRT tunes for.")] = 8,
    max_batch: Annotated[int, typer.Option(min=1, help="Largest batch of the profile.")] = 32,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file, loaded and saved back.")] = None,
    opt_level: Annotated[int, typer.Option(min=0, max=5, help="Builder optimization level.")] = 3,
    workspace: Annotated[int | None, typer.Option(min=1, help="Workspace memory limit, MiB.")] = None,
    no_tf32: Annotated[bool, typer.Option("--no-tf32", help="No TF32 (strict fp32 parity).")] = False,
    version_compatible: Annotated[bool, typer.Option(help="Engine runs on later TensorRT of the same major.")] = False,
    fp16_flag: Annotated[
        bool, typer.Option(help="TensorRT 10.x only, with --fp16: BuilderFlag.FP16 instead of the fp16 pass.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecar as JSON.")] = False,
) -> None:
    """Build a TensorRT engine (TensorRT 10.x or 11.x) and its sidecar NAME.engine.json."""
    from sbdeploy.backends.tensorrt.builder import BuildOptions
    from sbdeploy.backends.tensorrt.builder import build_engine as build

    if fp16 and int8:
        raise ConfigError("choose one of --fp16 and --int8")
    options = BuildOptions(
        precision="fp16" if fp16 else "int8" if int8 else "fp32",
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        timing_cache=timing_cache,
        opt_level=opt_level,
        workspace_mib=workspace,
        tf32=not no_tf32,
        version_compatible=version_compatible,
        fp16_flag=fp16_flag,
    )
    engine_path = output or Path("engines") / f"{onnx_file.stem}.engine"
    array = _load_calibration(calibration)
    with progress_bar("reading ONNX") as progress:
        result = build(onnx_file, engine_path, options, calibration=array, progress=progress)
    sidecar = result.sidecar
    if as_json:
        print_json(sidecar.to_json())
        return
    table = Table(title=escape(f"engine {result.engine_path}"), show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("sidecar", escape(str(result.sidecar_path)))
    table.add_row("built on", escape(sidecar.built_on.describe()))
    table.add_row(
        "precision", escape(f"{sidecar.requested_precision} requested ({sidecar.builder_options.get('route')})")
    )
    table.add_row("layers by precision", escape(", ".join(f"{k} {v}" for k, v in sidecar.actual_precisions.items())))
    for name, shapes in sidecar.profiles[0].items():
        table.add_row(
            escape(f"profile {name}"), " / ".join("x".join(map(str, shapes[k])) for k in ("min", "opt", "max"))
        )
    table.add_row("build time", f"{sidecar.build_time_s:.1f} s")
    console.print(table)
    for warning in result.warnings:
        warn(warning, label="note")  # TensorRT's own messages: text, not markup
