"""``sbdeploy bench`` for real on tiny settings: every report file, valid PNG plots."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from sbdeploy import environment
from sbdeploy._io import sha256_file
from sbdeploy.bench import timing
from tests.bench.conftest import FakeClock
from tests.conftest import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bench_writes_every_report_and_keeps_the_files_it_timed(tmp_path: Path) -> None:
    out, kept = tmp_path / "bench", tmp_path / "artifacts"
    options = "--backends torch,ort-cpu --batch 1,2 --warmup 1 --budget 1 --threads 1 --input-size 16"
    result = run_cli(  # the default, adaptive length, with a short budget
        "bench", "-m", "cifar_resnet20_sb", *options.split(), "--report", str(out), "--artifacts", str(kept)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "bench.json").read_text())
    rows = {(r["model"], r["backend"], r["batch"]): r for r in data["rows"]}
    assert set(rows) == {
        (m, b, n) for m in ("cifar_resnet20_sb", "cifar_resnet20") for b in ("torch", "ort-cpu") for n in (1, 2)
    }
    for (model, backend, batch), row in rows.items():
        assert (
            row["runs"] >= 20 and row["median_low_ms"] <= row["median_ms"] <= row["median_high_ms"] and row["cv"] >= 0
        )
        assert isinstance(row["unstable"], bool) and all({"kind", "reason", "advice"} <= set(f) for f in row["flags"])
        if model.endswith("_sb"):
            assert row["baseline"] == "cifar_resnet20" and 0.45 < row["mac_ratio"] < 0.55 and row["speedup"] > 0
            assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"]
            assert row["efficiency_low"] == pytest.approx(row["speedup_low"] * row["mac_ratio"])
        if backend == "ort-cpu":  # the ort-cpu form per batch, kept where --artifacts said, hashes in the report
            assert row["file"] == f"{model}.ort-cpu.b{batch}.fp32.onnx" and row["form"] == "ort-cpu"
            assert row["sha256"] == sha256_file(kept / row["file"])
        else:
            assert row["file"] is None and row["form"] == "training code"
    assert [(g["backend"], g["batch"]) for g in data["groups"]] == [
        ("torch", 1),
        ("torch", 2),
        ("ort-cpu", 1),
        ("ort-cpu", 2),
    ]
    for g in data["groups"]:
        assert (
            g["rounds"] >= 20
            and g["machine"]["before"]["cpus_available"] >= 1
            and g["machine"]["after"]["loadavg"] is not None
        )
    assert data["settings"]["length"].startswith("adaptive") and data["settings"]["budget_s"] == 1.0
    assert data["environment"]["cpu_count"] >= 1 and data["settings"]["threads"] == 1
    assert len(list(csv.DictReader((out / "bench.csv").open()))) == 8
    md = (out / "bench.md").read_text()
    assert "cifar_resnet20_sb" in md and "## Measurement" in md and "95% bootstrap interval" in md
    for png in ("latency_vs_macs.png", "speedup.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC and (out / png).stat().st_size > 5000
    assert "turns of" in result.stdout and "load" in result.stdout  # each group's length and load, on screen


@pytest.mark.slow
def test_iters_2_on_a_pair_never_reports_an_efficiency_above_1_without_the_unstable_flag(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    options = "--backends ort-cpu --batch 1 --warmup 1 --iters 2 --threads 1 --input-size 16"
    result = run_cli("bench", "-m", "cifar_resnet20_sb", *options.split(), "--report", str(out), "--strict")
    assert result.returncode == 1, result.stdout + result.stderr  # --strict: unstable figures fail the run
    data = json.loads((out / "bench.json").read_text())  # the reports are written all the same
    sb = next(r for r in data["rows"] if r["speedup"] is not None)
    kinds = {f["kind"] for f in sb["flags"]}
    assert sb["unstable"] and "few-turns" in kinds and sb["speedup_low"] is None  # one turn: no interval, said so
    assert sb["efficiency"] <= 1 or "efficiency" in kinds
    assert data["unstable"] is True and data["groups"][0]["stop"] == "fixed length: 2 timed runs each"
    assert (
        "warning: no speedup interval: too few turns for one (1 of 2 figures): cifar_resnet20_sb: ort-cpu b1\n"
        in result.stdout
    )
    assert "what to do: drop --iters/--duration" in result.stdout and "--strict" in result.stdout
    assert (
        "no: " in (out / "bench.md").read_text() and "## Warnings: unstable figures" in (out / "bench.md").read_text()
    )


def test_warnings_are_yellow_and_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from sbdeploy.bench.report import BenchReport, BenchRow, judged
    from sbdeploy.bench.timing import LatencyStats
    from sbdeploy.cli import _render
    from sbdeploy.cli import bench as bench_cli
    from sbdeploy.environment import collect_environment

    screen = Console(force_terminal=True, color_system="standard", width=200, record=True, file=io.StringIO())
    monkeypatch.setattr(bench_cli, "console", screen)
    monkeypatch.setattr(_render, "console", screen)
    stats = LatencyStats.from_samples([1e-3, 2e-3])
    rows = judged(
        [BenchRow("net", "ort-cpu", 1, 100, None, stats), BenchRow("net_sb", "ort-cpu", 1, 50, "net", stats)], []
    )
    bench_cli.render_bench(BenchReport(rows=rows, environment=collect_environment()))
    text, ansi = screen.export_text(styles=False, clear=False), screen.export_text(styles=True)
    assert (
        "warning: no speedup interval: too few turns for one (1 of 2 figures): net_sb: ort-cpu b1\n" in text
        and "what to do:" in text
    )
    assert "\x1b[33mwarning: no speedup interval" in ansi  # yellow


def test_bench_refuses_bad_options() -> None:
    for args, needle in [
        (("bench", "-m", "cifar_resnet20", "--backends", "tensorflow"), "unknown backend"),
        (("bench", "-m", "cifar_resnet20", "--batch", "0"), "--batch"),
        (("bench", "-m", "nope_net"), "neither a checkpoint folder nor a zoo name"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(environment.gpu_stack().tensorrt is not None, reason="TensorRT is installed here")
def test_trt_backend_without_tensorrt_is_one_clear_line() -> None:
    result = run_cli("bench", "-m", "cifar_resnet20", "--backends", "trt", "--batch", "1", "--iters", "1")
    assert result.returncode == 2
    assert "TensorRT is not installed" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_fp16_and_cuda_graph_flags(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    options = "--no-baselines --backends ort-cpu --batch 1 --warmup 1 --iters 2 --threads 1 --input-size 16"
    result = run_cli("bench", "-m", "cifar_resnet20", *options.split(), "--fp16", "--cuda-graph", "--report", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "bench.json").read_text())
    assert data["settings"]["fp16"] is True and data["settings"]["cuda_graph"] is True
    assert data["settings"]["notes"] == ["--cuda-graph applies to trt only"]  # said once, in the report and on screen
    assert "--cuda-graph applies to trt only" in result.stdout
    files = [("fp32", "cifar_resnet20.ort-cpu.b1.fp32.onnx"), ("fp16", "cifar_resnet20.ort-cpu.b1.fp16.onnx")]
    assert [(r["precision"], r["file"]) for r in data["rows"]] == files
    assert [r["compute_median_ms"] for r in data["rows"]] == [None, None]  # ORT on the CPU has no separate compute time
    markdown = (out / "bench.md").read_text()
    assert (
        "GPU ms" not in markdown
        and "| cifar_resnet20.ort-cpu.b1.fp16.onnx | ort-cpu | ort-cpu | fp16 | 1 |" in markdown
    )  # no empty column
    assert (
        data["settings"]["forms"] == {"ort-cpu": "ort-cpu"} and "- form timed per backend: ort-cpu: ort-cpu" in markdown
    )


@pytest.mark.slow
def test_bench_times_the_files_it_is_given_as_they_are(tmp_path: Path) -> None:
    """ONNX files as models: described by their metadata, paired by architecture, timed without any export."""
    from sbdeploy.export.onnx_export import export_onnx

    files = tmp_path / "files"
    for name, target, batch, precision in [
        ("cifar_resnet20_sb", "ort-cpu", 1, "fp32"),
        ("cifar_resnet20", "ort-cpu", 1, "fp32"),
        ("cifar_resnet20_sb", "ort-cpu", 1, "fp16"),
        ("cifar_resnet20_sb", "grouped", "dynamic", "fp32"),
        ("cifar_resnet20", "separate", 3, "fp32"),  # a fixed batch none of --batch names: timed at its own
    ]:
        path = files / f"{name}.{target}.{precision}.onnx"
        export_onnx(name, path, input_size=(16, 16), target=target, batch=batch, precision=precision)
    before = {p.name: sha256_file(p) for p in files.iterdir()}
    out = tmp_path / "bench"
    models = [a for p in sorted(files.iterdir()) for a in ("-m", str(p))]
    result = run_cli("bench", *models, *"--batch 1,2 --warmup 1 --iters 2 --threads 1".split(), "--report", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "bench.json").read_text())
    rows = {(r["model"], r["batch"]): r for r in data["rows"]}
    assert set(rows) == {
        ("cifar_resnet20_sb.ort-cpu.fp32.onnx", 1),
        ("cifar_resnet20.ort-cpu.fp32.onnx", 1),
        ("cifar_resnet20_sb.ort-cpu.fp16.onnx", 1),
        ("cifar_resnet20_sb.grouped.fp32.onnx", 1),
        ("cifar_resnet20_sb.grouped.fp32.onnx", 2),
        ("cifar_resnet20.separate.fp32.onnx", 3),
    }  # a fixed-batch file at its batch, a dynamic one at every --batch
    assert all(r["backend"] == "ort-cpu" and r["sha256"] == before[r["file"]] for r in rows.values())
    sb = rows[("cifar_resnet20_sb.ort-cpu.fp32.onnx", 1)]
    assert sb["baseline"] == "cifar_resnet20.ort-cpu.fp32.onnx" and 0.45 < sb["mac_ratio"] < 0.55  # MACs from the arch
    assert rows[("cifar_resnet20_sb.ort-cpu.fp16.onnx", 1)]["precision"] == "fp16"
    assert rows[("cifar_resnet20_sb.ort-cpu.fp16.onnx", 1)]["speedup"] is None  # no fp16 baseline among the files
    assert {p.name: sha256_file(p) for p in files.iterdir()} == before  # nothing written beside them
    assert sorted(f["file"] for f in data["settings"]["files"]) == sorted(before)
    refused = run_cli(
        "bench", "-m", str(files / "cifar_resnet20.ort-cpu.fp32.onnx"), "--backends", "trt", "--iters", "1"
    )
    assert refused.returncode == 2 and "would not be timed: none of --backends runs it" in refused.stderr


@pytest.mark.skipif(
    environment.gpu_stack().tensorrt is not None, reason="TensorRT is installed here: the fake plan would reach it"
)
@pytest.mark.slow
def test_an_engine_on_a_machine_without_tensorrt_is_one_clear_line(tmp_path: Path) -> None:
    from sbdeploy.export.onnx_export import export_onnx
    from tests.serve._artifacts import fake_engine

    meta = export_onnx("cifar_resnet20_sb", tmp_path / "m.onnx", input_size=(16, 16), target="trt").metadata
    engine = fake_engine(tmp_path / "model.trt.fp16.engine", [(1, 8, 8)], size=16, onnx_metadata=meta)
    result = run_cli("bench", "-m", str(engine), "--batch", "1", "--iters", "1")
    assert result.returncode == 2 and "TensorRT is not installed" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def file_and_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small exported ONNX file (sbdeploy metadata, batch 1) and a byte copy of it."""
    from sbdeploy.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("aa")
    original = folder / "net.onnx"
    export_onnx("cifar_resnet20", original, input_size=(16, 16), target="ort-cpu", batch=1)
    return original, Path(shutil.copy(original, folder / "net_copy.onnx"))


@pytest.mark.parametrize("alike", [False, True], ids=["copy", "same-name-in-another-folder"])
def test_a_file_against_its_byte_copy_through_the_command_holds_1(
    file_and_copy: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alike: bool
) -> None:
    """`sbdeploy bench -m COPY --baseline FILE` in process (typer's CliRunner), on the fake clock: every timed run of
    either file takes a seeded draw of one distribution, so the command's speedup interval must hold 1.0, both
    files named with their sha256, and no figure flagged but by the real machine's load. Two files of one name
    (two run folders') are labelled by their paths."""
    from typer.testing import CliRunner

    from sbdeploy.cli.main import app

    original, copy = file_and_copy
    if alike:
        (tmp_path / "other").mkdir()
        copy = Path(shutil.copy(copy, tmp_path / "other" / original.name))
    new_label, base_label = (str(copy), str(original)) if alike else ("net_copy.onnx", "net.onnx")
    monkeypatch.setattr(timing, "time", FakeClock(tick_ms=0.5, noise=0.1, seed=0))
    out = tmp_path / "bench"
    args = ["bench", "-m", str(copy), "--baseline", str(original), "--threads", "1", "--report", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads((out / "bench.json").read_text())
    assert data["settings"]["baseline"] == base_label and data["settings"]["models"] == [new_label, base_label]
    new, base = data["rows"]
    digest = sha256_file(original)
    assert (new["model"], new["baseline"], base["baseline"]) == (new_label, base_label, None)
    assert new["sha256"] == new["baseline_sha256"] == base["sha256"] == digest and new["baseline_file"] == "net.onnx"
    assert new["speedup_low"] <= 1.0 <= new["speedup_high"] and new["mac_ratio"] == 1.0
    assert new["median_ms"] == pytest.approx(0.5, rel=0.05)  # the fake clock's time: one tick per timed run
    assert {f["kind"] for r in data["rows"] for f in r["flags"]} <= {"load", "busy"}  # the real machine only
    said = f"{new_label} over {base_label} (ort-cpu b1 fp32): speedup {new['speedup']:.3f}"
    assert said in result.output.replace("\n", "") and f"{base_label} sha256 {digest}" in result.output.replace(
        "\n", ""
    )


def test_baseline_refusals(file_and_copy: tuple[Path, Path]) -> None:
    from sbdeploy.errors import ConfigError
    from sbdeploy.flow import run_bench

    original, _ = file_and_copy
    for specs, options, needle in [
        ([original], {"baseline": original.parent / ".." / original.parent.name / original.name}, "a byte copy of it"),
        (["cifar_resnet20"], {"baseline": "cifar_resnet20_sb", "add_baselines": False}, "drop --no-baselines"),
        ([original, original.parent / ".." / original.parent.name / original.name], {}, "a file is given twice"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            run_bench(specs, **options)
