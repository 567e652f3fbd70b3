"""The ``sbdeploy`` command line: thin typer commands over the library functions."""

from sbdeploy.cli.main import app, main

__all__ = ["app", "main"]
