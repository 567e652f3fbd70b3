"""The one progress bar of the CLI: ``sbdeploy bench`` and ``sbdeploy pipeline`` show the same one.

Library functions report ``(stage, done, total)`` (:data:`sbdeploy.bench.timing.ProgressFn`:
total 0 while a step's length is unknown, e.g. an export; timed rounds report the share
of the plan done, out of 1000); this turns those calls into one transient rich bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from sbdeploy.cli._render import console


@contextmanager
def progress_bar(first: str = "preparing models") -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar for the duration of the block; yields the ``(stage, done, total)`` callback that moves it."""
    if not console.is_terminal:  # nothing to draw on; rich would still end the block with a blank line
        yield lambda stage, done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(first, total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=total or None)

        yield on_progress
