"""Bench report writers: every file is produced and well formed."""

from __future__ import annotations

import csv
import json

from sbdeploy.bench.report import BenchReport, BenchRow, with_speedups, write_report
from sbdeploy.bench.timing import LatencyStats
from sbdeploy.environment import collect_environment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rows() -> list[BenchRow]:
    def stats(ms: float) -> LatencyStats:
        return LatencyStats.from_samples([ms / 1e3] * 3)

    return with_speedups(
        [
            BenchRow(model="net", backend="ort-cpu", batch=1, macs=100, baseline=None, stats=stats(2.0),
                     target="ort-cpu", file="baseline.ort-cpu.b1.fp32.onnx", sha256="a" * 64),
            BenchRow(model="net_sb", backend="ort-cpu", batch=1, macs=50, baseline="net", stats=stats(1.25),
                     target="ort-cpu", file="model.ort-cpu.b1.fp32.onnx", sha256="b" * 64),
            BenchRow(model="net", backend="ort-cpu", batch=1, macs=100, baseline=None, stats=stats(4.0), precision="fp16",
                     target="ort-cpu", file="baseline.ort-cpu.b1.fp16.onnx", sha256="c" * 64),
            BenchRow(model="net_sb", backend="ort-cpu", batch=1, macs=50, baseline="net", stats=stats(5.0), precision="fp16",
                     target="ort-cpu", file="model.ort-cpu.b1.fp16.onnx", sha256="d" * 64),
            BenchRow(model="net_sb", backend="torch", batch=1, macs=50, baseline="net", stats=stats(1.0)),
        ]
    )  # fmt: skip


def test_speedup_and_efficiency_pair_rows_of_the_same_precision() -> None:
    sb, sb16, torch_row = rows()[1], rows()[3], rows()[4]
    assert sb.speedup == 1.6 and sb.mac_ratio == 0.5 and sb.efficiency == 0.8
    assert sb16.speedup == 0.8  # against the fp16 baseline (4 ms), not the fp32 one
    assert torch_row.speedup is None and torch_row.form == "training code"  # no torch baseline row


def test_write_report_produces_every_file(tmp_path) -> None:
    report = BenchReport(rows=rows(), environment=collect_environment(), settings={"iters": 3})
    paths = write_report(report, tmp_path / "bench")
    assert {p.name for p in paths} == {"bench.json", "bench.csv", "bench.md", "latency_vs_macs.png", "speedup.png"}
    data = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert data["rows"][1]["speedup"] == 1.6 and data["environment"]["cpu_count"] >= 1
    assert data["rows"][1]["file"] == "model.ort-cpu.b1.fp32.onnx" and data["rows"][1]["sha256"] == "b" * 64
    table = list(csv.DictReader((tmp_path / "bench" / "bench.csv").open()))
    assert table[1]["model"] == "net_sb" and float(table[1]["efficiency"]) == 0.8 and table[3]["precision"] == "fp16"
    markdown = (tmp_path / "bench" / "bench.md").read_text()
    assert "| net_sb | model.ort-cpu.b1.fp32.onnx | ort-cpu | ort-cpu | fp32 | 1 |" in markdown
    assert "| net_sb | model.ort-cpu.b1.fp16.onnx | ort-cpu | ort-cpu | fp16 | 1 |" in markdown  # two files never read alike
    assert "| net_sb | - | training code | torch | fp32 | 1 |" in markdown and f"| `model.ort-cpu.b1.fp16.onnx` | `{'d' * 64}` |" in markdown
    for png in ("latency_vs_macs.png", "speedup.png"):
        assert (tmp_path / "bench" / png).read_bytes()[:8] == PNG_MAGIC
    assert not list((tmp_path / "bench").glob(".*tmp"))  # no temporary files left

