"""The CLI's live displays: the pipeline's one display of its steps, and silence off a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from sbdeploy.cli._progress import StepsDisplay, progress_bar, steps_display
from sbdeploy.pipeline.run import STEPS
from sbdeploy.pipeline.summary import StepResult


def test_the_pipeline_display_has_a_line_per_step_with_its_progress_then_its_outcome() -> None:
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True, width=120))
    display = StepsDisplay(progress, STEPS)
    tasks = {t.description: t for t in progress.tasks}
    assert list(tasks) == [f"[dim]{name}[/]" for name in STEPS] and not any(
        t.started for t in progress.tasks
    )  # all waiting

    display.start("export + passes")
    display.progress("exporting model[b1].onnx", 1, 5)
    export = progress.tasks[0]
    assert (
        export.started and export.description == "[bold]export + passes[/]: exporting model\\[b1].onnx"
    )  # names are text
    assert (export.completed, export.total) == (1, 5)
    display.finish(StepResult("export + passes", True, 3.0, "5 ONNX files"))
    assert export.description == "export + passes: [green]ok[/]" and export.finished and export.stop_time is not None

    display.start("engine")
    display.finish(
        StepResult("engine", True, 0.0, "skipped: no TensorRT here (TensorRT is not installed here: ...)", skipped=True)
    )
    engine = progress.tasks[1]
    assert (
        engine.description == "engine: [yellow]skipped[/]: no TensorRT here" and engine.completed == 0
    )  # an empty bar: nothing built

    display.start("validate")
    display.progress("model.onnx on ort-cpu: random b1", 0, 0)  # length unknown: a pulsing bar
    assert progress.tasks[2].total is None
    display.finish(StepResult("validate", False, 2.0, "1 of 12 checks FAILED"))
    assert progress.tasks[2].description == "validate: [bold red]FAILED[/]" and not progress.tasks[3].started


def test_off_a_terminal_nothing_is_drawn_and_no_blank_line_is_left(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar("making the deploy artifacts") as on_progress:
        on_progress("exporting model.onnx", 0, 2)
    with steps_display(STEPS) as display:
        display.start("export + passes")
        display.finish(StepResult("export + passes", True, 1.0, "1 ONNX file"))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
