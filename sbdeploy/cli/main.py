"""The typer app: registers every command and turns sbdeploy errors into exit codes."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from sbdeploy.cli import bench, build_engine, doctor, export, pipeline, train, triton, validate, zoo
from sbdeploy.cli._render import err_console
from sbdeploy.cli.sbify import sbify as sbify_command
from sbdeploy.errors import SbdeployError

app = typer.Typer(
    name="sbdeploy",
    help="Spatial-bottleneck networks from PyTorch to verified, fast inference engines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("zoo")(zoo.zoo)
app.command("train")(train.train)
app.command("evaluate")(train.evaluate)
app.command("export")(export.export)
app.command("check")(export.check)
app.command("validate")(validate.validate)
app.command("bench")(bench.bench)
app.command("pipeline")(pipeline.pipeline)
app.command("build-engine")(build_engine.build_engine)
app.command("doctor")(doctor.doctor)
app.command("triton-repo")(triton.triton_repo)
app.command("sbify")(sbify_command)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from sbdeploy import __version__

        print(__version__)
        raise typer.Exit()


def main() -> None:
    """Console entry point: run the app, map SbdeployError to a message and its exit code."""
    try:
        app()
    except SbdeployError as error:
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)  # one line; "[gpu]" is text, not markup
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
