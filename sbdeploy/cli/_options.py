"""Parsing the CLI's option values (lists, sizes, spans) and the options several commands declare alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sbdeploy.cli._render import warn
from sbdeploy.errors import ConfigError
from sbdeploy.targets import target_option


def split_list(text: str, option: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c']; ConfigError when empty."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{option} needs at least one value")
    return items


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """'1,8,32' -> (1, 8, 32), each >= 1."""
    try:
        values = tuple(int(v) for v in split_list(text, option))
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, e.g. 1,8,32; got {text!r}") from None
    if min(values) < 1:
        raise ConfigError(f"{option} values must be >= 1, got {text!r}")
    return values


def parse_span(text: str, option: str) -> tuple[int | None, float | None]:
    """'20' -> 20 iterations; '2s' / '0.5s' -> seconds."""
    try:
        if text.endswith("s"):
            return None, float(text[:-1])
        return int(text), None
    except ValueError:
        raise ConfigError(f"{option} takes a count (e.g. 20) or seconds (e.g. 2s), got {text!r}") from None


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--input-size``: '32' -> (32, 32), '97x75' -> (97, 75)."""
    if text is None:
        return None
    try:
        values = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise ConfigError(f"--input-size must be H or HxW (e.g. 32 or 97x75), got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise ConfigError(f"--input-size must be H or HxW with positive integers, got {text!r}")
    return (values[0], values[-1])


def parse_batch(text: str) -> str | int:
    """``--batch`` of export: 'dynamic' or a positive integer."""
    if text == "dynamic":
        return "dynamic"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--batch must be 'dynamic' or a positive integer, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"--batch must be a positive integer, got {value}")
    return value


def target_flags(target: str | None, lowering: str | None) -> str | None:
    """The target of ``--target`` and the old ``--lowering``; a note on stderr when the old spelling is used."""
    chosen = target_option(target, lowering)
    if lowering is not None:
        warn(f"--lowering {lowering} is the old spelling of --target {chosen}", label="note")
    return chosen


Target = Annotated[
    str | None,
    typer.Option(
        help="One deploy target for every backend (grouped, separate, ort-cpu, ort-cuda, trt); default: each "
        "backend's own (ort-cpu -> ort-cpu, ort-cuda -> ort-cuda, ort-trt and trt -> trt)."
    ),
]
OldLowering = Annotated[str | None, typer.Option(hidden=True, help="Old spelling of --target grouped / separate.")]
Batches = Annotated[str, typer.Option(help="Comma-separated batch sizes (a fixed-batch file runs at its own).")]
Fp16 = Annotated[bool, typer.Option("--fp16", help="Also make and run fp16 artifacts (torch stays fp32).")]
Int8 = Annotated[bool, typer.Option("--int8", help="Also make and run int8 artifacts, each target's recipe.")]
Bf16 = Annotated[
    bool,
    typer.Option(
        "--bf16",
        help="Also make and run bf16: ov-cpu runs the fp32 files with OpenVINO's bf16 hint, ort-cpu the SB networks' "
        "files whose fused SB nodes compute in bf16.",
    ),
]
Calibration = Annotated[
    str | None,
    typer.Option(
        help="With --int8: calibration data, a data source (its training images, e.g. digits) or a .npy of "
        "normalized N x C x H x W inputs; default: the checkpoint's own dataset."
    ),
]
InputSize = Annotated[str | None, typer.Option(help="H or HxW of checkpoints and zoo models; default: their own.")]
Threads = Annotated[int | None, typer.Option(help="Intra-op threads of torch and ONNX Runtime CPU.", min=1)]
Limit = Annotated[int | None, typer.Option(help="Validate on at most this many real images.", min=1)]
Iters = Annotated[
    int | None, typer.Option(help="Fixed length: timed runs per model (default: adaptive, see --budget).", min=1)
]
Budget = Annotated[
    float,
    typer.Option(
        help="Adaptive length: at most this many seconds of timed turns per backend and batch (and per batch for "
        "the fastest files across backends).",
        min=0.01,
    ),
]
Strict = Annotated[bool, typer.Option("--strict", help="Exit 1 when a bench figure is unstable (for CI gates).")]


def folder(text: str) -> Any:
    """An option that names a folder, with its help ``text``."""
    return typer.Option(help=text, file_okay=False)


Artifacts = Annotated[
    Path | None, folder("Make the artifacts into this folder and keep them (default: a temporary one).")
]
TuneBudget = Annotated[
    float | None,
    typer.Option(help="--tune: at most this many seconds of timed turns per stage [default: 10].", min=0.01),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")]
