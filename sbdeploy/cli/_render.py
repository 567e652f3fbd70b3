"""Shared rendering helpers of the CLI: one console for results, one for errors."""

from __future__ import annotations

import json
import sys
from typing import Any

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
