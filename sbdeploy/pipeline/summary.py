"""What a pipeline run did: its steps, and per file its sha256, parity verdict and latency (``summary.json`` / ``.md``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sbdeploy._io import atomic_write_bytes
from sbdeploy.artifacts import ArtifactPlan
from sbdeploy.bench.render import fastest_lines
from sbdeploy.bench.report import BenchReport, BenchRow
from sbdeploy.files import DeployFile
from sbdeploy.validate.compare import ValidationReport


@dataclass(frozen=True)
class StepResult:
    """One pipeline step: what it did, how long it took, what it wrote; ``skipped`` when it had nothing to do here."""

    name: str
    ok: bool
    seconds: float
    detail: str
    files: tuple[str, ...] = ()
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "ok" if self.ok else "FAILED"


@dataclass(frozen=True)
class ArtifactSummary:
    """One file of the run: what it is, its parity verdict, its latency per backend and batch."""

    file: str
    sha256: str
    model: str
    target: str | None
    precision: str
    batch: int | None
    parity: bool | None  # None: not validated (the step failed)
    latency_ms: dict[str, dict[int, float]] = field(default_factory=dict)  # backend -> batch -> median ms
    speedup: dict[str, dict[int, float]] = field(default_factory=dict)  # backend -> batch -> vs the baseline
    speedup_interval: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)  # -> (low, high)


@dataclass
class PipelineResult:
    """All steps of one pipeline run; ``bool()`` is true when every step succeeded (or had nothing to do)."""

    source: str
    out: Path
    engine_backend: str
    steps: list[StepResult] = field(default_factory=list)
    artifacts: list[ArtifactSummary] = field(default_factory=list)
    validation: ValidationReport | None = None  # the validate step's report
    bench: BenchReport | None = None  # the bench step's report (its warnings are the CLI's to print)

    def __bool__(self) -> bool:
        return all(s.ok for s in self.steps)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "out": str(self.out),
            "engine_backend": self.engine_backend,
            "passed": bool(self),
            "steps": [{**asdict(s), "status": s.status} for s in self.steps],
            "artifacts": [asdict(a) for a in self.artifacts],
        }

    def write(self) -> None:
        """``summary.json`` and ``summary.md`` in the run folder (atomic writes)."""
        atomic_write_bytes(self.out / "summary.json", (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        atomic_write_bytes(self.out / "summary.md", summary_markdown(self).encode())


def summarize_artifacts(
    made: dict[str, DeployFile],
    plans: list[ArtifactPlan],
    validation: ValidationReport | None,
    bench: BenchReport | None,
) -> list[ArtifactSummary]:
    """Per made file: its parity verdict (from validate) and its latency per backend and batch (from bench)."""
    verdicts = validation.file_verdicts() if validation is not None else {}
    summaries = []
    for plan in plans:
        if plan.filename not in made:
            continue
        file = made[plan.filename]
        summary = ArtifactSummary(
            file.name, file.sha256, plan.model, file.target, file.precision, file.batch, verdicts.get(file.name)
        )
        for row in bench.rows if bench is not None else ():
            if row.file != file.name:
                continue
            # a run-time precision (the fp32 file run in bf16 on ov-cpu) is a latency of its own
            run = row.backend if row.precision == file.precision else f"{row.backend} {row.precision}"
            summary.latency_ms.setdefault(run, {})[row.batch] = round(row.stats.median_ms, 4)
            if row.speedup is not None:
                summary.speedup.setdefault(run, {})[row.batch] = round(row.speedup, 3)
            if row.speedup_low is not None and row.speedup_high is not None:
                interval = (round(row.speedup_low, 3), round(row.speedup_high, 3))
                summary.speedup_interval.setdefault(run, {})[row.batch] = interval
        summaries.append(summary)
    return summaries


def speedup_text(row: BenchRow) -> str:
    """``1.23x (1.20-1.26), MAC ratio 0.500`` for an SB bench row (no interval: too few turns)."""
    interval = f" ({row.speedup_low:.2f}-{row.speedup_high:.2f})" if row.speedup_low is not None else " (no interval)"
    return f"{row.speedup:.2f}x{interval}, MAC ratio {row.mac_ratio:.3f}"


def summary_markdown(result: PipelineResult) -> str:
    """One page: each step with its outcome, time and files; each artifact with its parity and latency."""
    lines = [
        f"# sbdeploy pipeline: {'PASSED' if result else 'FAILED'}",
        "",
        f"- source: `{result.source}`",
        f"- engine backend: {result.engine_backend}",
        "",
        "| step | result | seconds | detail | files |",
        "|---|---|---|---|---|",
    ]
    for s in result.steps:
        files = ", ".join(f"[{f}]({f})" for f in s.files)
        status = "**FAILED**" if s.status == "FAILED" else s.status
        seconds = "-" if s.skipped else f"{s.seconds:.1f}"
        lines.append(f"| {s.name} | {status} | {seconds} | {s.detail.replace('|', '/')} | {files} |")
    if result.artifacts:
        lines += [
            "",
            "## Artifacts",
            "",
            "Each file as validated against its PyTorch training code and as timed (median latency per batch; the "
            "speedup's 95% interval in brackets, bench.md says how sure).",
            "",
            "| file | model | target | precision | sha256 | parity | latency | speedup vs baseline |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for a in result.artifacts:
        parity = "-" if a.parity is None else "pass" if a.parity else "**FAIL**"
        latency = "; ".join(f"{b} b{n} {ms:.3f} ms" for b, per in a.latency_ms.items() for n, ms in sorted(per.items()))
        speedups = []
        for b, per in a.speedup.items():
            for n, x in sorted(per.items()):
                low_high = a.speedup_interval.get(b, {}).get(n)
                speedups.append(f"{b} b{n} {x:.2f}x" + (f" ({low_high[0]:.2f}-{low_high[1]:.2f})" if low_high else ""))
        lines.append(
            f"| [{a.file}]({a.file}) | {a.model} | {a.target or '-'} | {a.precision} | `{a.sha256[:16]}` | {parity} | "
            f"{latency or '-'} | {'; '.join(speedups) or '-'} |"
        )
    fastest = fastest_lines(result.bench) if result.bench is not None else []
    if fastest:  # every file timed was validated (the proof), so these are the fastest validated files
        lines += ["", "## Which file to ship", "", *(f"- {line}" for line in fastest)]
    return "\n".join(lines) + "\n"
