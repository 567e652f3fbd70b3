"""Benchmark results as data, and their judgment: rows, speedups, intervals, flags and warnings."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sbdeploy.bench.stability import Flag, Limits, latency_flags, machine_flags, speedup_flags
from sbdeploy.bench.stats import Halves, Interval, bounds
from sbdeploy.bench.timing import GroupRecord, GroupResult, LatencyStats, Pair
from sbdeploy.environment import Environment

MACHINE_FLAG_KINDS = ("load", "busy")
FASTEST = "fastest files"
"""The backend label of the groups that time each network's fastest file against its baseline's fastest."""
FINALISTS = "fastest-file finalists"
"""The backend label of the groups that time each network's fastest file of every backend together, to choose its
fastest (the backends' own groups ran apart: the machine's state can differ between them)."""


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
    speedup_halves: Halves | None = None  # the speedup of the first and of the second half of the turns
    flags: tuple[Flag, ...] = ()  # why this figure is not to be trusted (none: stable)
    precision: str = "fp32"
    target: str | None = None  # the deploy target of the file's form (None: the torch module, or a foreign file)
    file: str | None = None  # the file timed (None: the torch module)
    sha256: str | None = None  # of that file
    vs_fp32: float | None = None  # fp16/int8 rows: the same model's fp32 median / this row's (timed in the same group)
    vs_fp32_low: float | None = None  # its interval (paired bootstrap over turns)
    vs_fp32_high: float | None = None
    baseline_file: str | None = None  # SB rows: the file of the baseline's row, and its sha256
    baseline_sha256: str | None = None

    @property
    def form(self) -> str:
        """What ran: the file's deploy target, the training code itself on torch, ``-`` when not known."""
        return self.target or ("training code" if self.backend.startswith("torch") else "-")

    @property
    def key(self) -> tuple[str | None, str, int, str]:
        """(model, backend, batch, precision): what identifies a row, and pairs it with its baseline's."""
        return (self.model, self.backend, self.batch, self.precision)

    @property
    def throughput(self) -> float:
        return self.stats.throughput(self.batch)

    @property
    def efficiency(self) -> float | None:
        """Realized speedup over the ideal one (1 / MAC ratio)."""
        return None if self.speedup is None or not self.mac_ratio else self.speedup * self.mac_ratio

    @property
    def speedup_interval(self) -> Interval | None:
        return Interval.of(self.speedup_low, self.speedup_high)

    @property
    def efficiency_interval(self) -> Interval | None:
        interval = self.speedup_interval
        return interval.scaled(self.mac_ratio) if interval is not None and self.mac_ratio else None

    @property
    def vs_fp32_interval(self) -> Interval | None:
        return Interval.of(self.vs_fp32_low, self.vs_fp32_high)

    @property
    def unstable(self) -> bool:
        return bool(self.flags)

    def flat(self) -> dict[str, object]:
        row = {k: v for k, v in asdict(self).items() if k not in ("stats", "flags", "speedup_halves")}
        stats = {k: v for k, v in self.stats.to_dict().items() if k != "halves"}
        low, high = bounds(self.efficiency_interval)
        halves = {"median_ms": self.stats.halves, "speedup": self.speedup_halves}
        return {
            **row,
            **stats,
            **{f"{name}_halves": None if h is None else [h.first, h.second] for name, h in halves.items()},
            "form": self.form,
            "throughput_img_s": self.throughput,
            "efficiency": self.efficiency,
            "efficiency_low": low,
            "efficiency_high": high,
            "unstable": self.unstable,
            "flags": [f.to_dict() for f in self.flags],
        }


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
        flags = [f.to_dict() for f in self.flags]
        return {"backend": self.backend, "batch": self.batch, **self.record.to_dict(), "flags": flags}


@dataclass(frozen=True)
class BenchWarning:
    """One warning of a report: its flag, and the figure it is about (``model`` None: a group's machine flag)."""

    flag: Flag
    backend: str
    batch: int
    model: str | None = None
    precision: str = "fp32"

    @property
    def subject(self) -> str:
        """``ort-cpu batch 8`` for a machine flag, ``resnet18_sb on ort-cpu batch 8`` (`` fp16``) for a figure's."""
        group = f"{self.backend} batch {self.batch}"
        return group if self.model is None else f"{self.model} on {group}{_precision(self.precision)}"

    @property
    def figure(self) -> str:
        """``ort-cpu b8`` (``ort-cpu b8 fp16``), then the flag's own numbers: one item of a summary line."""
        return f"{self.backend} b{self.batch}{_precision(self.precision)} {self.flag.value}".rstrip()


def _precision(precision: str) -> str:
    return "" if precision == "fp32" else f" {precision}"


@dataclass(frozen=True)
class WarningSummary:
    """One reason (a flags' headline) said once with every figure (or group) it holds for, out of ``out_of``."""

    headline: str
    warnings: tuple[BenchWarning, ...]
    out_of: int
    machine: bool

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
    # each network's fastest file per batch (where it had a choice), timed again with the others', SB against its
    # baseline's fastest, whatever engine and precision ran either
    fastest: list[BenchRow] = field(default_factory=list)
    # where a network had files on several backends: its fastest on each, timed together to choose its fastest
    finalists: list[BenchRow] = field(default_factory=list)

    @property
    def unstable(self) -> bool:
        """Whether any figure is flagged (``--strict`` exits 1 then)."""
        return any(r.unstable for r in (*self.rows, *self.fastest))

    @property
    def confidence(self) -> float:
        """The confidence of the report's intervals (0.95 unless the plan said otherwise)."""
        return self.groups[0].record.confidence if self.groups else 0.95

    def warnings(self) -> list[BenchWarning]:
        """Every flag once: machine flags per group, the others per row."""
        out = [BenchWarning(f, g.backend, g.batch) for g in self.groups for f in g.flags]
        for r in self.rows:
            out += [
                BenchWarning(f, r.backend, r.batch, r.model, r.precision)
                for f in r.flags
                if f.kind not in MACHINE_FLAG_KINDS
            ]
        for r in self.fastest:
            out += [BenchWarning(f, FASTEST, r.batch, r.model) for f in r.flags if f.kind not in MACHINE_FLAG_KINDS]
        return out

    def warning_summary(self) -> list[tuple[str, list[WarningSummary]]]:
        """:meth:`warnings` at a glance: one :class:`WarningSummary` per reason, grouped by what to do."""
        by_reason: dict[tuple[str, str], list[BenchWarning]] = {}
        for w in self.warnings():
            by_reason.setdefault((w.flag.kind, w.flag.headline), []).append(w)
        by_advice: dict[str, list[WarningSummary]] = {}
        for (kind, headline), warnings in by_reason.items():
            machine = kind in MACHINE_FLAG_KINDS
            figures = len(self.rows) + len(self.fastest)
            summary = WarningSummary(headline, tuple(warnings), len(self.groups) if machine else figures, machine)
            by_advice.setdefault(warnings[0].flag.advice, []).append(summary)
        return list(by_advice.items())

    def to_dict(self) -> dict[str, object]:
        return {
            "environment": self.environment.to_dict(),
            "settings": self.settings,
            "unstable": self.unstable,
            "groups": [g.to_dict() for g in self.groups],
            "rows": [r.flat() for r in self.rows],
            "fastest": [r.flat() for r in self.fastest],
            "finalists": [r.flat() for r in self.finalists],
            "warnings": [{"subject": w.subject, **w.flag.to_dict()} for w in self.warnings()],
        }


def pairs_of(models: dict[str, tuple[int, str | None]]) -> list[Pair]:
    """The SB/baseline pairs among timed models, from label -> (MACs per image, baseline label or None)."""
    return [
        Pair(sb=label, baseline=base, mac_ratio=macs / models[base][0])
        for label, (macs, base) in models.items()
        if base is not None and base in models
    ]


def measured_row(
    result: GroupResult, key: str, model: str, backend: str, batch: int, macs: int, baseline: str | None, **fields: Any
) -> BenchRow:
    """Callable ``key``'s row of a measured group, with its speedup interval (the speedup comes from :func:`judged`)."""
    speedup = result.speedups.get(key)
    low, high = bounds(speedup.interval if speedup else None)
    halves = speedup.halves if speedup else None
    stats = result.stats[key]
    return BenchRow(
        model,
        backend,
        batch,
        macs,
        baseline,
        stats,
        speedup_low=low,
        speedup_high=high,
        speedup_halves=halves,
        **fields,
    )


def group_rows(
    result: GroupResult, *, backend: str, batch: int, models: dict[str, tuple[int, str | None]]
) -> list[BenchRow]:
    """The rows of one measured group, labelled as its callables."""
    return [measured_row(result, label, label, backend, batch, macs, base) for label, (macs, base) in models.items()]


def judged(
    rows: list[BenchRow], groups: Sequence[BenchGroup], limits: Limits = Limits(), *, fastest: bool = False
) -> list[BenchRow]:
    """The rows as a report shows them: each SB row's speedup, MAC ratio and baseline file from its baseline's row
    (same backend, batch and precision; among ``fastest`` rows: the baseline's at that batch, whatever ran it), then
    each row's flags (its group's machine flags among them)."""

    def pairing(r: BenchRow, model: str | None) -> tuple[object, ...]:
        return (model, r.batch) if fastest else (model, *r.key[1:])

    index = {pairing(r, r.model): r for r in rows}
    rows = [
        dataclasses.replace(
            r,
            mac_ratio=r.macs / base.macs,
            speedup=base.stats.median_ms / r.stats.median_ms,
            baseline_file=base.file,
            baseline_sha256=base.sha256,
        )
        if r.baseline and (base := index.get(pairing(r, r.baseline))) is not None
        else r
        for r in rows
    ]
    machine = {(g.backend, g.batch): g.flags for g in groups}
    paired = {pairing(r, m) for r in rows if r.speedup is not None for m in (r.model, r.baseline)}
    out = []
    for r in rows:
        # a fastest file's figures come from its group, its pick from the finalists' group: a flag of either is its
        sources = ((FINALISTS, r.batch), (FASTEST, r.batch)) if fastest else ((r.backend, r.batch),)
        flags = list(dict.fromkeys(f for source in sources for f in machine.get(source, ())))
        flags += latency_flags(r.stats, limits, paired=pairing(r, r.model) in paired)
        if r.speedup is not None:
            base = index[pairing(r, r.baseline)]
            # the MAC ratio bounds a speedup only between files one engine runs in one precision
            alike = (base.backend, base.precision) == (r.backend, r.precision)
            ratio = r.mac_ratio if alike else None
            flags += speedup_flags(r.speedup, r.speedup_interval, ratio, limits, r.speedup_halves)
        out.append(dataclasses.replace(r, flags=tuple(flags)))
    return out
