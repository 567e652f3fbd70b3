"""A sweep's files: ``sweep.json`` (the rows), ``sweep.md`` (tables and the pick), ``sweep.png`` (accuracy against
latency with intervals, the Pareto front joined), and the bench report of its timing under ``bench/``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sbdeploy._io import atomic_write_bytes
from sbdeploy.bench.plots import MARKERS, pyplot, save_figure
from sbdeploy.bench.render import write_report
from sbdeploy.bench.stats import Interval, with_interval

if TYPE_CHECKING:
    from sbdeploy.sweep.run import SweepResult, SweepRow


def _stages(row: SweepRow) -> str:
    return ",".join(map(str, row.stages)) or "-"


def _points(value: float, low: float, high: float) -> str:
    return f"{value:.2%} [{low:.2%}, {high:.2%}]"


def to_markdown(result: SweepResult) -> str:
    """The rows per batch size (front marked ``*``), the picks, and the stage timing that chose the placements."""
    lines = [
        f"# sbdeploy sweep: {result.baseline}",
        "",
        f"Top-1 on the {result.test_images} test images of `{result.data}` (95% Wilson intervals); latency of the "
        f"deploy files on ort-cpu, every candidate interleaved in one group per batch size (95% intervals); "
        f"`*`: on the accuracy / latency Pareto front of its batch size. "
        f"Load average (1 min) around the timing: {', '.join(f'{v:.2f}' for v in result.load.get('candidates', []))}.",
        "",
    ]
    for batch in result.batches:
        lines += [
            f"## Batch {batch}",
            "",
            "| | candidate | stages | GMACs | top-1 | median ms | speedup | valid |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for r in sorted((r for r in result.rows if r.batch == batch), key=lambda r: r.median_ms):
            median = with_interval(r.median_ms, ".3f", Interval.of(r.median_low_ms, r.median_high_ms))
            speedup = with_interval(r.speedup, ".2f", Interval.of(r.speedup_low, r.speedup_high))
            lines.append(
                f"| {'*' if r.front else ''} | {r.name} | {_stages(r)} | {r.macs / 1e9:.4f} | "
                f"{_points(r.top1, r.top1_low, r.top1_high)} | {median} | {speedup} | {'yes' if r.valid else 'NO'} |"
            )
        lines.append("")
    if result.max_drop is not None:
        lines += [f"## Pick: fastest within {result.max_drop:g} points of the baseline's top-1", ""]
        lines += [f"- {p.message}" for p in result.picks] + [""]
    lines += [
        "## Stage timing",
        "",
        "Each stage's SB blocks against its dense ones: a network with SB blocks in that stage only, timed against the "
        "baseline in one group. A stage pays where the speedup's interval is above 1; the placements tried keep the "
        "stages that pay, and drop the one that pays least.",
        "",
        "| sampling | batch | stage | median ms | baseline ms | speedup | pays |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for t in result.stage_timing:
        speedup = with_interval(t.speedup, ".3f", Interval.of(t.speedup_low, t.speedup_high))
        lines.append(
            f"| {t.sampling} | {t.batch} | {t.stage} | {t.median_ms:.3f} | {t.baseline_ms:.3f} | {speedup} | "
            f"{'yes' if t.pays else 'no'} |"
        )
    lines += [""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines).rstrip() + "\n"


def plot_front(result: SweepResult, path: object) -> None:
    """Top-1 against median latency, one panel per batch size: error bars the 95% intervals, the front joined."""
    plt = pyplot()
    batches = result.batches
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches) + 2.2, 4.5), squeeze=False)
    names = sorted({r.name for r in result.rows}, key=lambda n: (n != "baseline", n))
    for ax, batch in zip(axes[0], batches):
        rows = [r for r in result.rows if r.batch == batch]
        for r in rows:
            low = r.median_ms - (r.median_low_ms if r.median_low_ms is not None else r.median_ms)
            high = (r.median_high_ms if r.median_high_ms is not None else r.median_ms) - r.median_ms
            ax.errorbar(
                r.median_ms,
                r.top1 * 100,
                xerr=[[low], [high]],
                yerr=[[(r.top1 - r.top1_low) * 100], [(r.top1_high - r.top1) * 100]],
                fmt=MARKERS[names.index(r.name) % len(MARKERS)],
                color=plt.get_cmap("tab20")(names.index(r.name) % 20),
                label=r.name if batch == batches[0] else None,
                capsize=3,
                markerfacecolor="none" if not r.front else None,
            )
        front = sorted((r for r in rows if r.front), key=lambda r: r.median_ms)
        joined = "Pareto front (filled)" if batch == batches[0] else None
        ax.plot([r.median_ms for r in front], [r.top1 * 100 for r in front], "k--", lw=1, label=joined)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("median latency (ms)")
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
    share = 6 * len(batches) / (6 * len(batches) + 2.2)  # the panels' part of the width; the legend to their right
    fig.tight_layout(rect=(0, 0, share, 1))
    fig.legend(fontsize=7, loc="center left", bbox_to_anchor=(share, 0.5))
    save_figure(fig, path)  # type: ignore[arg-type]


def write_sweep(result: SweepResult) -> None:
    """Write ``sweep.json``, ``sweep.md``, ``sweep.png`` and ``bench/`` into the sweep's folder."""
    atomic_write_bytes(result.out / "sweep.json", (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(result.out / "sweep.md", to_markdown(result).encode())
    plot_front(result, result.out / "sweep.png")
    if result.bench is not None:
        write_report(result.bench, result.out / "bench")
