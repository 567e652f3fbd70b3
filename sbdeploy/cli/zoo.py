"""``sbdeploy zoo``: the registered networks with parameters, MACs and MAC ratios."""

from __future__ import annotations

import difflib
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from sbdeploy.cli._render import console, err_console, human, print_json
from sbdeploy.errors import ConfigError


def _no_match(pattern: str) -> str:
    """The refusal of a pattern that matches nothing, with the pattern or names the user likely meant."""
    from sbdeploy.models import list_models

    if not any(c in pattern for c in "*?[") and list_models(f"{pattern}*"):
        return f"no model is named {pattern!r}; the filter is a shell-style pattern: try '{pattern}*'"
    close = difflib.get_close_matches(pattern, list_models(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"no model matches {pattern!r}; {hint}run `sbdeploy zoo` for the full list"


def zoo(
    pattern: Annotated[str | None, typer.Argument(help="Shell-style filter, e.g. 'cifar_*'.")] = None,
    sampling: Annotated[str, typer.Option(help="Sampling set of the SB networks.")] = "chessboard",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the zoo: params, MACs (batch 1, default input size) and MACs vs the baseline."""
    # Only on a terminal: elsewhere a stopped live display leaves a blank line before the output or the error.
    with Progress(
        TextColumn("counting {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as progress:
        task = progress.add_task("networks (loading torch)", total=None)
        from sbdeploy.zoo import zoo_rows

        rows = zoo_rows(
            pattern,
            sampling=sampling,
            on_progress=lambda name, done, total: progress.update(task, description=name, completed=done, total=total),
        )
    if not rows:
        raise ConfigError(_no_match(pattern or ""))
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(title=escape(f"sbdeploy zoo (SB sampling: {sampling})"))
    table.add_column("name", no_wrap=True, min_width=max(len(r.name) for r in rows))
    for column in ("input", "params", "MACs", "MAC ratio", "ideal speed-up"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r.name,
            f"{r.input_size[0]}x{r.input_size[1]}",
            human(r.params),
            human(r.macs),
            f"{r.macs_vs_baseline:.3f}" if r.baseline else "-",
            f"{1 / r.macs_vs_baseline:.2f}x" if r.baseline else "-",
        )
    console.print(table)
