"""``sbdeploy sweep`` as a library call: a trained baseline -> measured SB candidates -> the accuracy / latency front.

For each candidate (the baseline; each sampling set in every stage; each set without the stages where its SB
blocks pay least here) it sbifies and recalibrates BN (optionally fine-tunes), measures top-1 on the test split,
makes and validates the deploy file of the target (tuned where asked) and times every candidate in one
interleaved group per batch size. Which stages to drop is decided by timing, in one group, networks whose SB
blocks sit in one stage only against the baseline (``stage_timing``). Every finished step is kept in the output
folder, so a run interrupted goes on where it stopped (docs/sweep.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbdeploy._io import atomic_write_bytes
from sbdeploy.bench.defaults import DEFAULT_BUDGET_S
from sbdeploy.bench.report import BenchReport
from sbdeploy.bench.timing import TimingPlan
from sbdeploy.checkpoint import CONFIG_FILE, read_config
from sbdeploy.convert import sbify_checkpoint
from sbdeploy.convert.mapping import sb_counterpart
from sbdeploy.convert.run import FINE_TUNE
from sbdeploy.errors import ConfigError
from sbdeploy.flow import Flow, against
from sbdeploy.models import model_info
from sbdeploy.sources import resolve_models
from sbdeploy.sweep.front import Point, binomial_interval, fastest_within, pareto_front
from sbdeploy.targets import TARGETS, get_target, target_for
from sbdeploy.train.evaluate import open_fitting_source
from sbdeploy.train.trainer import STATE_FILE
from sbdeploy.tune import tune_budget_options

Progress = Callable[[str, int, int], None]

BACKEND = "ort-cpu"
"""The backend a sweep times on (the CPU, where the question is asked; docs/sweep.md)."""
SAMPLING_SETS = ("single", "chessboard", "three")
"""The paper's sparse sampling sets, sparsest first."""
STATE = "sweep_state.json"
"""What the output folder keeps of finished steps, for a run that goes on after an interruption."""


@dataclass(frozen=True)
class SweepOptions:
    """Knobs of a sweep; combinations it cannot honour are refused when they are made."""

    batches: tuple[int, ...] = (1, 8)
    max_drop: float | None = None  # points of top-1 (1.0: one point) the pick may lose against the baseline
    epochs: int = 0  # fine-tune epochs after the recalibration
    distill: bool = False  # fine-tune on the baseline's logits too
    tune: bool = False  # tune each candidate's ort-cpu file (tuning.md), spending tune_budget_s per file
    tune_budget_s: float = 10.0
    target: str | None = None  # the deploy target (default: ort-cpu's)
    samplings: tuple[str, ...] = SAMPLING_SETS
    calibration_images: int = 2048
    budget_s: float = DEFAULT_BUDGET_S  # seconds of timed turns per batch size, at most
    threads: int | None = None  # intra-op threads of ONNX Runtime CPU while timing (None: its default)
    validate_limit: int = 256  # real test images each deploy file is validated on
    max_steps: int | None = None  # cut each fine-tune epoch to this many steps (smoke tests)

    def __post_init__(self) -> None:
        if not self.batches or min(self.batches) < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {list(self.batches)}")
        if self.max_drop is not None and self.max_drop < 0:
            raise ConfigError(f"--max-drop takes points of top-1 >= 0, got {self.max_drop}")
        if self.epochs < 0:
            raise ConfigError(f"--epochs must be >= 0, got {self.epochs}")
        if self.distill and not self.epochs:
            raise ConfigError("--distill applies to the fine-tune: give a number of --epochs")
        target = target_for(BACKEND) if self.target is None else get_target(self.target)
        if BACKEND not in target.backends:
            runs = ", ".join(t.name for t in TARGETS.values() if BACKEND in t.backends)
            raise ConfigError(f"a sweep times on {BACKEND}, which does not run --target {target.name}; choose {runs}")
        if self.tune and not target.tunable:
            raise ConfigError(f"--tune times the forms of a tunable target (ort-cpu); {target.name} has one form")
        if not self.samplings or set(self.samplings) - set(SAMPLING_SETS):
            raise ConfigError(f"a sweep tries the sampling sets {', '.join(SAMPLING_SETS)}, got {list(self.samplings)}")

    def settings(self) -> dict[str, Any]:
        """What a resumed run must share with the interrupted one (the pick and output are free to change)."""
        fields = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if k != "max_drop"}


@dataclass(frozen=True)
class Candidate:
    """One network of the sweep: the baseline (``sampling`` None) or an SB network with SB blocks in ``stages``."""

    name: str
    sampling: str | None
    stages: tuple[int, ...]  # the stages holding SB blocks (the baseline: none)

    @classmethod
    def sb(cls, sampling: str, stages: Sequence[int], count: int) -> Candidate:
        stages = tuple(sorted(stages))
        suffix = "" if len(stages) == count else "-stages" + "-".join(map(str, stages))
        return cls(f"{sampling}{suffix}", sampling, stages)


@dataclass(frozen=True)
class StageTiming:
    """A network with SB blocks in one stage only, timed against the baseline in the same group."""

    sampling: str
    stage: int
    batch: int
    median_ms: float
    baseline_ms: float
    speedup: float
    speedup_low: float | None
    speedup_high: float | None

    @property
    def pays(self) -> bool:
        """Whether the stage's SB blocks are surely faster than its dense ones here (the interval above 1)."""
        return self.speedup_low is not None and self.speedup_low > 1


@dataclass(frozen=True)
class SweepRow:
    """One candidate at one batch size: its accuracy and latency, with 95% intervals (``sweep.json`` ``rows``)."""

    name: str
    sampling: str | None
    stages: list[int]
    batch: int
    macs: int
    top1: float  # a fraction of the test split
    top1_low: float
    top1_high: float
    median_ms: float
    median_low_ms: float | None
    median_high_ms: float | None
    speedup: float  # baseline median / this median, timed in the same group
    speedup_low: float | None
    speedup_high: float | None
    checkpoint: str  # the candidate's checkpoint folder: it goes straight into `sbdeploy pipeline`
    file: str  # the deploy file timed
    valid: bool  # whether that file passed validation against its checkpoint
    front: bool = False  # on the accuracy / latency Pareto front of its batch size

    @property
    def point(self) -> Point:
        return Point(self.name, self.top1, self.median_ms)


@dataclass(frozen=True)
class Pick:
    """The fastest candidate at one batch size within ``max_drop`` points of the baseline's top-1."""

    batch: int
    name: str
    checkpoint: str
    drop: float  # points of top-1 lost against the baseline (negative: gained)
    speedup: float
    within_noise: bool  # its top-1 lies inside the baseline's 95% interval: the drop may be noise
    message: str


@dataclass
class SweepResult:
    """What :func:`run_sweep` measured and wrote."""

    out: Path
    baseline: str
    data: str
    test_images: int
    rows: list[SweepRow]
    stage_timing: list[StageTiming]
    picks: list[Pick]
    max_drop: float | None
    settings: dict[str, Any]
    load: dict[str, list[float]]  # the 1-minute load average at the start and end of each timing group
    bench: BenchReport | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "data": self.data,
            "test_images": self.test_images,
            "backend": BACKEND,
            "settings": self.settings,
            "max_drop": self.max_drop,
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "front": {str(b): [r.name for r in self.rows if r.batch == b and r.front] for b in self.batches},
            "picks": [dataclasses.asdict(p) for p in self.picks],
            "stage_timing": [{**dataclasses.asdict(s), "pays": s.pays} for s in self.stage_timing],
            "load": self.load,
            "notes": self.notes,
        }

    @property
    def batches(self) -> list[int]:
        return sorted({r.batch for r in self.rows})


class _State:
    """The output folder's record of finished steps (``sweep_state.json``), written after each one."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.path = out / STATE
        self.data: dict[str, Any] = {"settings": settings, "stage_timing": None, "accuracy": {}}
        if self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ConfigError(f"{self.path} is not valid JSON; delete it to start the sweep over") from None
            differences = _differences(saved.get("settings", {}), settings)
            if differences:
                raise ConfigError(
                    f"{out} holds a sweep with other settings ({differences}); "
                    "give another --out, or the same options to go on with it"
                )
            saved["settings"] = settings
            self.data = saved

    def save(self) -> None:
        atomic_write_bytes(self.path, (json.dumps(self.data, indent=2) + "\n").encode())


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The settings that differ, named (one absent from a folder of an older sbdeploy: its default, None)."""
    keys = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys)


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _time(
    folders: Sequence[Path],
    baseline: Path,
    files: Path,
    options: SweepOptions,
    *,
    tune: bool,
    on_progress: Progress | None,
    validate_data: str | None = None,
) -> tuple[BenchReport, dict[str, bool], list[float]]:
    """Make the target's files of ``baseline`` and ``folders``, validate them (with ``validate_data``) and time them
    all in one interleaved group per batch size against the baseline; also each file's verdict and the load."""
    models = resolve_models([baseline, *folders], add_baselines=False)
    models, _ = against(models[0].label, models, [])
    flow = Flow.plan(models, backends=(BACKEND,), batches=options.batches, target=options.target)
    tuning = tune_budget_options(options.tune_budget_s, threads=options.threads) if tune else None
    flow.make(files, tune=tuning, on_progress=on_progress)
    verdicts: dict[str, bool] = {}
    if validate_data is not None:
        report = flow.validate(data=validate_data, limit=options.validate_limit, on_progress=on_progress)
        verdicts = report.file_verdicts()
    load = [_load()]
    plan = TimingPlan(budget_s=options.budget_s)
    bench = flow.bench(plan, threads=options.threads, baseline=models[0].label, on_progress=on_progress)
    return bench, verdicts, [*load, _load()]


def _stage_timing(report: BenchReport, probes: dict[str, tuple[str, int]]) -> list[StageTiming]:
    base = {r.batch: r.stats.median_ms for r in report.rows if r.model not in probes}
    timings = []
    for r in report.rows:
        if r.model in probes and r.speedup is not None:
            sampling, stage = probes[r.model]
            timing = StageTiming(
                sampling, stage, r.batch, r.stats.median_ms, base[r.batch], r.speedup, r.speedup_low, r.speedup_high
            )
            timings.append(timing)
    return sorted(timings, key=lambda t: (t.sampling, t.batch, t.stage))


def placements(timings: Sequence[StageTiming], sampling: str, count: int) -> list[tuple[int, ...]]:
    """The stage placements worth trying for ``sampling``: every stage; and per batch size the stages where SB is
    surely faster (its one-stage network's speedup interval above 1), and every stage but the one that pays least."""
    every = tuple(range(1, count + 1))
    chosen = [every]
    for batch in sorted({t.batch for t in timings if t.sampling == sampling}):
        mine = [t for t in timings if t.sampling == sampling and t.batch == batch]
        least = min(mine, key=lambda t: t.speedup).stage
        for kept in (tuple(t.stage for t in mine if t.pays), tuple(s for s in every if s != least)):
            if kept and kept not in chosen:
                chosen.append(kept)
    return chosen


def _sbify(
    baseline: Path, folder: Path, candidate: Candidate, data: Any, options: SweepOptions, count: int
) -> tuple[float, float]:
    """sbify ``candidate`` into ``folder`` (going on with an interrupted fine-tune); its top-1 and the baseline's."""
    assert candidate.sampling is not None  # the baseline is not sbified
    fine_tune = None
    if options.epochs:
        fine_tune = dataclasses.replace(FINE_TUNE, epochs=options.epochs, max_steps_per_epoch=options.max_steps)
    resume = fine_tune is not None and (folder / STATE_FILE).is_file() and (folder / CONFIG_FILE).is_file()
    result = sbify_checkpoint(
        baseline,
        folder,
        data=data,
        sampling=candidate.sampling,
        sb_stages=None if len(candidate.stages) == count else candidate.stages,
        calibration_count=options.calibration_images,
        fine_tune=fine_tune,
        distill=(0.5, 4.0) if options.distill else None,
        resume=resume,
        overwrite=not resume,
        device="auto",
    )
    first, last = result.stages[0].test_accuracy, result.stages[-1].test_accuracy
    assert first is not None and last is not None  # measured: data was given
    return last, first


def run_sweep(
    baseline: str | Path,
    data: str,
    out: str | Path,
    options: SweepOptions = SweepOptions(),
    *,
    on_progress: Progress | None = None,
) -> SweepResult:
    """Sweep the SB candidates of the baseline checkpoint folder ``baseline`` on the data SOURCE ``data`` into ``out``
    (``sweep.json``, ``sweep.md``, ``sweep.png``; the candidates' checkpoints under ``candidates/``)."""
    baseline, out = Path(baseline), Path(out)
    config = read_config(baseline)
    sb_counterpart(config.arch)  # refuses an SB network, or a baseline without a registered twin
    count = model_info(config.arch).stages
    dataset = open_fitting_source(data, config)
    if out.is_file():
        raise ConfigError(f"--out {out} is a file; give a folder")
    state = _State(out, {"baseline": str(baseline.resolve()), "data": data, **options.settings()})

    def progress(stage: str, done: int = 0, total: int = 0) -> None:
        if on_progress is not None:
            on_progress(stage, done, total)

    # networks with one stage's SB blocks among dense ones: what each stage pays here, timed
    probes = {f"probe-{s}-stage{k}": (s, k) for s in options.samplings for k in range(1, count + 1)}
    load: dict[str, list[float]] = {}
    if state.data["stage_timing"] is None:
        for number, (name, (sampling, stage)) in enumerate(probes.items()):
            progress(f"mapping {name}", number, len(probes))
            folder = out / "probes" / name
            sbify_checkpoint(
                baseline, folder, data=None, sampling=sampling, sb_stages=(stage,), recalibrate=False, overwrite=True
            )
        folders = [out / "probes" / n for n in probes]
        report, _, load["stage_timing"] = _time(
            folders, baseline, out / "files" / "probes", options, tune=False, on_progress=on_progress
        )
        state.data["stage_timing"] = [dataclasses.asdict(t) for t in _stage_timing(report, probes)]
        state.data["load_stage_timing"] = load["stage_timing"]
        state.save()
    timings = [StageTiming(**t) for t in state.data["stage_timing"]]
    load["stage_timing"] = state.data.get("load_stage_timing", [])

    candidates = [Candidate("baseline", None, ())]
    for sampling in options.samplings:
        candidates += [Candidate.sb(sampling, p, count) for p in placements(timings, sampling, count)]
    accuracy: dict[str, float] = state.data["accuracy"]
    for number, candidate in enumerate(candidates[1:]):
        if candidate.name not in accuracy:
            progress(f"sbify {candidate.name}", number, len(candidates) - 1)
            top1, base_top1 = _sbify(baseline, out / "candidates" / candidate.name, candidate, dataset, options, count)
            accuracy[candidate.name], accuracy["baseline"] = top1, base_top1
            state.save()

    folders = [out / "candidates" / c.name for c in candidates[1:]]
    report, verdicts, load["candidates"] = _time(
        folders, baseline, out / "files", options, tune=options.tune, on_progress=on_progress, validate_data=data
    )
    labels = {baseline.name: candidates[0], **{f.name: c for f, c in zip(folders, candidates[1:])}}
    folder_of = {baseline.name: baseline, **{f.name: f for f in folders}}
    n = len(dataset.test_labels)
    rows = []
    for r in report.rows:
        candidate = labels[r.model]
        top1 = accuracy[candidate.name]
        low, high = binomial_interval(round(top1 * n), n)
        is_base = candidate.sampling is None
        rows.append(
            SweepRow(
                name=candidate.name,
                sampling=candidate.sampling,
                stages=list(candidate.stages),
                batch=r.batch,
                macs=r.macs,
                top1=top1,
                top1_low=low,
                top1_high=high,
                median_ms=r.stats.median_ms,
                median_low_ms=r.stats.median_low_ms,
                median_high_ms=r.stats.median_high_ms,
                speedup=1.0 if is_base else float(r.speedup or 0.0),
                speedup_low=1.0 if is_base else r.speedup_low,
                speedup_high=1.0 if is_base else r.speedup_high,
                checkpoint=str(folder_of[r.model]),
                file=str(r.file),
                valid=verdicts.get(str(r.file), False),
            )
        )
    rows = mark_front(rows)
    picks = [] if options.max_drop is None else pick(rows, options.max_drop)
    notes = [f"{r.name} at batch {r.batch}: its deploy file failed validation" for r in rows if not r.valid]
    result = SweepResult(
        out, str(baseline), data, n, rows, timings, picks, options.max_drop, state.data["settings"], load, report, notes
    )
    from sbdeploy.sweep.report import write_sweep  # matplotlib: only once there is something to draw

    write_sweep(result)
    return result


def mark_front(rows: Sequence[SweepRow]) -> list[SweepRow]:
    """``rows`` with ``front`` set on the non-dominated ones of each batch size (accuracy up, latency down)."""
    front = set()
    for batch in {r.batch for r in rows}:
        mine = [r for r in rows if r.batch == batch]
        front |= {(batch, name) for name in pareto_front([r.point for r in mine])}
    return [dataclasses.replace(r, front=(r.batch, r.name) in front) for r in rows]


def pick(rows: Sequence[SweepRow], max_drop: float) -> list[Pick]:
    """Per batch size, the fastest row within ``max_drop`` points of the baseline's top-1, and what to make of it."""
    picks = []
    for batch in sorted({r.batch for r in rows}):
        mine = [r for r in rows if r.batch == batch and r.valid]
        base = next(r for r in rows if r.batch == batch and r.sampling is None)
        chosen = fastest_within([r.point for r in mine], base.point, max_drop / 100)
        row = next(r for r in rows if r.batch == batch and r.name == chosen.name)
        drop = (base.top1 - row.top1) * 100
        noise = base.top1_low <= row.top1 <= base.top1_high
        if row is base or row.sampling is None:
            message = f"batch {batch}: no SB candidate within {max_drop:g} points is faster than the baseline: ship it"
        else:
            change = (
                "the same top-1"
                if abs(drop) < 1e-9
                else f"{abs(drop):.2f} points of top-1 {'lost' if drop > 0 else 'gained'}"
            )
            if noise and abs(drop) >= 1e-9:
                change += " (inside the baseline's 95% interval: may be noise)"
            message = (
                f"batch {batch}: {row.name}, {row.speedup:.2f}x the baseline's speed, {change}: "
                f"sbdeploy pipeline {row.checkpoint}"
            )
        picks.append(Pick(batch, row.name, row.checkpoint, round(drop, 4), row.speedup, noise, message))
    return picks
