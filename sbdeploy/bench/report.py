"""Benchmark results and their reports: JSON, CSV, Markdown tables and PNG plots.

A :class:`BenchReport` is plain data; the writers here turn it into files. Every report
carries the :class:`~sbdeploy.environment.Environment` it was measured on, how each
group (backend x batch) was measured and how busy the machine was meanwhile
(:class:`BenchGroup`), every figure's interval, and the flags of every figure that is
not to be trusted (:mod:`sbdeploy.bench.stability`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sbdeploy._io import atomic_write_bytes
from sbdeploy.bench.stability import Flag, Limits, latency_flags, machine_flags, speedup_flags
from sbdeploy.bench.stats import Interval
from sbdeploy.bench.timing import GroupRecord, GroupResult, LatencyStats, Pair
from sbdeploy.environment import Environment

MACHINE_FLAG_KINDS = ("load", "busy")


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
    speedup_low: float | None = None  # the speedup's interval (paired bootstrap over turns)
    speedup_high: float | None = None
    flags: tuple[Flag, ...] = ()  # why this figure is not to be trusted (none: stable)
    precision: str = "fp32"
    target: str | None = None  # the deploy target of the file's form (None: the torch module, or a foreign file)
    file: str | None = None  # the file timed (None: the torch module)
    sha256: str | None = None  # of that file
    vs_fp32: float | None = None  # fp16/int8 rows: the same model's fp32 median / this row's (timed in the same group)
    vs_fp32_low: float | None = None  # its interval (paired bootstrap over turns)
    vs_fp32_high: float | None = None

    @property
    def form(self) -> str:
        """What ran: the file's deploy target, the training code itself on torch, ``-`` when not known."""
        return self.target or ("training code" if self.backend.startswith("torch") else "-")

    @property
    def key(self) -> tuple[str, str, int, str]:
        """(model, backend, batch, precision): what identifies a row, and pairs it with its baseline's."""
        return (self.model, self.backend, self.batch, self.precision)

    @property
    def throughput(self) -> float:
        return self.stats.throughput(self.batch)

    @property
    def efficiency(self) -> float | None:
        """Realized speedup over the ideal one (1 / MAC ratio)."""
        if self.speedup is None or not self.mac_ratio:
            return None
        return self.speedup * self.mac_ratio

    @property
    def speedup_interval(self) -> Interval | None:
        if self.speedup_low is None or self.speedup_high is None:
            return None
        return Interval(self.speedup_low, self.speedup_high)

    @property
    def efficiency_interval(self) -> Interval | None:
        interval = self.speedup_interval
        return interval.scaled(self.mac_ratio) if interval is not None and self.mac_ratio else None

    @property
    def vs_fp32_interval(self) -> Interval | None:
        if self.vs_fp32_low is None or self.vs_fp32_high is None:
            return None
        return Interval(self.vs_fp32_low, self.vs_fp32_high)

    @property
    def unstable(self) -> bool:
        return bool(self.flags)

    def flat(self) -> dict[str, object]:
        row = {k: v for k, v in asdict(self).items() if k not in ("stats", "flags")}
        row.update(self.stats.to_dict())
        row["form"] = self.form
        row["throughput_img_s"] = self.throughput
        row["efficiency"] = self.efficiency
        bounds = self.efficiency_interval
        row["efficiency_low"], row["efficiency_high"] = (bounds.low, bounds.high) if bounds else (None, None)
        row["unstable"] = self.unstable
        row["flags"] = [f.to_dict() for f in self.flags]
        return row


@dataclass(frozen=True)
class BenchGroup:
    """How one group (a backend at a batch size, every model interleaved) was measured, and its machine flags."""

    backend: str
    batch: int
    record: GroupRecord
    flags: tuple[Flag, ...] = ()

    @classmethod
    def of(cls, backend: str, batch: int, record: GroupRecord, limits: Limits = Limits()) -> BenchGroup:
        return cls(backend, batch, record, tuple(machine_flags(record.machine, limits)))

    def to_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "batch": self.batch,
            **self.record.to_dict(),
            "flags": [f.to_dict() for f in self.flags],
        }


@dataclass(frozen=True)
class BenchWarning:
    """One warning of a report: what it is about, why, and what to do.

    ``model`` is None for a machine flag, which is about a group (a backend at a batch size).
    """

    flag: Flag
    backend: str
    batch: int
    model: str | None = None
    precision: str = "fp32"

    @property
    def _precision_suffix(self) -> str:
        return "" if self.precision == "fp32" else f" {self.precision}"

    @property
    def subject(self) -> str:
        """``ort-cpu batch 8`` for a machine flag, ``resnet18_sb on ort-cpu batch 8`` (`` fp16``) for a figure's."""
        if self.model is None:
            return f"{self.backend} batch {self.batch}"
        return f"{self.model} on {self.backend} batch {self.batch}{self._precision_suffix}"

    @property
    def figure(self) -> str:
        """``ort-cpu b8`` (``ort-cpu b8 fp16``), then the flag's own numbers: one item of a summary line."""
        return f"{self.backend} b{self.batch}{self._precision_suffix} {self.flag.value}".rstrip()


@dataclass(frozen=True)
class WarningSummary:
    """One reason across a report: said once, with every figure (or group) it holds for and that one's numbers.

    Attributes:
        flag_kind: the flags' kind (a key of :data:`sbdeploy.bench.stability.ADVICE`).
        headline: the reason without any figure's own numbers.
        advice: what to do about it.
        warnings: each figure (a machine flag: each group) it holds for, in report order.
        out_of: how many figures (groups, for a machine flag) the report has.
    """

    flag_kind: str
    headline: str
    advice: str
    warnings: tuple[BenchWarning, ...]
    out_of: int

    @property
    def machine(self) -> bool:
        return self.flag_kind in MACHINE_FLAG_KINDS

    def count(self) -> str:
        """``every group``, ``3 of 4 groups``, ``8 of 8 figures``."""
        n, unit = len(self.warnings), "groups" if self.machine else "figures"
        return "every group" if self.machine and n == self.out_of else f"{n} of {self.out_of} {unit}"

    def items(self) -> str:
        """The figures with their numbers, by model: ``net_sb: ort-cpu b1 CV 12.0%, ort-cpu b8 CV 15.1%; net: ...``."""
        if self.machine:
            return ", ".join(w.figure for w in self.warnings)
        by_model: dict[str, list[str]] = {}
        for w in self.warnings:
            by_model.setdefault(w.model or "", []).append(w.figure)
        return "; ".join(f"{model}: {', '.join(figures)}" for model, figures in by_model.items())

    def line(self) -> str:
        """The whole summary in one line: ``HEADLINE (COUNT): ITEMS``."""
        return f"{self.headline} ({self.count()}): {self.items()}"


@dataclass(frozen=True)
class BenchReport:
    """All rows of one benchmark run, how each group was measured, and where it ran."""

    rows: list[BenchRow]
    environment: Environment
    settings: dict[str, object] = field(default_factory=dict)
    groups: list[BenchGroup] = field(default_factory=list)

    @property
    def unstable(self) -> bool:
        """Whether any figure is flagged (``--strict`` exits 1 then)."""
        return any(r.unstable for r in self.rows)

    def warnings(self) -> list[BenchWarning]:
        """Every flag once: machine flags per group, the others per row."""
        out = [BenchWarning(f, g.backend, g.batch) for g in self.groups for f in g.flags]
        for r in self.rows:
            out += [
                BenchWarning(f, r.backend, r.batch, r.model, r.precision)
                for f in r.flags
                if f.kind not in MACHINE_FLAG_KINDS
            ]
        return out

    def warning_summary(self) -> list[tuple[str, list[WarningSummary]]]:
        """:meth:`warnings` read at a glance: one :class:`WarningSummary` per reason, grouped by what to do.

        Both in order of first appearance; every warning is in exactly one summary, with its numbers.
        """
        by_reason: dict[tuple[str, str], list[BenchWarning]] = {}
        for w in self.warnings():
            by_reason.setdefault((w.flag.kind, w.flag.summary), []).append(w)
        by_advice: dict[str, list[WarningSummary]] = {}
        for (kind, headline), warnings in by_reason.items():
            out_of = len(self.groups) if kind in MACHINE_FLAG_KINDS else len(self.rows)
            summary = WarningSummary(kind, headline, warnings[0].flag.advice, tuple(warnings), out_of)
            by_advice.setdefault(summary.advice, []).append(summary)
        return list(by_advice.items())

    def to_dict(self) -> dict[str, object]:
        return {
            "environment": self.environment.to_dict(),
            "settings": self.settings,
            "unstable": self.unstable,
            "groups": [g.to_dict() for g in self.groups],
            "rows": [r.flat() for r in self.rows],
            "warnings": [{"subject": w.subject, **w.flag.to_dict()} for w in self.warnings()],
        }


def pairs_of(models: dict[str, tuple[int, str | None]]) -> list[Pair]:
    """The SB/baseline pairs among timed models, from label -> (MACs per image, baseline label or None)."""
    return [
        Pair(sb=label, baseline=base, mac_ratio=macs / models[base][0])
        for label, (macs, base) in models.items()
        if base is not None and base in models
    ]


def group_rows(
    result: GroupResult, *, backend: str, batch: int, models: dict[str, tuple[int, str | None]]
) -> list[BenchRow]:
    """The rows of one measured group, each SB row with its speedup interval (speedups are filled by :func:`with_speedups`)."""
    rows = []
    for label, (macs, base) in models.items():
        interval = result.speedups[label].interval if label in result.speedups else None
        rows.append(
            BenchRow(
                label,
                backend,
                batch,
                macs,
                base,
                result.stats[label],
                speedup_low=interval.low if interval else None,
                speedup_high=interval.high if interval else None,
            )
        )
    return rows


def with_speedups(rows: list[BenchRow]) -> list[BenchRow]:
    """Fill speedup and MAC ratio of each SB row from its baseline's row (same backend, batch and precision)."""
    index = {r.key: r for r in rows}
    out = []
    for r in rows:
        base = index.get((r.baseline, r.backend, r.batch, r.precision)) if r.baseline else None
        if base is None:
            out.append(r)
            continue
        out.append(
            dataclasses.replace(r, mac_ratio=r.macs / base.macs, speedup=base.stats.median_ms / r.stats.median_ms)
        )
    return out


def with_flags(rows: list[BenchRow], groups: Sequence[BenchGroup], limits: Limits = Limits()) -> list[BenchRow]:
    """Each row with its flags: its group's machine flags, its runs' spread, its headline interval, its efficiency."""
    machine = {(g.backend, g.batch): g.flags for g in groups}
    paired: set[tuple[str | None, str, int, str]] = set()
    for r in rows:
        if r.speedup is not None:
            paired |= {r.key, (r.baseline, r.backend, r.batch, r.precision)}
    out = []
    for r in rows:
        flags = list(machine.get((r.backend, r.batch), ()))
        flags += latency_flags(r.stats, limits, paired=r.key in paired)
        if r.speedup is not None:
            flags += speedup_flags(r.speedup, r.speedup_interval, r.mac_ratio, limits)
        out.append(dataclasses.replace(r, flags=tuple(flags)))
    return out


def judged(rows: list[BenchRow], groups: Sequence[BenchGroup], limits: Limits = Limits()) -> list[BenchRow]:
    """:func:`with_speedups`, then :func:`with_flags`: the rows as a report shows them."""
    return with_flags(with_speedups(rows), groups, limits)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _with_interval(value: float | None, interval: Interval | None, spec: str) -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}" + (f" ({interval.low:{spec}}-{interval.high:{spec}})" if interval is not None else "")


MARKDOWN_COLUMNS = (
    "model",
    "file",
    "form",
    "backend",
    "precision",
    "batch",
    "GMACs/img",
    "median ms (CI)",
    "GPU ms",
    "p90 ms",
    "p99 ms",
    "CV",
    "img/s",
    "speedup (CI)",
    "MAC ratio",
    "efficiency (CI)",
    "vs fp32 (CI)",
    "stable",
)


def shown_columns(rows: Sequence[BenchRow]) -> list[int]:
    """Indexes of :data:`MARKDOWN_COLUMNS` a table of ``rows`` shows: "GPU ms" only when some row has a device time,
    "vs fp32" only when some fp16/int8 row has one."""
    gpu = any(r.stats.compute_median_ms is not None for r in rows)
    reduced = any(r.vs_fp32 is not None for r in rows)
    return [i for i, c in enumerate(MARKDOWN_COLUMNS) if (gpu or c != "GPU ms") and (reduced or c != "vs fp32 (CI)")]


def stable_cell(row: BenchRow) -> str:
    """``yes``, or ``no: kind, kind`` naming the row's flags."""
    return "yes" if not row.flags else "no: " + ", ".join(dict.fromkeys(f.kind for f in row.flags))


def markdown_rows(rows: list[BenchRow]) -> list[list[str]]:
    """Table cells of the rows, as printed by the CLI and written to Markdown."""
    cells = []
    for r in rows:
        s = r.stats
        median = f"{s.median_ms:.3f}" + (
            f" ({s.median_low_ms:.3f}-{s.median_high_ms:.3f})" if s.median_halfwidth is not None else ""
        )
        cells.append(
            [
                r.model,
                r.file or "-",
                r.form,
                r.backend,
                r.precision,
                str(r.batch),
                f"{r.macs / 1e9:.3f}",
                median,
                _fmt(s.compute_median_ms, ".3f"),
                f"{s.p90_ms:.3f}",
                f"{s.p99_ms:.3f}",
                f"{s.cv:.1%}",
                f"{r.throughput:.1f}",
                _with_interval(r.speedup, r.speedup_interval, ".2f"),
                _fmt(r.mac_ratio, ".3f"),
                _with_interval(r.efficiency, r.efficiency_interval, ".2f"),
                _with_interval(r.vs_fp32, r.vs_fp32_interval, ".2f"),
                stable_cell(r),
            ]
        )
    return cells


def int8_lines(report: BenchReport) -> list[str]:
    """What this CPU's instruction set allows for int8, and where int8 did not beat fp32: said plainly.

    Empty without int8 rows. Per int8 row on ``ort-cpu`` whose latency is at least fp32's
    (``vs fp32`` <= 1): on a CPU without int8 dot-product instructions (no VNNI: AVX2 only)
    "int8 does not pay here"; on one with them, that int8 still lost there.
    """
    int8 = [r for r in report.rows if r.precision == "int8"]
    if not int8:
        return []
    env = report.environment
    lines = [f"int8 on this CPU: {env.cpu_int8 or 'instruction set unknown'}."]
    for r in int8:
        if r.backend != "ort-cpu" or r.vs_fp32 is None or r.vs_fp32 > 1:
            continue
        ratio = f"int8 takes {1 / r.vs_fp32:.2f}x fp32's time" + (
            f" (95% interval of the speedup {r.vs_fp32_low:.2f}-{r.vs_fp32_high:.2f})" if r.vs_fp32_interval else ""
        )
        if env.cpu_int8_dot is False:
            lines.append(
                f"int8 does not pay here: {r.model} batch {r.batch} on {r.backend}: {ratio}, and this CPU has no VNNI "
                "(no int8 dot-product instructions); ship fp32 here, int8 for a CPU with VNNI (measure it there)."
            )
        else:
            lines.append(
                f"int8 is not faster than fp32 for {r.model} batch {r.batch} on {r.backend}: {ratio}, although "
                "this CPU has int8 dot-product instructions; ship fp32 for this model and batch."
            )
    return lines


def confidence_of(report: BenchReport) -> float:
    """The confidence of the report's intervals (0.95 unless the plan said otherwise)."""
    return report.groups[0].record.confidence if report.groups else 0.95


def legend_lines(report: BenchReport) -> list[str]:
    """What the table's figures mean (under the table, in the CLI and in Markdown)."""
    conf = f"{confidence_of(report):.0%}"
    return [
        f"CI = {conf} bootstrap interval over the turns of the interleaved schedule (for speedup: paired turns, ratio of medians).",
        "speedup = baseline median / SB median (same backend, batch and precision); efficiency = speedup x MAC ratio "
        "(1 = the MAC ratio's ideal); vs fp32 = the same model's fp32 median / this fp16 or int8 row's (paired turns).",
        "CV = standard deviation / mean of the runs; stable = no flag (see the warnings).",
    ]


def to_markdown(report: BenchReport) -> str:
    """A Markdown report: the table, its warnings, how each group was measured, settings, environment."""
    shown = shown_columns(report.rows)
    lines = [
        "# sbdeploy bench",
        "",
        "| " + " | ".join(MARKDOWN_COLUMNS[i] for i in shown) + " |",
        "|" + "---|" * len(shown),
    ]
    lines += ["| " + " | ".join(cells[i] for i in shown) + " |" for cells in markdown_rows(report.rows)]
    lines += [""] + [f"{line}  " for line in legend_lines(report)] + [""]
    int8 = int8_lines(report)
    if int8:
        lines += ["## int8", ""] + [f"- {line}" for line in int8] + [""]
    files = {r.file: r.sha256 for r in report.rows if r.file}
    if files:
        lines += (
            ["## Files timed", "", "| file | sha256 |", "|---|---|"]
            + [f"| `{f}` | `{h}` |" for f, h in files.items()]
            + [""]
        )
    grouped = report.warning_summary()
    if grouped:
        lines += [
            "## Warnings: unstable figures",
            "",
            "Each reason once, with every figure (or group) it holds for and its numbers.",
            "",
        ]
        for advice, summaries in grouped:
            lines += [f"- **{w.headline}** ({w.count()}): {w.items()}" for w in summaries] + [
                "",
                f"  What to do: {advice}.",
                "",
            ]
    if report.groups:
        lines += [
            "## Measurement",
            "",
            "| backend | batch | turns | runs per turn | seconds | stopped | load 1 min (before, after) | others' CPU | CPUs (available / machine) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for g in report.groups:
            m = g.record.machine
            lines.append(
                f"| {g.backend} | {g.batch} | {g.record.rounds} | {g.record.turn} | {g.record.seconds:.1f} | {g.record.stop} | {m.loads(', ')} | "
                f"{_fmt(m.others_cpu, '.2f')} | {m.cpus_available} / {m.before.cpu_count or '-'} |"
            )
        lines += [
            "",
            "others' CPU = cores' worth of CPU time that other processes took on the available CPUs while the group was timed.",
            "",
        ]
    lines += ["## Settings", ""] + settings_lines(report.settings)
    env = report.environment
    lines += ["", "## Environment", "", f"- CPU: {env.cpu} ({env.cpu_count} cores), torch threads {env.torch_threads}"]
    lines += [f"- int8 instructions: {env.cpu_int8}"] if env.cpu_int8 else []
    lines += [
        f"- GPU: {env.gpu or 'none'}",
        f"- Python {env.python}, torch {env.torch} (CUDA {env.torch_cuda or 'none'}), {env.platform}",
    ]
    lines += [f"- {k}: {v}" for k, v in env.packages.items() if v]
    return "\n".join(lines) + "\n"


def _setting(value: object) -> str:
    """A setting as text: lists joined by commas, ``-`` for none."""
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_setting(v)}" for k, v in value.items())
    return str(value)


def settings_lines(settings: dict[str, object]) -> list[str]:
    """The settings as Markdown list items (the files are in "Files timed"; the JSON keeps every field)."""
    lines = []
    for key, value in settings.items():
        if key == "files":
            continue
        if key == "target":
            lines.append(f"- target: {value or 'each backend its own (sbdeploy.targets.BACKEND_TARGETS)'}")
        elif key == "forms":
            lines.append(f"- form timed per backend: {_setting(value)}")
        elif key == "engines" and isinstance(value, dict):
            engines = "; ".join(
                f"{name} (profile {'/'.join(map(str, e['profile']))}, {e['precision']})" for name, e in value.items()
            )
            lines.append(f"- engines: {engines or '-'}")
        else:
            lines.append(f"- {key}: {_setting(value)}")
    return lines


def to_csv(report: BenchReport) -> str:
    """One CSV line per row, every statistic as a column; ``flags`` as ``kind: reason`` joined by ``; ``."""
    flat = [r.flat() for r in report.rows]
    for row, r in zip(flat, report.rows):
        row["flags"] = "; ".join(f"{f.kind}: {f.reason}" for f in r.flags)
    buffer = io.StringIO()
    if flat:
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    return buffer.getvalue()


def _pyplot():  # noqa: ANN202  (matplotlib.pyplot, headless)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def _plain_log_ticks(axis: object, values: Sequence[float]) -> None:
    """Label a log axis with plain numbers (0.2, 0.5, 1, 2 ...), not powers of ten.

    Minor ticks get labels too: all of them when the data span less than a decade (else
    a short axis would show one label or none), only those at 2 and 5 otherwise.
    """
    from matplotlib.ticker import FuncFormatter

    positive = [v for v in values if v > 0]
    narrow = not positive or max(positive) / min(positive) < 10
    leads = "23456789" if narrow else "25"

    def minor(value: float, _: object) -> str:
        return f"{value:g}" if f"{value:.0e}"[0] in leads else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # type: ignore[attr-defined]
    axis.set_minor_formatter(FuncFormatter(minor))  # type: ignore[attr-defined]


def _series(row: BenchRow) -> str:
    """A row's series in the plots: its model, and its precision when not fp32 (fp16 files beside fp32 ones)."""
    return row.model if row.precision == "fp32" else f"{row.model} ({row.precision})"


def plot_latency_vs_macs(report: BenchReport, path: Path) -> None:
    """Median latency per image against GMACs per image, log-log, one panel per backend.

    Colours are batch sizes, marker shapes are models, both explained in the legend to
    the right of the panels (never over the data, and no text labels that could overlap);
    error bars are the medians' intervals; hollow markers are unstable figures.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    backends = list(dict.fromkeys(r.backend for r in report.rows)) or ["-"]
    models = list(dict.fromkeys(_series(r) for r in report.rows))
    batches = sorted({r.batch for r in report.rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {b: colours[i % len(colours)] for i, b in enumerate(batches)}
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    fig, axes = plt.subplots(
        1,
        len(backends),
        figsize=(4.2 * len(backends) + 2.2, 4.4),
        dpi=110,
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, backend in zip(axes[0], backends):
        for r in (r for r in report.rows if r.backend == backend):
            y, s = r.stats.median_ms / r.batch, r.stats
            err = None
            if s.median_low_ms is not None and s.median_high_ms is not None:
                err = [[max(y - s.median_low_ms / r.batch, 0)], [max(s.median_high_ms / r.batch - y, 0)]]
            ax.errorbar(
                [r.macs / 1e9],
                [y],
                yerr=err,
                fmt=marker[_series(r)],
                color=colour[r.batch],
                markersize=8,
                capsize=3,
                markerfacecolor="white" if r.unstable else colour[r.batch],
                markeredgewidth=1.5,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis, [r.macs / 1e9 for r in report.rows])
        _plain_log_ticks(ax.yaxis, [r.stats.median_ms / r.batch for r in report.rows])
        ax.set_title(backend)
        ax.set_xlabel("GMACs per image (log)")
        ax.grid(alpha=0.3, which="both")
        ax.margins(x=0.3, y=0.3)
    axes[0][0].set_ylabel("median latency per image, ms (log)")
    handles = [Line2D([], [], linestyle="", marker=marker[m], color="dimgray", markersize=8, label=m) for m in models]
    handles += [
        Line2D([], [], linestyle="", marker="o", color=colour[b], markersize=8, label=f"batch {b}") for b in batches
    ]
    if any(r.unstable for r in report.rows):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker="o",
                color="dimgray",
                markerfacecolor="white",
                markersize=8,
                label="hollow: unstable",
            )
        )
    fig.suptitle("Latency vs MACs (error bars: interval of the median)")
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    _save(fig, path, tight=False)


def plot_speedups(report: BenchReport, path: Path) -> None:
    """Per SB row: the measured speedup with its interval as error bars, and the ideal (1 / MAC ratio) beside it.

    Hatched bars marked ``!`` are unstable figures; the legend sits right of the axes.
    """
    plt = _pyplot()

    rows = [r for r in report.rows if r.speedup is not None]
    fig, ax = plt.subplots(
        figsize=(min(18.0, max(3.5, 1.0 * len(rows) + 1.5) + 2.2), 4.6), dpi=110, layout="constrained"
    )
    if not rows:
        ax.text(0.5, 0.5, "no SB/baseline pair was timed", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        _save(fig, path, tight=False)
        return
    xs = list(range(len(rows)))
    measured = [r.speedup or 0.0 for r in rows]
    err = [
        [max(v - (r.speedup_low if r.speedup_low is not None else v), 0) for v, r in zip(measured, rows)],
        [max((r.speedup_high if r.speedup_high is not None else v) - v, 0) for v, r in zip(measured, rows)],
    ]
    bars = ax.bar(
        [x - 0.18 for x in xs], measured, width=0.36, yerr=err, capsize=4, color="tab:blue", edgecolor="tab:blue"
    )
    ideal = [1 / r.mac_ratio if r.mac_ratio else 0 for r in rows]
    ideal_bars = ax.bar([x + 0.18 for x in xs], ideal, width=0.36, color="tab:orange", alpha=0.55)
    for bar, r, v, top in zip(bars, rows, measured, err[1]):
        if r.unstable:
            bar.set_facecolor("white")
            bar.set_hatch("//")
        ax.annotate(
            f"{v:.2f}x" + (" !" if r.unstable else ""),
            (bar.get_x() + bar.get_width() / 2, v + top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    for bar, v in zip(ideal_bars, ideal):
        ax.annotate(
            f"{v:.2f}x",
            (bar.get_x() + bar.get_width() / 2, v),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color="saddlebrown",
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
    labels = [f"{r.model}\n{r.backend} {r.precision} b{r.batch}" for r in rows]
    ax.set_xticks(
        xs, labels, fontsize=8, rotation=30 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center"
    )
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.set_ylabel("speedup over baseline")
    ax.set_ylim(0, max(max(ideal), max(m + e for m, e in zip(measured, err[1]))) * 1.15)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="tab:blue"), Patch(facecolor="tab:orange", alpha=0.55)]
    names = ["measured speedup\n(error bar: interval)", "ideal (1 / MAC ratio)"]
    if any(r.unstable for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="tab:blue", hatch="//"))
        names.append("unstable (!):\nsee the warnings")
    ax.set_title("SB speedup vs its baseline")
    fig.legend(handles, names, fontsize=8, loc="outside right center", frameon=False)
    _save(fig, path, tight=False)


def _save(fig: object, path: Path, *, tight: bool = True) -> None:
    plt = _pyplot()
    buffer = io.BytesIO()
    if tight:
        fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(buffer, format="png")  # type: ignore[attr-defined]
    plt.close(fig)
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
