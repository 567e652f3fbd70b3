"""Benchmark results and their reports: JSON, CSV, Markdown tables and PNG plots.

A :class:`BenchReport` is plain data; the writers here turn it into files. Every report
carries the :class:`~sbdeploy.environment.Environment` it was measured on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sbdeploy.bench.timing import LatencyStats
from sbdeploy._io import atomic_write_bytes
from sbdeploy.environment import Environment


@dataclass(frozen=True)
class BenchRow:
    """One file (or, on torch, one module) on one backend at one batch size."""

    model: str
    backend: str
    batch: int
    macs: int  # per image
    baseline: str | None  # the baseline this row is compared with (SB rows)
    stats: LatencyStats
    mac_ratio: float | None = None  # SB MACs / baseline MACs
    speedup: float | None = None  # baseline median latency / this row's median latency
    precision: str = "fp32"
    target: str | None = None  # the deploy target of the file's form (None: the torch module, or a foreign file)
    file: str | None = None  # the file timed (None: the torch module)
    sha256: str | None = None  # of that file

    @property
    def form(self) -> str:
        """What ran: the file's deploy target, or the training code itself on torch."""
        return self.target or ("training code" if self.file is None else "unknown")

    @property
    def throughput(self) -> float:
        return self.stats.throughput(self.batch)

    @property
    def efficiency(self) -> float | None:
        """Realized speedup over the ideal one (1 / MAC ratio)."""
        if self.speedup is None or not self.mac_ratio:
            return None
        return self.speedup * self.mac_ratio

    def flat(self) -> dict[str, object]:
        row = {k: v for k, v in asdict(self).items() if k != "stats"}
        row.update(self.stats.to_dict())
        row["form"] = self.form
        row["throughput_img_s"] = self.throughput
        row["efficiency"] = self.efficiency
        return row


@dataclass(frozen=True)
class BenchReport:
    """All rows of one benchmark run and where it ran."""

    rows: list[BenchRow]
    environment: Environment
    settings: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"environment": self.environment.to_dict(), "settings": self.settings, "rows": [r.flat() for r in self.rows]}


def with_speedups(rows: list[BenchRow]) -> list[BenchRow]:
    """Fill speedup and MAC ratio of each SB row from its baseline's row (same backend, batch and precision)."""
    index = {(r.model, r.backend, r.batch, r.precision): r for r in rows}
    out = []
    for r in rows:
        base = index.get((r.baseline, r.backend, r.batch, r.precision)) if r.baseline else None
        if base is None:
            out.append(r)
            continue
        out.append(dataclasses.replace(r, mac_ratio=r.macs / base.macs, speedup=base.stats.median_ms / r.stats.median_ms))
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


MARKDOWN_COLUMNS = (
    "model", "file", "form", "backend", "precision", "batch", "GMACs/img", "median ms", "GPU ms", "p90 ms", "p99 ms", "img/s",
    "speedup", "MAC ratio", "efficiency",
)  # fmt: skip


def markdown_rows(rows: list[BenchRow]) -> list[list[str]]:
    """Table cells of the rows, as printed by the CLI and written to Markdown."""
    return [
        [
            r.model, r.file or "-", r.form, r.backend, r.precision, str(r.batch), f"{r.macs / 1e9:.3f}", f"{r.stats.median_ms:.3f}",
            _fmt(r.stats.compute_median_ms, ".3f"), f"{r.stats.p90_ms:.3f}",
            f"{r.stats.p99_ms:.3f}", f"{r.throughput:.1f}", _fmt(r.speedup, ".2f"), _fmt(r.mac_ratio, ".3f"), _fmt(r.efficiency, ".2f"),
        ]
        for r in rows
    ]


def to_markdown(report: BenchReport) -> str:
    """A Markdown report: the table, then the environment."""
    lines = ["# sbdeploy bench", "", "| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in markdown_rows(report.rows)]
    lines += ["", "speedup = baseline median / SB median (same backend, batch and precision); efficiency = speedup x MAC ratio.", ""]
    files = {r.file: r.sha256 for r in report.rows if r.file}
    if files:
        lines += ["## Files timed", "", "| file | sha256 |", "|---|---|"] + [f"| `{f}` | `{h}` |" for f, h in files.items()] + [""]
    lines += ["## Settings", ""] + [f"- {k}: {v}" for k, v in report.settings.items()]
    env = report.environment
    lines += ["", "## Environment", "", f"- CPU: {env.cpu} ({env.cpu_count} cores), torch threads {env.torch_threads}"]
    lines += [f"- GPU: {env.gpu or 'none'}", f"- Python {env.python}, torch {env.torch} (CUDA {env.torch_cuda or 'none'}), {env.platform}"]
    lines += [f"- {k}: {v}" for k, v in env.packages.items() if v]
    return "\n".join(lines) + "\n"


def to_csv(report: BenchReport) -> str:
    """One CSV line per row, every statistic as a column."""
    flat = [r.flat() for r in report.rows]
    buffer = io.StringIO()
    if flat:
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    return buffer.getvalue()


def plot_latency_vs_macs(report: BenchReport, path: Path) -> None:
    """Median latency against GMACs per image, one series per backend and batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    series: dict[tuple[str, str, int], list[BenchRow]] = {}
    for r in report.rows:
        series.setdefault((r.backend, r.precision, r.batch), []).append(r)
    for (backend, precision, batch), rows in sorted(series.items()):
        xs, ys = [r.macs / 1e9 for r in rows], [r.stats.median_ms / r.batch for r in rows]
        ax.scatter(xs, ys, label=f"{backend} {precision}, batch {batch}")
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(r.model, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("median latency per image (ms)")
    ax.set_title("Latency vs MACs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_speedups(report: BenchReport, path: Path) -> None:
    """Bars of realized speedup per SB row, with the ideal (1 / MAC ratio) beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.speedup is not None]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 4.5), dpi=110)
    labels = [f"{r.model}\n{r.backend} {r.precision} b{r.batch}" for r in rows]
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r.speedup for r in rows], width=0.4, label="measured speedup")
    ax.bar([x + 0.2 for x in xs], [1 / r.mac_ratio if r.mac_ratio else 0 for r in rows], width=0.4, label="ideal (1 / MAC ratio)", alpha=0.6)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("speedup over baseline")
    ax.set_title("SB speedup vs its baseline")
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(buffer, format="png")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    atomic_write_bytes(path, buffer.getvalue())


def write_report(report: BenchReport, folder: str | Path) -> list[Path]:
    """Write bench.json, bench.csv, bench.md, latency_vs_macs.png and speedup.png."""
    folder = Path(folder)
    paths = {
        "bench.json": (json.dumps(report.to_dict(), indent=2) + "\n").encode(),
        "bench.csv": to_csv(report).encode(),
        "bench.md": to_markdown(report).encode(),
    }
    for name, data in paths.items():
        atomic_write_bytes(folder / name, data)
    plot_latency_vs_macs(report, folder / "latency_vs_macs.png")
    plot_speedups(report, folder / "speedup.png")
    return [folder / n for n in (*paths, "latency_vs_macs.png", "speedup.png")]
