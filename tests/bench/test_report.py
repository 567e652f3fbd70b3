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
            BenchRow(model="net", backend="ort-cpu", batch=1, macs=100, baseline=None, stats=stats(2.0)),
            BenchRow(model="net_sb", backend="ort-cpu", batch=1, macs=50, baseline="net", stats=stats(1.25)),
        ]
    )


def test_speedup_and_efficiency() -> None:
    sb = rows()[1]
    assert sb.speedup == 1.6 and sb.mac_ratio == 0.5 and sb.efficiency == 0.8


def test_write_report_produces_every_file(tmp_path) -> None:
    report = BenchReport(rows=rows(), environment=collect_environment(), settings={"iters": 3})
    paths = write_report(report, tmp_path / "bench")
    assert {p.name for p in paths} == {"bench.json", "bench.csv", "bench.md", "latency_vs_macs.png", "speedup.png"}
    data = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert data["rows"][1]["speedup"] == 1.6 and data["environment"]["cpu_count"] >= 1
    table = list(csv.DictReader((tmp_path / "bench" / "bench.csv").open()))
    assert table[1]["model"] == "net_sb" and float(table[1]["efficiency"]) == 0.8
    assert "| net_sb | ort-cpu | 1 |" in (tmp_path / "bench" / "bench.md").read_text()
    for png in ("latency_vs_macs.png", "speedup.png"):
        assert (tmp_path / "bench" / png).read_bytes()[:8] == PNG_MAGIC
    assert not list((tmp_path / "bench").glob(".*tmp"))  # no temporary files left
