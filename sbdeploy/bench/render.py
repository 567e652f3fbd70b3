"""A bench report as text and files: the Markdown table and page (its cells as the CLI prints them), the CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from sbdeploy._io import atomic_write_bytes
from sbdeploy.bench.plots import plot_latency_vs_macs, plot_speedups
from sbdeploy.bench.report import BenchReport, BenchRow
from sbdeploy.bench.stats import Interval, with_interval
from sbdeploy.bench.timing import LatencyStats

MARKDOWN_COLUMNS = (
    *("model", "file", "form", "backend", "precision", "batch", "GMACs/img", "median ms (CI)", "GPU ms", "p90 ms"),
    *("p99 ms", "CV", "img/s", "speedup (CI)", "MAC ratio", "efficiency (CI)", "vs fp32 (CI)", "stable"),
)


def shown_columns(rows: Sequence[BenchRow]) -> list[int]:
    """Indexes of :data:`MARKDOWN_COLUMNS` a table of ``rows`` shows ("GPU ms" and "vs fp32" only where some row has one)."""
    gpu = any(r.stats.compute_median_ms is not None for r in rows)
    reduced = any(r.vs_fp32 is not None for r in rows)
    return [i for i, c in enumerate(MARKDOWN_COLUMNS) if (gpu or c != "GPU ms") and (reduced or c != "vs fp32 (CI)")]


def _median(s: LatencyStats) -> str:
    """A median in ms with its interval: ``1.250 (1.238-1.262)``."""
    return with_interval(s.median_ms, ".3f", Interval.of(s.median_low_ms, s.median_high_ms))


def markdown_rows(rows: list[BenchRow]) -> list[list[str]]:
    """Table cells of the rows, as printed by the CLI and written to Markdown."""
    cells = []
    for r in rows:
        s = r.stats
        median = _median(s)
        stable = "yes" if not r.flags else "no: " + ", ".join(dict.fromkeys(f.kind for f in r.flags))
        head = [r.model, r.file or "-", r.form, r.backend, r.precision, str(r.batch), f"{r.macs / 1e9:.3f}", median]
        times = [with_interval(s.compute_median_ms, ".3f"), f"{s.p90_ms:.3f}", f"{s.p99_ms:.3f}", f"{s.cv:.1%}"]
        speedup, ratio = with_interval(r.speedup, ".2f", r.speedup_interval), with_interval(r.mac_ratio, ".3f")
        efficiency = with_interval(r.efficiency, ".2f", r.efficiency_interval)
        vs_fp32 = with_interval(r.vs_fp32, ".2f", r.vs_fp32_interval)
        cells.append([*head, *times, f"{r.throughput:.1f}", speedup, ratio, efficiency, vs_fp32, stable])
    return cells


def int8_lines(report: BenchReport) -> list[str]:
    """What this CPU's instruction set allows for int8 and, per ``ort-cpu`` int8 row not faster than fp32, why."""
    int8 = [r for r in report.rows if r.precision == "int8"]
    if not int8:
        return []
    env = report.environment
    lines = [f"int8 on this CPU: {env.cpu_int8 or 'instruction set unknown'}."]
    for r in int8:
        if r.backend != "ort-cpu" or r.vs_fp32 is None or r.vs_fp32 > 1:
            continue
        ratio = f"int8 takes {1 / r.vs_fp32:.2f}x fp32's time"
        if r.vs_fp32_interval:
            ratio += f" ({report.confidence:.0%} interval of the speedup {r.vs_fp32_low:.2f}-{r.vs_fp32_high:.2f})"
        where = f"{r.model} batch {r.batch} on {r.backend}"
        lines.append(
            f"int8 does not pay here: {where}: {ratio}, and this CPU has no VNNI (no int8 dot-product "
            "instructions); ship fp32 here, int8 for a CPU with VNNI (measure it there)."
            if env.cpu_int8_dot is False
            else f"int8 is not faster than fp32 for {where}: {ratio}, although this CPU has int8 dot-product "
            "instructions; ship fp32 for this model and batch."
        )
    return lines


def baseline_lines(report: BenchReport) -> list[str]:
    """With a ``--baseline``: one line per speedup over it, naming both files with their sha256."""
    if not report.settings.get("baseline"):
        return []
    lines = []
    for r in (r for r in report.rows if r.speedup is not None):
        text = f"{r.model} over {r.baseline} ({r.backend} b{r.batch} {r.precision}): speedup "
        text += with_interval(r.speedup, ".3f", r.speedup_interval)
        if r.efficiency is not None:
            text += f", efficiency {with_interval(r.efficiency, '.2f', r.efficiency_interval)}"
        named = (r.model, r.baseline) if r.file == r.baseline_file else (r.file, r.baseline_file)  # alike: by label
        sums = [
            f"{n} sha256 {h}" for n, f, h in zip(named, (r.file, r.baseline_file), (r.sha256, r.baseline_sha256)) if f
        ]
        lines.append(text + "".join(f"; {s}" for s in sums))
    return lines


def fastest_lines(report: BenchReport) -> list[str]:
    """Per network and batch, its fastest file (timed again beside the others'), and an SB network's against its
    baseline's fastest: which file to ship, whichever engine and precision run them."""
    fastest = {(r.model, r.batch): r for r in report.fastest}
    lines = []
    for r in report.fastest:
        median = _median(r.stats)
        text = f"batch {r.batch}: {r.model}'s fastest file is {r.file} on {r.backend} {r.precision}, {median} ms"
        base = fastest.get((r.baseline, r.batch)) if r.baseline else None
        if r.speedup is not None and base is not None:
            low, high = r.speedup_low, r.speedup_high
            if low is None or high is None:
                verdict = "no interval (too few turns): time it longer"
            else:
                verdict = (
                    f"ship {r.model}'s"
                    if low > 1
                    else f"ship {base.model}'s"
                    if high < 1
                    else "neither is surely faster"
                )
            speedup = with_interval(r.speedup, ".2f", r.speedup_interval)
            text += f"; {speedup}x the speed of {base.model}'s fastest ({base.backend} {base.precision}): {verdict}"
        lines.append(text + (" (flagged: see the warnings)" if r.flags else ""))
    for batch in dict.fromkeys(r.batch for r in report.finalists):  # what chose them, where engines competed
        timed = [r for r in report.finalists if r.batch == batch]
        figures = ", ".join(f"{r.model} {r.backend} {r.precision} {_median(r.stats)}" for r in timed)
        lines.append(
            f"batch {batch}: chosen among each network's fastest on each engine, timed together (ms): {figures}"
        )
    return lines


def fp16_lines(report: BenchReport) -> list[str]:
    """One line for ``ort-cpu``'s fp16 rows: why fp16 does not pay there, and what it cost each row here."""
    rows = [
        (r, v) for r in report.rows if (v := r.vs_fp32) is not None and (r.backend, r.precision) == ("ort-cpu", "fp16")
    ]
    if not rows:
        return []
    costs = ", ".join(f"{r.model} b{r.batch} {1 / vs_fp32:.2f}x" for r, vs_fp32 in rows)
    if any(arch in report.environment.platform for arch in ("x86_64", "AMD64")):
        return [
            "fp16 does not pay on ort-cpu: ONNX Runtime's CPU provider has no fp16 convolution on x86-64, so it runs "
            f"fp16 files in fp32 through casts (Cast -> fp32 Conv -> Cast); fp16's time over fp32's here: {costs}. "
            "Ship fp32 for ort-cpu, fp16 where a GPU runs it (trt, ort-cuda)."
        ]
    if all(vs_fp32 <= 1 for _, vs_fp32 in rows):
        return [f"fp16 is not faster than fp32 on ort-cpu here (fp16's time over fp32's: {costs}); ship fp32 for it."]
    return []


def legend_lines(report: BenchReport) -> list[str]:
    """What the table's figures mean (under the table, in the CLI and in Markdown)."""
    return [
        f"CI = {report.confidence:.0%} bootstrap interval over the turns of the interleaved schedule "
        "(for speedup: paired turns, ratio of medians).",
        "speedup = baseline median / this row's (same backend, batch and precision; the baseline: an SB model's, or "
        "--baseline); efficiency = speedup x MAC ratio "
        "(1 = the MAC ratio's ideal); vs fp32 = the same model's fp32 median / this fp16 or int8 row's (paired turns).",
        "CV = standard deviation / mean of single runs (with p90, p99: how they vary, not how sure a median is); "
        "stable = no flag (see the warnings).",
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header)] + [f"| {' | '.join(map(str, r))} |" for r in rows]


def to_markdown(report: BenchReport) -> str:
    """A Markdown report: the table, its warnings, how each group was measured, settings, environment."""
    shown = shown_columns(report.rows)
    lines = ["# sbdeploy bench", ""]
    lines += _table([MARKDOWN_COLUMNS[i] for i in shown], [[c[i] for i in shown] for c in markdown_rows(report.rows)])
    lines += ["", *(f"{line}  " for line in legend_lines(report)), ""]
    sections = (
        ("Fastest file per network", fastest_lines(report)),
        ("Against the baseline", baseline_lines(report)),
        ("fp16", fp16_lines(report)),
    )
    for title, items in (*sections, ("int8", int8_lines(report))):
        lines += [f"## {title}", "", *(f"- {line}" for line in items), ""] if items else []
    files = dict.fromkeys((r.file, r.sha256) for r in report.rows if r.file)  # two files may share a name
    if files:
        sums = [[f"`{f}`", f"`{h}`"] for f, h in files]
        lines += ["## Files timed", "", *_table(["file", "sha256"], sums), ""]
    grouped = report.warning_summary()
    if grouped:
        lines += [
            "## Warnings: unstable figures",
            "",
            "Each reason once, with every figure (or group) it holds for and its numbers.",
            "",
        ]
        for advice, summaries in grouped:
            lines += [f"- **{w.headline}** ({w.count()}): {w.items()}" for w in summaries]
            lines += ["", f"  What to do: {advice}.", ""]
    if report.groups:
        header = ["backend", "batch", "turns", "runs per turn", "settle ms", "seconds", "stopped"]
        header += ["load 1 min (before, after)"]
        header += ["others' CPU", "CPUs (available / machine)"]
        cells = []
        for g in report.groups:
            r, m = g.record, g.record.machine
            row = [
                g.backend,
                g.batch,
                r.rounds,
                r.turn,
                f"{r.settle_s * 1e3:.0f}",
                f"{r.seconds:.1f}",
                r.stop,
                m.loads(", "),
            ]
            cells.append(
                [*row, with_interval(m.others_cpu, ".2f"), f"{m.cpus_available} / {m.before.cpu_count or '-'}"]
            )
        note = (
            "settle ms = untimed runs that open each turn: ONNX Runtime's idle workers spin for up to 60 ms after a "
            "run, so the next callable is timed only once the last one's have gone to sleep; "
            "others' CPU = cores' worth of CPU time that other processes took on the available CPUs while the group was timed."
        )
        lines += ["## Measurement", "", *_table(header, cells), "", note, ""]
    env = report.environment
    lines += ["## Settings", "", *settings_lines(report.settings), "", "## Environment", ""]
    lines += [f"- CPU: {env.cpu} ({env.cpu_count} cores), torch threads {env.torch_threads}"]
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
        if key == "target":
            lines.append(f"- target: {value or 'each backend its own (sbdeploy.targets.BACKEND_TARGETS)'}")
        elif key == "forms":
            lines.append(f"- form timed per backend: {_setting(value)}")
        elif key == "engines" and isinstance(value, dict):
            engines = [
                f"{name} (profile {'/'.join(map(str, e['profile']))}, {e['precision']})" for name, e in value.items()
            ]
            lines.append(f"- engines: {'; '.join(engines) or '-'}")
        elif key != "files":
            lines.append(f"- {key}: {_setting(value)}")
    return lines


def to_csv(report: BenchReport) -> str:
    """One CSV line per row, every statistic as a column; ``flags`` as ``kind: reason`` joined by ``; ``."""
    flat = [{**r.flat(), "flags": "; ".join(f"{f.kind}: {f.reason}" for f in r.flags)} for r in report.rows]
    buffer = io.StringIO()
    if flat:
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    return buffer.getvalue()


def write_report(report: BenchReport, folder: str | Path) -> list[Path]:
    """Write bench.json, bench.csv, bench.md, latency_vs_macs.png and speedup.png."""
    folder = Path(folder)
    texts = {
        "bench.json": json.dumps(report.to_dict(), indent=2) + "\n",
        "bench.csv": to_csv(report),
        "bench.md": to_markdown(report),
    }
    for name, text in texts.items():
        atomic_write_bytes(folder / name, text.encode())
    plot_latency_vs_macs(report, folder / "latency_vs_macs.png")
    plot_speedups(report, folder / "speedup.png")
    return [folder / n for n in (*texts, "latency_vs_macs.png", "speedup.png")]
