"""Shared rendering helpers of the CLI: one console for results, one for errors."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

# Piped output (reports pasted into issues, CI logs) is not cut to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def stderr_line(label: str, message: str, *, style: str = "yellow") -> None:
    """``LABEL: MESSAGE`` on stderr, one line; the message is text, never markup (``'sbdeploy[serve]'`` stays whole)."""
    err_console.print(f"[{style}]{label}:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn(message: str, *, label: str = "warning") -> None:
    """``warning: MESSAGE`` on stderr."""
    stderr_line(label, message)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colour codes), for piping into other tools."""
    print(json.dumps(data, indent=2, sort_keys=False))


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


OldLowering = Annotated[
    str | None, typer.Option("--lowering", hidden=True, help="Old spelling of --target grouped / --target separate.")
]
"""The ``--lowering`` flag commands kept from before the target table."""


def target_flags(target: str | None, lowering: str | None) -> str | None:
    """The target of ``--target`` and the old ``--lowering``; a note on stderr when the old spelling is used."""
    from sbdeploy.targets import target_option

    chosen = target_option(target, lowering)
    if lowering is not None:
        warn(f"--lowering {lowering} is the old spelling of --target {chosen}", label="note")
    return chosen


def precision_flags(fp16: bool, int8: bool, calibration: str | None) -> tuple[str, ...]:
    """The precisions ``--fp16``/``--int8`` ask for, fp32 first; ConfigError for ``--calibration`` without ``--int8``."""
    from sbdeploy.errors import ConfigError
    from sbdeploy.targets import requested_precisions

    if calibration is not None and not int8:
        raise ConfigError("--calibration is for int8 artifacts; add --int8")
    return requested_precisions(fp16, int8)
