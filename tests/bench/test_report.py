"""Bench report writers: every file is produced, well formed, and carries the intervals, the machine and the flags."""

from __future__ import annotations

import csv
import dataclasses
import json

from sbdeploy.bench.machine import MachineLoad, MachineUsage
from sbdeploy.bench.render import (
    baseline_lines,
    fastest_lines,
    fp16_lines,
    int8_lines,
    markdown_rows,
    settings_lines,
    to_markdown,
    write_report,
)
from sbdeploy.bench.report import FASTEST, FINALISTS, BenchGroup, BenchReport, BenchRow, judged
from sbdeploy.bench.timing import GroupRecord, LatencyStats
from sbdeploy.environment import collect_environment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stats(ms: float, spread: float = 0.0, halfwidth: float | None = 0.01) -> LatencyStats:
    s = LatencyStats.from_samples([ms / 1e3 * (1 + spread * (-1) ** i) for i in range(40)])
    if halfwidth is None:
        return s
    return dataclasses.replace(
        s, median_low_ms=s.median_ms * (1 - halfwidth), median_high_ms=s.median_ms * (1 + halfwidth)
    )


def group(load: float = 0.5, others: float = 0.05, backend: str = "ort-cpu", batch: int = 1) -> BenchGroup:
    state = MachineLoad((load, load, load), 2, 2)
    usage = MachineUsage(before=state, after=state, seconds=4.0, own_cpu=1.0, others_cpu=others)
    return BenchGroup.of(
        backend,
        batch,
        GroupRecord(
            rounds=30,
            turn=10,
            seconds=4.0,
            stop="every interval within +-3.0% after 30 turns",
            confidence=0.95,
            machine=usage,
        ),
    )


def rows(
    sb_ms: float = 1.25, low: float | None = 1.58, high: float | None = 1.62, sb_spread: float = 0.0
) -> list[BenchRow]:
    return [
        BenchRow(model="net", backend="ort-cpu", batch=1, macs=100, baseline=None, stats=stats(2.0)),
        BenchRow(
            model="net_sb",
            backend="ort-cpu",
            batch=1,
            macs=50,
            baseline="net",
            stats=stats(sb_ms, sb_spread),
            speedup_low=low,
            speedup_high=high,
        ),
    ]


def test_speedup_and_efficiency() -> None:
    sb = judged(rows(), [])[1]
    assert sb.speedup == 1.6 and sb.mac_ratio == 0.5 and sb.efficiency == 0.8
    assert sb.efficiency_interval is not None and (sb.efficiency_interval.low, sb.efficiency_interval.high) == (
        0.79,
        0.81,
    )


def test_speedups_pair_rows_of_the_same_precision_and_rows_name_their_file() -> None:
    def stats_ms(ms: float) -> LatencyStats:
        return LatencyStats.from_samples([ms / 1e3] * 3)

    paired = judged(
        [
            BenchRow(
                model="net",
                backend="ort-cpu",
                batch=1,
                macs=100,
                baseline=None,
                stats=stats_ms(2.0),
                target="ort-cpu",
                file="baseline.ort-cpu.b1.fp32.onnx",
                sha256="a" * 64,
            ),
            BenchRow(
                model="net_sb",
                backend="ort-cpu",
                batch=1,
                macs=50,
                baseline="net",
                stats=stats_ms(1.25),
                target="ort-cpu",
                file="model.ort-cpu.b1.fp32.onnx",
                sha256="b" * 64,
            ),
            BenchRow(
                model="net",
                backend="ort-cpu",
                batch=1,
                macs=100,
                baseline=None,
                stats=stats_ms(4.0),
                precision="fp16",
                target="ort-cpu",
                file="baseline.ort-cpu.b1.fp16.onnx",
                sha256="c" * 64,
            ),
            BenchRow(
                model="net_sb",
                backend="ort-cpu",
                batch=1,
                macs=50,
                baseline="net",
                stats=stats_ms(5.0),
                precision="fp16",
                target="ort-cpu",
                file="model.ort-cpu.b1.fp16.onnx",
                sha256="d" * 64,
            ),
            BenchRow(model="net_sb", backend="torch", batch=1, macs=50, baseline="net", stats=stats_ms(1.0)),
        ],
        [],
    )
    sb, sb16, torch_row = paired[1], paired[3], paired[4]
    assert sb.speedup == 1.6 and sb16.speedup == 0.8  # each against its own precision's baseline (2 ms, 4 ms)
    assert torch_row.speedup is None and torch_row.form == "training code"  # no torch baseline row
    md = to_markdown(BenchReport(rows=paired, environment=collect_environment()))
    assert "| net_sb | model.ort-cpu.b1.fp32.onnx | ort-cpu | ort-cpu | fp32 | 1 |" in md
    assert "| net_sb | model.ort-cpu.b1.fp16.onnx | ort-cpu | ort-cpu | fp16 | 1 |" in md  # two files never read alike
    assert (
        "| net_sb | - | training code | torch | fp32 | 1 |" in md
        and f"| `model.ort-cpu.b1.fp16.onnx` | `{'d' * 64}` |" in md
    )


def test_a_steady_report_has_no_flags_and_a_noisy_one_says_why() -> None:
    steady = judged(rows(), [group()])
    assert not any(r.unstable for r in steady)
    noisy = judged(rows(sb_ms=0.9, low=2.1, high=2.5, sb_spread=0.3), [group(load=3.5, others=1.6)])
    sb = noisy[1]
    assert [f.kind for f in sb.flags] == ["load", "busy", "interval", "efficiency"]  # a CV of 30% is no flag
    assert [f.kind for f in noisy[0].flags] == ["load", "busy"]  # the baseline: the machine's flags only
    report = BenchReport(rows=noisy, environment=collect_environment(), groups=[group(load=3.5, others=1.6)])
    subjects = [(w.subject, w.flag.kind) for w in report.warnings()]
    assert subjects == [
        ("ort-cpu batch 1", "load"),
        ("ort-cpu batch 1", "busy"),
        ("net_sb on ort-cpu batch 1", "interval"),
        ("net_sb on ort-cpu batch 1", "efficiency"),
    ]  # machine flags once per group


def test_write_report_produces_every_file_with_intervals_machine_and_flags(tmp_path) -> None:  # noqa: ANN001
    groups = [group(load=3.5, others=1.6)]
    report = BenchReport(
        rows=judged(rows(), groups), environment=collect_environment(), settings={"iters": 3}, groups=groups
    )
    paths = write_report(report, tmp_path / "bench")
    assert {p.name for p in paths} == {"bench.json", "bench.csv", "bench.md", "latency_vs_macs.png", "speedup.png"}
    data = json.loads((tmp_path / "bench" / "bench.json").read_text())
    sb = data["rows"][1]
    assert (
        sb["speedup"] == 1.6
        and (sb["speedup_low"], sb["speedup_high"]) == (1.58, 1.62)
        and sb["efficiency_low"] == 0.79
    )
    assert (
        sb["unstable"] is True
        and [f["kind"] for f in sb["flags"]] == ["load", "busy"]
        and "taskset" in sb["flags"][0]["advice"]
    )
    assert sb["cv"] == 0.0 and sb["median_low_ms"] == 1.25 * 0.99 and data["unstable"] is True
    assert (
        data["groups"][0]["machine"]["before"]["loadavg"] == [3.5, 3.5, 3.5]
        and data["groups"][0]["machine"]["others_cpu"] == 1.6
    )
    assert data["environment"]["cpu_count"] >= 1
    table = list(csv.DictReader((tmp_path / "bench" / "bench.csv").open()))
    assert (
        table[1]["model"] == "net_sb"
        and float(table[1]["efficiency"]) == 0.8
        and float(table[1]["speedup_high"]) == 1.62
    )
    assert table[1]["unstable"] == "True" and table[1]["flags"].startswith(
        "load: load average 3.5 less this process's 1.0 CPUs above the 2 CPUs"
    )
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert (
        "| net_sb | - | - | ort-cpu | fp32 | 1 |" in md
        and "1.60 (1.58-1.62)" in md
        and "0.80 (0.79-0.81)" in md
        and "no: load, busy" in md
    )
    assert (
        "## Warnings: unstable figures" in md
        and "- **load average (less this process) above the 2 CPUs available** (every group): ort-cpu b1 2.5" in md
    )
    assert "What to do:" in md and md.count("What to do:") == 1
    assert (
        "| ort-cpu | 1 | 30 | 10 | 0 | 4.0 | every interval within +-3.0% after 30 turns | 3.50, 3.50 | 1.60 | 2 / 2 |"
        in md
    )
    for png in ("latency_vs_macs.png", "speedup.png"):
        assert (tmp_path / "bench" / png).read_bytes()[:8] == PNG_MAGIC
    assert not list((tmp_path / "bench").glob(".*tmp"))  # no temporary files left


def test_markdown_of_a_stable_report_has_no_warnings_section() -> None:
    report = BenchReport(rows=judged(rows(), [group()]), environment=collect_environment(), groups=[group()])
    md = to_markdown(report)
    assert "Warnings" not in md and "| yes |" in md and "95% bootstrap interval" in md


def test_the_warnings_say_each_reason_once_with_every_figure_and_its_numbers() -> None:
    """A busy machine and noisy runs on two groups: one line per reason (not one per figure), no fact lost."""
    groups = [group(load=4.3, others=1.5), group(load=4.5, others=1.52, batch=8)]
    noisy = []
    for batch, spread in ((1, 0.3), (8, 0.2)):
        for r in rows(sb_ms=0.9, low=2.1, high=2.5, sb_spread=spread):
            noisy.append(
                dataclasses.replace(r, batch=batch, stats=stats(r.stats.median_ms, spread if r.baseline else 0.25))
            )
    report = BenchReport(rows=judged(noisy, groups), environment=collect_environment(), groups=groups)
    summary = report.warning_summary()
    lines = [w.line() for _, summaries in summary for w in summaries]
    assert lines[:2] == [
        "load average (less this process) above the 2 CPUs available (every group): ort-cpu b1 3.3, ort-cpu b8 3.5",
        "other processes used more than 10% of the 2 CPUs while timed (every group): ort-cpu b1 1.50 CPUs, "
        "ort-cpu b8 1.52 CPUs",
    ]
    interval = next(line for line in lines if line.startswith("speedup interval"))
    assert interval.startswith(
        "speedup interval wider than +-3.0% (2 of 4 figures): net_sb: ort-cpu b1 +-9.0%, ort-cpu b8 +-9.0%"
    )
    assert len(lines) == len({line.split(" (")[0] for line in lines}) == 4  # load, busy, speedup interval, efficiency
    assert [advice for advice, _ in summary] == list(
        dict.fromkeys(w.flag.advice for w in report.warnings())
    )  # each said once
    every = [w for _, summaries in summary for s in summaries for w in s.warnings]
    assert sorted(map(repr, every)) == sorted(map(repr, report.warnings()))  # every warning in exactly one line
    for w in report.warnings():  # with its own numbers
        assert any(w.flag.value in line and w.backend in line for line in lines), w
    flags = report.to_dict()["warnings"]
    assert len(flags) == len(report.warnings()) and all(
        {"reason", "headline", "value", "advice"} <= set(f) for f in flags
    )


def test_the_gpu_column_is_shown_only_when_a_row_has_a_device_time() -> None:
    cpu = to_markdown(BenchReport(rows=judged(rows(), [group()]), environment=collect_environment(), groups=[group()]))
    header = cpu.splitlines()[2]
    assert "GPU ms" not in cpu and "| precision |" in header and header.count("|") == cpu.splitlines()[4].count("|")
    timed = [dataclasses.replace(r, stats=dataclasses.replace(r.stats, compute_median_ms=0.5)) for r in rows()]
    gpu = to_markdown(BenchReport(rows=judged(timed, [group()]), environment=collect_environment(), groups=[group()]))
    assert "| GPU ms |" in gpu and "| 0.500 |" in gpu


def test_settings_read_as_text_and_say_which_form_each_backend_timed() -> None:
    lines = settings_lines(
        {
            "models": ["net_sb", "net"],
            "iters": None,
            "target": None,
            "forms": {"torch": "training code", "ort-cpu": "ort-cpu"},
            "engines": {},
            "files": [{"file": "model.ort-cpu.b1.fp32.onnx"}],
            "notes": [],
        }
    )
    assert lines == [
        "- models: net_sb, net",
        "- iters: -",
        "- target: each backend its own (sbdeploy.targets.BACKEND_TARGETS)",
        "- form timed per backend: torch: training code; ort-cpu: ort-cpu",
        "- engines: -",
        "- notes: -",
    ]
    forced = settings_lines(
        {"target": "grouped", "engines": {"model.grouped.fp16.engine": {"profile": [1, 8, 8], "precision": "fp16"}}}
    )
    assert forced == ["- target: grouped", "- engines: model.grouped.fp16.engine (profile 1/8/8, fp16)"]


def test_int8_rows_say_the_instruction_set_and_plainly_when_int8_does_not_pay() -> None:
    def int8_row(model: str, batch: int, vs_fp32: float, backend: str = "ort-cpu") -> BenchRow:
        return BenchRow(
            model=model,
            backend=backend,
            batch=batch,
            macs=100,
            baseline=None,
            stats=stats(1.0),
            precision="int8",
            vs_fp32=vs_fp32,
            vs_fp32_low=vs_fp32 * 0.95,
            vs_fp32_high=vs_fp32 * 1.05,
        )

    table = [*rows(), int8_row("net", 1, 0.8), int8_row("net_sb", 1, 1.7), int8_row("net", 8, 0.5, backend="trt")]
    avx2 = dataclasses.replace(collect_environment(), cpu_int8="x86_64 AVX2, no VNNI: ...", cpu_int8_dot=False)
    lines = int8_lines(BenchReport(rows=table, environment=avx2, settings={}, groups=[group()]))
    assert lines[0] == "int8 on this CPU: x86_64 AVX2, no VNNI: ...."
    assert len(lines) == 2 and lines[1].startswith(
        "int8 does not pay here: net batch 1 on ort-cpu: int8 takes 1.25x fp32's time"
    )
    assert (
        "(95% interval of the speedup 0.76-0.84)" in lines[1] and "no VNNI" in lines[1]
    )  # only the CPU row that lost; trt is a GPU
    vnni = dataclasses.replace(avx2, cpu_int8="x86_64 AVX-512, VNNI", cpu_int8_dot=True)
    report = BenchReport(rows=table, environment=vnni, settings={}, groups=[group()])
    assert "although this CPU has int8 dot-product instructions" in int8_lines(report)[1]
    markdown = to_markdown(report)
    assert "## int8" in markdown and "- int8 instructions: x86_64 AVX-512, VNNI" in markdown
    assert [cells[-2] for cells in markdown_rows(table)] == [
        "-",
        "-",
        "0.80 (0.76-0.84)",
        "1.70 (1.61-1.78)",
        "0.50 (0.47-0.53)",
    ]
    assert (
        int8_lines(BenchReport(rows=rows(), environment=vnni, settings={}, groups=[group()])) == []
    )  # no int8 rows: nothing said


def test_fp16_on_ort_cpu_is_explained_once_for_the_backend() -> None:
    def fp16_row(model: str, batch: int, vs_fp32: float, backend: str = "ort-cpu") -> BenchRow:
        row = BenchRow(model, backend, batch, 100, None, stats(2.0), precision="fp16")
        return dataclasses.replace(row, vs_fp32=vs_fp32, vs_fp32_low=vs_fp32 * 0.95, vs_fp32_high=vs_fp32 * 1.05)

    table = [*rows(), fp16_row("net", 1, 0.5), fp16_row("net", 8, 0.8), fp16_row("net", 8, 1.9, backend="trt")]
    x86 = dataclasses.replace(collect_environment(), platform="Linux-6.1.0-x86_64-with-glibc2.36")
    report = BenchReport(rows=table, environment=x86, settings={}, groups=[group()])
    (line,) = fp16_lines(report)  # one line for ort-cpu, none for trt (a GPU runs fp16)
    assert (
        line.startswith("fp16 does not pay on ort-cpu:") and "in fp32 through casts (Cast -> fp32 Conv -> Cast)" in line
    )
    assert "fp16's time over fp32's here: net b1 2.00x, net b8 1.25x" in line
    assert "## fp16\n\n- fp16 does not pay on ort-cpu" in to_markdown(report)
    arm = dataclasses.replace(x86, platform="Linux-6.1.0-aarch64-with-glibc2.36")  # there: only what was measured
    assert fp16_lines(dataclasses.replace(report, environment=arm)) == [
        "fp16 is not faster than fp32 on ort-cpu here (fp16's time over fp32's: net b1 2.00x, net b8 1.25x); "
        "ship fp32 for it."
    ]
    faster = [*rows(), fp16_row("net", 1, 1.3)]
    assert fp16_lines(BenchReport(rows=faster, environment=arm, settings={}, groups=[group()])) == []
    assert fp16_lines(BenchReport(rows=rows(), environment=x86, settings={}, groups=[group()])) == []  # no fp16 rows


def test_against_a_baseline_each_speedup_names_both_files_and_their_sha256() -> None:
    files = [("base.onnx", "a" * 64), ("new.onnx", "b" * 64)]
    table = judged([dataclasses.replace(r, file=f, sha256=h) for r, (f, h) in zip(rows(), files)], [group()])
    report = BenchReport(rows=table, environment=collect_environment(), settings={"baseline": "net"}, groups=[group()])
    assert baseline_lines(report) == [
        f"net_sb over net (ort-cpu b1 fp32): speedup 1.600 (1.580-1.620), efficiency 0.80 (0.79-0.81); "
        f"new.onnx sha256 {'b' * 64}; base.onnx sha256 {'a' * 64}"
    ]
    flat = table[1].flat()
    assert (flat["baseline_file"], flat["baseline_sha256"], flat["sha256"]) == ("base.onnx", "a" * 64, "b" * 64)
    assert "## Against the baseline" in to_markdown(report)
    assert baseline_lines(dataclasses.replace(report, settings={})) == []  # without --baseline: the table says it


def test_fastest_files_pair_across_engines_and_say_which_file_to_ship() -> None:
    base = dataclasses.replace(rows()[0], backend="ov-cpu", precision="bf16", file="net.onnx", sha256="a" * 64)
    sb = dataclasses.replace(rows()[1], backend="ort-cpu", file="net_sb.onnx", sha256="b" * 64)
    fast = group(backend=FASTEST)
    fastest = judged([base, sb], [group(), fast], fastest=True)  # paired by model and batch, whatever ran them
    assert fastest[1].speedup == 2.0 / 1.25 and fastest[1].baseline_sha256 == "a" * 64
    assert judged([base, sb], [group()])[1].speedup is None  # the backends' own groups pair same-backend rows only
    report = BenchReport(rows=[], environment=collect_environment(), groups=[fast], fastest=fastest)
    lines = fastest_lines(report)
    assert lines == [
        "batch 1: net's fastest file is net.onnx on ov-cpu bf16, 2.000 (1.980-2.020) ms",
        "batch 1: net_sb's fastest file is net_sb.onnx on ort-cpu fp32, 1.250 (1.238-1.262) ms; 1.60 (1.58-1.62)x "
        "the speed of net's fastest (ov-cpu bf16): ship net_sb's",
    ]
    markdown = to_markdown(report)
    assert "## Fastest file per network" in markdown and lines[1] in markdown
    assert report.to_dict()["fastest"][1]["speedup"] == 1.6
    slower = judged(
        [base, dataclasses.replace(sb, stats=stats(2.5), speedup_low=0.79, speedup_high=0.81)], [fast], fastest=True
    )
    unsure = judged([base, dataclasses.replace(sb, speedup_low=0.9, speedup_high=1.7)], [fast], fastest=True)
    assert fastest_lines(dataclasses.replace(report, fastest=slower))[1].endswith("ship net's")
    assert fastest_lines(dataclasses.replace(report, fastest=unsure))[1].endswith(
        "neither is surely faster (flagged: see the warnings)"
    )
    busy = judged([base, sb], [group(load=6.0, backend=FASTEST)], fastest=True)  # its own group's machine flags
    assert all(any(f.kind == "load" for f in r.flags) for r in busy)
    # a pick made by a busy finalists group is flagged too (so --strict and the verdict's "flagged" see it)
    picked_busy = judged([base, sb], [group(load=6.0, backend=FINALISTS), fast], fastest=True)
    assert all(any(f.kind == "load" for f in r.flags) for r in picked_busy)
    assert BenchReport(rows=[], environment=collect_environment(), fastest=picked_busy).unstable
    assert not judged([base, sb], [group(backend=FINALISTS), fast], fastest=True)[1].flags


def test_the_finalists_that_chose_the_fastest_files_are_reported() -> None:
    base, sb = rows()
    finalists = [
        dataclasses.replace(sb, backend=b, precision=p, file=f"net_sb.{b}.{p}.onnx", stats=stats(ms))
        for b, p, ms in [("ort-cpu", "int8", 1.0), ("ov-cpu", "int8", 1.5)]
    ]
    report = BenchReport(rows=[], environment=collect_environment(), fastest=[base, sb], finalists=finalists)
    assert [r["backend"] for r in report.to_dict()["finalists"]] == ["ort-cpu", "ov-cpu"]
    last = fastest_lines(report)[-1]
    assert last.startswith("batch 1: chosen among each network's fastest on each engine, timed together (ms): ")
    assert "net_sb ort-cpu int8 1.000 (0.990-1.010), net_sb ov-cpu int8 1.500 (1.485-1.515)" in last
    assert len(fastest_lines(dataclasses.replace(report, finalists=[]))) == len(fastest_lines(report)) - 1


def test_across_engines_a_speedup_beyond_the_mac_ratio_is_not_flagged_impossible() -> None:
    base = dataclasses.replace(rows()[0], backend="ov-cpu", precision="bf16")
    sb = dataclasses.replace(rows()[1], stats=stats(0.8), speedup_low=2.45, speedup_high=2.55)  # 2.5x at MAC ratio 0.5
    across = judged([base, sb], [group(backend=FASTEST)], fastest=True)[1]
    assert across.speedup == 2.5 and not any(f.kind == "efficiency" for f in across.flags)
    alike = judged(
        [dataclasses.replace(base, backend="ort-cpu", precision="fp32"), sb], [group(backend=FASTEST)], fastest=True
    )[1]
    assert any(f.kind == "efficiency" for f in alike.flags)  # one engine, one precision: the MAC ratio bounds it
