"""``sbdeploy doctor``: this machine's libraries and GPU, and which backends can run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.cli._render import console, print_json
from sbdeploy.doctor import diagnose


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show python, torch and its CUDA, onnxruntime providers, TensorRT, pycuda, the GPU, and the usable backends."""
    report = diagnose()
    if as_json:
        print_json(report.to_dict())
        return
    missing = "[dim]not installed[/]"
    machine = Table(title="sbdeploy doctor", show_header=False)
    machine.add_column("what", style="bold")
    machine.add_column("found")
    torch = f"{report.torch} ({'CUDA ' + report.torch_cuda if report.torch_cuda else 'CPU build'})"
    gpu = f"{report.gpu_name} (compute {report.compute_capability}, seen by {report.gpu_found_by})"
    for label, value in (
        ("python", f"{report.python} ({report.platform})"),
        ("torch", torch if report.torch else None),
        ("onnx", report.onnx),
        ("onnxruntime", f"{report.onnxruntime}: {', '.join(report.ort_providers)}" if report.onnxruntime else None),
        ("tensorrt", report.tensorrt),
        ("pycuda", report.pycuda),
        ("GPU", gpu if report.gpu_name else "none found"),
        ("driver", report.driver or "unknown"),
        ("SB kernels", report.kernels),
        ("openvino", f"{report.openvino}: {', '.join(report.openvino_capabilities)}" if report.openvino else None),
    ):
        machine.add_row(label, escape(value) if value else missing)
    console.print(machine)
    backends = Table(title="backends (--backends NAME)")
    backends.add_column("backend", style="bold")
    backends.add_column("runs here", justify="center")
    backends.add_column("why")
    for b in report.backends:
        backends.add_row(b.name, "[green]yes[/]" if b.available else "[red]no[/]", escape(b.reason))
    console.print(backends)
