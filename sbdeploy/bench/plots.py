"""A bench report's two PNG plots: latency against MACs, and each SB speedup beside its ideal.

matplotlib is imported when a plot is drawn (headless); unstable figures are drawn hollow or hatched.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sbdeploy._io import atomic_write_bytes

if TYPE_CHECKING:
    from sbdeploy.bench.report import BenchReport, BenchRow

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_BAR_LABEL = {"xytext": (0, 3), "textcoords": "offset points", "ha": "center", "va": "bottom", "fontsize": 8}


def pyplot():  # noqa: ANN202  (matplotlib.pyplot, headless)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_ticks(axis: object, values: Sequence[float]) -> None:
    """Label a log axis with plain numbers (0.2, 0.5, 1, 2 ...), not powers of ten; minor ticks too: all of them when
    the data span less than a decade (else a short axis would show one label or none), those at 2 and 5 otherwise."""
    from matplotlib.ticker import FuncFormatter

    positive = [v for v in values if v > 0]
    leads = "23456789" if not positive or max(positive) / min(positive) < 10 else "25"
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # type: ignore[attr-defined]
    minor = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in leads else "")
    axis.set_minor_formatter(minor)  # type: ignore[attr-defined]


def _series(row: BenchRow) -> str:
    """A row's series in the plots: its model, and its precision when not fp32 (fp16 files beside fp32 ones)."""
    return row.model if row.precision == "fp32" else f"{row.model} ({row.precision})"


def save_figure(fig: object, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # type: ignore[attr-defined]
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_latency_vs_macs(report: BenchReport, path: Path) -> None:
    """Median latency per image against GMACs per image, log-log, one panel per backend: colours are batch sizes,
    marker shapes models (no text labels that could overlap), error bars the medians' intervals."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    rows = report.rows
    backends = list(dict.fromkeys(r.backend for r in rows)) or ["-"]
    models = list(dict.fromkeys(_series(r) for r in rows))
    batches = sorted({r.batch for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {b: colours[i % len(colours)] for i, b in enumerate(batches)}
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    width = 4.2 * len(backends) + 2.2
    shape = {"squeeze": False, "sharey": True, "layout": "constrained"}
    fig, axes = plt.subplots(1, len(backends), figsize=(width, 4.4), dpi=110, **shape)
    for ax, backend in zip(axes[0], backends):
        for r in (r for r in rows if r.backend == backend):
            y, s = r.stats.median_ms / r.batch, r.stats
            err, face = None, "white" if r.unstable else colour[r.batch]
            if s.median_low_ms is not None and s.median_high_ms is not None:
                err = [[max(y - s.median_low_ms / r.batch, 0)], [max(s.median_high_ms / r.batch - y, 0)]]
            point = {"fmt": marker[_series(r)], "color": colour[r.batch], "markerfacecolor": face}
            ax.errorbar([r.macs / 1e9], [y], yerr=err, markersize=8, capsize=3, markeredgewidth=1.5, **point)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis, [r.macs / 1e9 for r in rows])
        _plain_log_ticks(ax.yaxis, [r.stats.median_ms / r.batch for r in rows])
        ax.set_title(backend)
        ax.set_xlabel("GMACs per image (log)")
        ax.grid(alpha=0.3, which="both")
        ax.margins(x=0.3, y=0.3)
    axes[0][0].set_ylabel("median latency per image, ms (log)")
    legend = [(marker[m], "dimgray", m, None) for m in models] + [("o", colour[b], f"batch {b}", None) for b in batches]
    if any(r.unstable for r in rows):
        legend.append(("o", "dimgray", "hollow: unstable", "white"))
    handles = [
        Line2D([], [], linestyle="", marker=m, color=c, markersize=8, label=label, markerfacecolor=face)
        for m, c, label, face in legend
    ]
    fig.suptitle("Latency vs MACs (error bars: interval of the median)")
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    save_figure(fig, path)


def plot_speedups(report: BenchReport, path: Path) -> None:
    """Per SB row: the measured speedup with its interval as error bars, and the ideal (1 / MAC ratio) beside it;
    hatched bars marked ``!`` are unstable figures."""
    plt = pyplot()
    from matplotlib.patches import Patch

    rows = [r for r in report.rows if r.speedup is not None]
    fig, ax = plt.subplots(figsize=(min(18.0, max(3.5, len(rows) + 1.5) + 2.2), 4.6), dpi=110, layout="constrained")
    if not rows:
        ax.text(0.5, 0.5, "no SB/baseline pair was timed", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        save_figure(fig, path)
        return
    xs = range(len(rows))
    measured = [r.speedup or 0.0 for r in rows]
    low = [max(v - (r.speedup_low if r.speedup_low is not None else v), 0) for v, r in zip(measured, rows)]
    high = [max((r.speedup_high if r.speedup_high is not None else v) - v, 0) for v, r in zip(measured, rows)]
    ideal = [1 / r.mac_ratio if r.mac_ratio else 0 for r in rows]
    blue = {"color": "tab:blue", "edgecolor": "tab:blue"}
    bars = ax.bar([x - 0.18 for x in xs], measured, width=0.36, yerr=[low, high], capsize=4, **blue)
    ideal_bars = ax.bar([x + 0.18 for x in xs], ideal, width=0.36, color="tab:orange", alpha=0.55)
    labels = [
        (bar, v + top, f"{v:.2f}x" + (" !" if r.unstable else ""), "black")
        for bar, r, v, top in zip(bars, rows, measured, high)
    ]
    labels += [(bar, v, f"{v:.2f}x", "saddlebrown") for bar, v in zip(ideal_bars, ideal)]
    for bar, y, text, colour in labels:
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, y), color=colour, **_BAR_LABEL)
    for bar, r in zip(bars, rows):
        if r.unstable:
            bar.set_facecolor("white")
            bar.set_hatch("//")
    ax.axhline(1.0, color="black", linewidth=0.8)
    many = len(rows) > 6
    ticks = [f"{r.model}\n{r.backend} {r.precision} b{r.batch}" for r in rows]
    ax.set_xticks(xs, ticks, fontsize=8, rotation=30 if many else 0, ha="right" if many else "center")
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.set_ylabel("speedup over baseline")
    ax.set_ylim(0, max(max(ideal), max(m + e for m, e in zip(measured, high))) * 1.15)
    handles = [Patch(facecolor="tab:blue"), Patch(facecolor="tab:orange", alpha=0.55)]
    names = ["measured speedup\n(error bar: interval)", "ideal (1 / MAC ratio)"]
    if any(r.unstable for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="tab:blue", hatch="//"))
        names.append("unstable (!):\nsee the warnings")
    ax.set_title("SB speedup vs its baseline")
    fig.legend(handles, names, fontsize=8, loc="outside right center", frameon=False)
    save_figure(fig, path)
