"""The CLI's live displays: one progress bar (``bench``, ``validate``) and the pipeline's one display of its steps.

Transient, on stderr and only on a terminal: piped output (``--json``, CI logs) gets no live display.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from sbdeploy.cli._render import STATUS_MARKS, err_console

if TYPE_CHECKING:
    from sbdeploy.bench.timing import ProgressFn
    from sbdeploy.pipeline.summary import StepResult


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal)


@contextmanager
def progress_bar(first: str = "preparing models") -> Iterator[ProgressFn]:
    """A progress bar for the duration of the block; yields the ``(stage, done, total)`` callback that moves it."""
    with _progress() as progress:
        task = progress.add_task(escape(first), total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(task, description=escape(stage), completed=done, total=total or None)

        yield on_progress


class StepsDisplay:
    """One line per pipeline step: waiting, running (with what it is doing and its own bar), then its outcome."""

    def __init__(self, progress: Progress, steps: Sequence[str]) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {
            name: progress.add_task(f"[dim]{escape(name)}[/]", total=None, start=False) for name in steps
        }
        self._current: str | None = None

    def start(self, name: str) -> None:
        if name not in self._tasks:  # a step the plan did not name: a line of its own
            self._tasks[name] = self._progress.add_task(escape(name), total=None, start=False)
        self._current = name
        self._progress.start_task(self._tasks[name])
        self._progress.update(self._tasks[name], description=f"[bold]{escape(name)}[/]")

    def progress(self, stage: str, done: int, total: int) -> None:
        if self._current is None:
            return
        task = self._tasks[self._current]
        self._progress.update(
            task, description=f"[bold]{escape(self._current)}[/]: {escape(stage)}", completed=done, total=total or None
        )

    def finish(self, result: StepResult) -> None:
        task = self._tasks.get(result.name)
        if task is None:
            return
        done = 1 if result.status == "ok" else 0
        description = f"{escape(result.name)}: {STATUS_MARKS[result.status]}"
        if result.status == "skipped":  # why, in its first words ("skipped: no TensorRT here (...)")
            reason = result.detail.split(" (", 1)[0].removeprefix("skipped").lstrip(": ")
            description += f": {escape(reason)}" if reason else ""
        self._progress.update(task, description=description, completed=done, total=1)
        self._progress.stop_task(task)
        self._current = None


@contextmanager
def steps_display(steps: Sequence[str]) -> Iterator[StepsDisplay]:
    """The pipeline's one live display for the duration of the block (see :class:`StepsDisplay`)."""
    with _progress() as progress:
        yield StepsDisplay(progress, steps)
