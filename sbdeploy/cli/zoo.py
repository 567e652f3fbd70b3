"""``sbdeploy zoo``: the registered networks with parameters, MACs and MAC ratios."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sbdeploy.cli._render import console, human, print_json
from sbdeploy.errors import ConfigError


def zoo(
    pattern: Annotated[str | None, typer.Argument(help="Shell-style filter, e.g. 'cifar_*'.")] = None,
    sampling: Annotated[str, typer.Option(help="Sampling set of the SB networks.")] = "chessboard",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the zoo: params, MACs (batch 1, default input size) and MACs vs the baseline."""
    from sbdeploy.zoo import zoo_rows

    rows = zoo_rows(pattern, sampling=sampling)
    if not rows:
        raise ConfigError(f"no model matches {pattern!r}; run `sbdeploy zoo` for the full list")
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(title=f"sbdeploy zoo (SB sampling: {sampling})")
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
