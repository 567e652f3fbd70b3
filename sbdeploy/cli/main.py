"""The typer app: registers every command and gives every error, click's usage errors included, one style.

Each command imports the library (torch, onnx, ...) inside its function, so ``--help`` and ``--version`` are quick.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer

from sbdeploy.cli import (
    bench,
    build_engine,
    doctor,
    export,
    import_weights,
    pipeline,
    sweep,
    train,
    triton,
    validate,
    zoo,
)
from sbdeploy.cli._render import err_console, stderr_line
from sbdeploy.cli.sbify import sbify as sbify_command
from sbdeploy.errors import SbdeployError

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # older typer runs on the click package
    from click import exceptions as click_errors  # type: ignore[no-redef]

app = typer.Typer(
    name="sbdeploy",
    help="Spatial-bottleneck networks from PyTorch to verified, fast inference engines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help, as argparse tools (trtexec, Polygraphy) print it: no "<bool>" after flags
)
app.command("zoo")(zoo.zoo)
app.command("train")(train.train)
app.command("evaluate")(train.evaluate)
app.command("import")(import_weights.import_weights)
app.command("export")(export.export)
app.command("check")(export.check)
app.command("validate")(validate.validate)
app.command("bench")(bench.bench)
app.command("pipeline")(pipeline.pipeline)
app.command("build-engine")(build_engine.build_engine)
app.command("doctor")(doctor.doctor)
app.command("triton-repo")(triton.triton_repo)
app.command("sbify")(sbify_command)
app.command("sweep")(sweep.sweep)


def _print_version(value: bool) -> None:
    if value:
        from sbdeploy._version import __version__

        print(f"sbdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """The options before the command: ``--version``."""


def error_line(message: str) -> None:
    """The one error style of the CLI: ``error: MESSAGE`` in red on stderr, one line."""
    stderr_line("error", message, style="bold red")


def _usage_message(error: click_errors.UsageError, args: Sequence[str]) -> str:
    """Click's message, and where the options are listed: ``(see `sbdeploy CMD --help`)``."""
    if error.ctx is not None:
        command = error.ctx.command_path
    else:  # an option parsing error carries no context: the command is the first registered name in the arguments
        names = {c.name for c in app.registered_commands}
        command = " ".join(["sbdeploy", *[a for a in args if a in names][:1]])
    return f"{error.format_message().strip().rstrip('.')} (see `{command} --help`)"


BUG_EXIT = 70  # exit code of an unexpected exception, a bug in sbdeploy (EX_SOFTWARE)


def report_bug(error: BaseException) -> str:
    """Save the traceback of an unexpected exception to a file; the one line that says so."""
    with tempfile.NamedTemporaryFile("w", prefix="sbdeploy-traceback-", suffix=".txt", delete=False) as f:
        f.write("".join(traceback.format_exception(error)))
    return (
        f"internal error, a bug in sbdeploy: {type(error).__name__}: {error}; the traceback is in {f.name} "
        "(SBDEPLOY_DEBUG=1 prints it); please report it with that file"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: user errors print one ``error:`` line and exit 2; any other exception is a bug (exit 70)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="sbdeploy", standalone_mode=False)
    except click_errors.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `sbdeploy` (click >= 8.2): its help, as click prints it
            print(error.format_message())
            sys.exit(error.exit_code)
        error_line(_usage_message(error, args))
        sys.exit(2)
    except click_errors.ClickException as error:  # e.g. a file click could not open
        error_line(error.format_message())
        sys.exit(error.exit_code)
    except SbdeployError as error:
        error_line(str(error))
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except OSError as error:
        error_line(str(error))
        sys.exit(2)
    except Exception as error:
        if os.environ.get("SBDEPLOY_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        error_line(report_bug(error))
        sys.exit(BUG_EXIT)
    sys.exit(code if isinstance(code, int) else 0)
