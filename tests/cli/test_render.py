"""What the CLI prints shows file names, data sources and computed reasons as they are: never read as rich markup.

A bracket in a path (``runs/r20[b8].onnx``, ``imagefolder:/data/set[v2]``) is text: rich would drop
``[b8]`` as a style tag and stop with a MarkupError on ``[/x]``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from sbdeploy.environment import collect_environment

FILE = "r20[b8][bold].onnx"  # a file name (no slash); the reasons carry a closing tag
SOURCE = "imagefolder:/data/set[v2] test"


def _screen(monkeypatch: pytest.MonkeyPatch, module: object, width: int = 300) -> Console:
    """A recording console in place of the one ``module`` and the shared rendering helpers print on."""
    from sbdeploy.cli import _render

    screen = Console(width=width, record=True, file=io.StringIO())
    monkeypatch.setattr(module, "console", screen)
    monkeypatch.setattr(_render, "console", screen)
    return screen


def test_validate_prints_files_cases_datasets_and_reasons_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from sbdeploy.cli import validate as validate_cli
    from sbdeploy.validate.compare import (
        DEFAULT_TOLERANCES,
        AccuracyResult,
        CheckResult,
        ValidationReport,
        output_stats,
    )
    from sbdeploy.validate.run import Artifact

    screen = _screen(monkeypatch, validate_cli)
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((4, 10)).astype(np.float32)
    tolerance = DEFAULT_TOLERANCES["fp32"]
    stats = output_stats(reference, reference + 1.0, tolerance)
    check = CheckResult(
        "ort-cpu", "fp32", SOURCE, stats, tolerance, False, "max |diff| [/x] beyond [bold]atol", FILE, "a" * 64
    )
    accuracy = AccuracyResult("ort-cpu fp32", SOURCE, 4, 0.5, None, -1.0, file=FILE)
    artifact = Artifact("ort-cpu", Path(FILE), "fp32", (1,), 1, sha256="a" * 64)
    validate_cli.render_validation(ValidationReport("ckpt", [artifact], [check], [accuracy], collect_environment()))
    text = screen.export_text()
    assert text.count(FILE) == 3 and text.count(SOURCE) == 2 and "max |diff| [/x] beyond [bold]atol" in text


def test_bench_prints_model_and_file_names_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from sbdeploy.bench.report import BenchReport, BenchRow, judged
    from sbdeploy.bench.timing import LatencyStats
    from sbdeploy.cli import bench as bench_cli

    screen = _screen(monkeypatch, bench_cli)
    stats = LatencyStats.from_samples([1e-3, 2e-3])
    baseline = BenchRow("net[v1]", "ort-cpu", 1, 100, None, stats, file=FILE)
    rows = judged([baseline, BenchRow("net_sb[/v1]", "ort-cpu", 1, 50, "net[v1]", stats, file="model[b1].onnx")], [])
    bench_cli.render_bench(BenchReport(rows=rows, environment=collect_environment()))
    text = screen.export_text()
    assert FILE in text and "model[b1].onnx" in text and "net[v1]" in text and "net_sb[/v1]: ort-cpu b1" in text


def test_the_bench_table_says_a_run_time_precision_under_the_file_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO's bf16 runs the fp32 file with a hint: the file name alone would say fp32 (the screen has no
    precision column), so the row says what it ran in; a file whose bytes are its precision says nothing more."""
    from sbdeploy.bench.report import BenchReport, BenchRow, judged
    from sbdeploy.bench.timing import LatencyStats
    from sbdeploy.cli import bench as bench_cli

    screen = _screen(monkeypatch, bench_cli, width=160)
    stats = LatencyStats.from_samples([1e-3, 2e-3])
    fp32, int8 = "net.ov-cpu.b1.fp32.onnx", "net.ov-cpu.b1.int8.onnx"
    rows = [
        BenchRow("net", "ov-cpu", 1, 100, None, stats, file=fp32),
        BenchRow("net", "ov-cpu", 1, 100, None, stats, precision="bf16", file=fp32),
        BenchRow("net", "ov-cpu", 1, 100, None, stats, precision="int8", file=int8),
    ]
    bench_cli.render_bench(BenchReport(rows=judged(rows, []), environment=collect_environment()))
    table = screen.export_text().split("CI = ")[0]
    assert table.count("(run in bf16)") == 1 and "(run in fp32)" not in table and "(run in int8)" not in table
    lines = table.splitlines()
    at = next(i for i, line in enumerate(lines) if "(run in bf16)" in line)
    assert fp32 in lines[at - 1]  # under the file it ran


@pytest.mark.parametrize("reduced", [False, True], ids=["fp32", "with int8 rows"])
def test_the_bench_table_fits_160_columns_without_breaking_a_number(
    monkeypatch: pytest.MonkeyPatch, reduced: bool
) -> None:
    import dataclasses

    from sbdeploy.bench.report import BenchReport, BenchRow, judged
    from sbdeploy.bench.stats import Halves, Interval
    from sbdeploy.bench.timing import LatencyStats
    from sbdeploy.cli import bench as bench_cli

    screen = _screen(monkeypatch, bench_cli, width=160)
    s = LatencyStats.from_samples([1.234e-3 * (1 + 0.5 * (-1) ** i) for i in range(40)])
    s = dataclasses.replace(s, median_low_ms=1.1111, median_high_ms=18.8888)
    file = "digits_resnet20_sb.ort-cpu.b1.fp32.onnx"
    sb = "digits_resnet20_sb"
    rows = [
        BenchRow("cifar_resnet20", "ort-cpu", 1, 100, None, s, file="cifar_resnet20.ort-cpu.b1.fp32.onnx"),
        BenchRow(sb, "ort-cpu", 1, 50, "cifar_resnet20", s, file=file, speedup_low=0.7777, speedup_high=1.3333),
        BenchRow(sb, "torch", 1, 50, None, dataclasses.replace(s, halves=Halves(1, 2, Interval(1, 1), Interval(2, 2)))),
    ]
    if reduced:
        int8 = {"precision": "int8", "file": f"{sb}.ort-cpu.b1.int8.onnx"}
        rows.append(
            BenchRow(sb, "ort-cpu", 1, 50, None, s, vs_fp32=1.6666, vs_fp32_low=1.5555, vs_fp32_high=1.7777, **int8)
        )
    judged_rows = judged(rows, [])
    bench_cli.render_bench(BenchReport(rows=judged_rows, environment=collect_environment()))
    text = screen.export_text()
    table = text[: text.index("CI = ")]
    assert (
        max(len(line) for line in table.splitlines()) <= 160 and "\u2026" not in table
    )  # nothing cut with an ellipsis
    for figure in (file, "digits_resnet20_sb", "(1.111-18.889)", "(0.78-1.33)", "(0.39-0.67)", "training code, fp32"):
        assert figure in table, figure  # whole, not folded or cut
    assert ("vs fp32" in table) == reduced and (not reduced or "(1.56-1.78)" in table)
    for row in judged_rows:  # every flag of the stable column, whole
        assert all(
            f"{kind}," in table or f"{kind} " in table or table.count(kind)
            for kind in dict.fromkeys(f.kind for f in row.flags)
        )
    assert "interval," in table and "drift" in table  # the torch row's two flags, one a line
