"""Shared rendering of the CLI: one console for results, one for errors, and the lines and tables commands print."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Piped output (reports pasted into issues, CI logs) is not cut to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

STATUS_MARKS = {"ok": "[green]ok[/]", "skipped": "[yellow]skipped[/]", "FAILED": "[bold red]FAILED[/]"}
"""A pipeline step's status, coloured."""


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


def line(text: str, style: str | None = None, **options: Any) -> None:
    """One line of text on stdout as it is: never read as markup, nothing highlighted."""
    console.print(text, style=style, highlight=False, markup=False, **options)


def new_table(
    title: str, columns: Sequence[str], left: Collection[str], no_wrap: Collection[str] = (), **options: Any
) -> Table:
    """A table of ``columns``: those in ``left`` (names, text) left-justified, the others (figures) right-justified."""
    table = Table(title=title, **options)
    for name in columns:
        table.add_column(name, justify="left" if name in left else "right", no_wrap=name in no_wrap)
    return table


def show(result: Any, render: Callable[[Any], None], *, as_json: bool, written: Iterable[Path] = ()) -> None:
    """``wrote PATH`` per report file (on stderr with ``--json``: stdout stays JSON), then the result's JSON or tables."""
    for path in written:
        (err_console if as_json else console).print(f"wrote {path}", highlight=False, markup=False)
    if as_json:
        print_json(result.to_dict())
    else:
        render(result)
