"""Tuning by measurement: the fastest exact form and ONNX Runtime session settings of one file, on this machine.

Each stage is one interleaved group of the bench's method: the target's forms, then the fastest forms with every
session setting; the fastest wins only when surely faster than the untuned default (docs/export.md, Tuning). A
target run by OpenVINO (``ov-cpu``) has its forms timed on OpenVINO's runner in the precision asked for (bf16: its
hint on the fp32 file), and no settings stage: that runner's properties are fixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sbdeploy import environment, kernels
from sbdeploy._io import atomic_write_bytes
from sbdeploy.backends.base import Runner
from sbdeploy.backends.openvino import OpenVinoRunner
from sbdeploy.backends.ort import SESSION_METADATA_KEY, OrtRunner, SessionSettings
from sbdeploy.bench.machine import MachineUsage
from sbdeploy.bench.stability import machine_flags
from sbdeploy.bench.stats import Interval, bounds, with_interval
from sbdeploy.bench.timing import (
    GroupResult,
    Pair,
    ProgressFn,
    TimingPlan,
    fair_plan,
    measure_group,
    round_progress,
    warm_up,
)
from sbdeploy.errors import ConfigError
from sbdeploy.targets import TARGETS, Target, file_precision, get_target

if TYPE_CHECKING:
    from sbdeploy.checkpoint import Checkpoint
    from sbdeploy.export.onnx_export import ExportResult

TUNING_METADATA_KEY = "tuning"  # of the tuning record (or, untuned, the rule that chose the form)
# each stage: adaptive, until every interval is within +-3% or 10 s are spent, at least 10 turns
DEFAULT_TUNE_PLAN = TimingPlan(warmup_iters=3, budget_s=10.0, min_turns=10, min_time_s=0.5)


def session_candidates(threads: int) -> list[SessionSettings]:
    """The session settings tuning tries for ``threads``: the default, without spinning (a busy machine), one intra-op
    thread (graphs of many small nodes), the parallel executor, and the optimizations without NCHWc layouts."""
    default = SessionSettings.default(threads)
    candidates = [default, dataclasses.replace(default, spinning=False)]
    if threads > 1:
        one = dataclasses.replace(default, intra_op_threads=1)
        candidates += [one, dataclasses.replace(one, inter_op_threads=threads, execution_mode="parallel")]
    return [*candidates, dataclasses.replace(default, optimization="extended")]


@dataclass(frozen=True)
class TuneOptions:
    """What tuning tries and how long it times."""

    threads: int | None = None  # the thread budget (None: the CPUs this process may use)
    plan: TimingPlan = DEFAULT_TUNE_PLAN  # of each stage
    variants: tuple[str, ...] | None = None  # the target's variants to try besides its own form (None: all)
    settings: tuple[SessionSettings, ...] | None = None  # None: session_candidates(); the default is always one
    finalists: int = 2  # how many of the fastest forms of the first stage get every session setting
    # a candidate whose fastest warm-up run is slower than this many times the default's is dropped before the turns
    # (as TensorRT drops tactics far slower than the best): reported with those runs, never chosen (inf: none dropped)
    screen: float = 2.0

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"tuning threads must be >= 1, got {self.threads}")
        if self.finalists < 1:
            raise ConfigError(f"tuning finalists must be >= 1, got {self.finalists}")
        if self.screen <= 1:
            raise ConfigError(
                f"the tuning screen must be above 1 (a multiple of the default's time), got {self.screen}"
            )

    def budget(self) -> int:
        """The thread budget: ``threads``, else the CPUs this process may use."""
        if self.threads is not None:
            return self.threads
        return environment.available_cpus()

    def session_settings(self) -> list[SessionSettings]:
        """The settings to try, the default for the budget first (added when not listed)."""
        default = SessionSettings.default(self.budget())
        given = list(self.settings) if self.settings is not None else session_candidates(self.budget())
        return [default, *(s for s in given if s != default)]


def tune_budget_options(budget_s: float, **fields: Any) -> TuneOptions:
    """:class:`TuneOptions` whose stages stop after at most ``budget_s`` seconds of turns (the CLI's ``--tune-budget``)."""
    return TuneOptions(plan=dataclasses.replace(DEFAULT_TUNE_PLAN, budget_s=budget_s), **fields)


@dataclass(frozen=True)
class Candidate:
    """One thing tuning times: a form (a target spec) run with some session settings (None: on OpenVINO)."""

    form: str
    lowering: str
    settings: SessionSettings | None

    @property
    def label(self) -> str:
        return f"{self.lowering} | {self.describe_settings()}"

    def describe_settings(self) -> str:
        return "OpenVINO" if self.settings is None else self.settings.describe()

    def to_dict(self) -> dict[str, Any]:
        settings = None if self.settings is None else self.settings.to_dict()
        return {"form": self.form, "lowering": self.lowering, "settings": settings}


@dataclass(frozen=True)
class CandidateTime:
    """A candidate as one stage (``forms`` or ``settings``) measured it."""

    stage: str
    candidate: Candidate
    median_ms: float | None  # None: not timed, its graph is an earlier form's
    low_ms: float | None = None
    high_ms: float | None = None
    cv: float | None = None
    runs: int = 0
    speedup: float | None = None  # the untuned default's median / this one's
    speedup_low: float | None = None
    speedup_high: float | None = None
    same_graph_as: str | None = None
    screened: bool = False  # dropped before the turns: median_ms is the median of its warm-up runs, no interval

    def cells(self) -> tuple[str, str, str]:
        """Report cells: median (CI), CV, speedup vs the default (CI); a form not timed says whose graph it shares."""
        if self.median_ms is None:
            return f"same graph as {self.same_graph_as}", "-", "-"
        if self.screened:
            dropped = f"{self.speedup:.3f}: dropped, far slower" if self.speedup else "dropped"
            return f"{self.median_ms:.3f} (warm-up runs)", "-", dropped
        median = with_interval(self.median_ms, ".3f", Interval.of(self.low_ms, self.high_ms))
        speedup = with_interval(self.speedup, ".3f", Interval.of(self.speedup_low, self.speedup_high))
        return median, with_interval(self.cv, ".1%"), speedup

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            **self.candidate.to_dict(),
            "label": self.candidate.label,
            "median_ms": self.median_ms,
            "median_ci95_ms": None if self.low_ms is None else [self.low_ms, self.high_ms],
            "cv": self.cv,
            "runs": self.runs,
            "speedup_vs_default": self.speedup,
            "speedup_ci95": None if self.speedup_low is None else [self.speedup_low, self.speedup_high],
            "same_graph_as": self.same_graph_as,
            "screened": self.screened,
        }


@dataclass(frozen=True)
class StageRecord:
    """How one stage was timed, and the machine around it; ``busy``: the reasons of its machine flags."""

    stage: str
    rounds: int
    seconds: float
    stop: str
    machine: MachineUsage
    busy: tuple[str, ...] = ()

    @classmethod
    def of(cls, stage: str, result: GroupResult) -> StageRecord:
        record = result.record
        busy = tuple(f.reason for f in machine_flags(record.machine))
        return cls(stage, record.rounds, round(record.seconds, 3), record.stop, record.machine, busy)

    def describe(self) -> str:
        """E.g. ``stage forms: 12 turns, 3.1 s, budget of 10 s spent...; load 1.20 -> 1.40, others' CPU 0.31 of 2``."""
        return f"stage {self.stage}: {self.rounds} turns, {self.seconds:.1f} s, {self.stop}; {self.machine.describe()}"


@dataclass(frozen=True)
class TuneResult:
    """What tuning one file measured and chose."""

    target: str
    precision: str
    batch: int
    threads: int
    default: Candidate  # the untuned default: the row's own form, default settings
    chosen: Candidate  # the candidate written
    decision: str  # why
    times: tuple[CandidateTime, ...]
    stages: tuple[StageRecord, ...]
    plan: Mapping[str, object] = field(default_factory=dict)  # the timing plan as report settings

    def busy_warning(self) -> str | None:
        """A sentence when a stage ran on a busy machine (its choice fits that load, e.g. one thread of two), else None."""
        reasons = sorted({reason for s in self.stages for reason in s.busy})
        if not reasons:
            return None
        return (
            f"tuned on a busy machine ({'; '.join(reasons)}): the choice fits that load (busy cores favour fewer "
            "threads and no spinning); tune again on a quiet machine for the figures of an idle one"
        )

    def is_chosen(self, time: CandidateTime) -> bool:
        """Whether ``time`` is the chosen candidate's figure in the stage that chose it (the last)."""
        return time.candidate == self.chosen and bool(self.times) and time.stage == self.times[-1].stage

    def to_metadata(self) -> dict[str, Any]:
        """The ``sbdeploy.tuning`` record of the written file."""
        fields = {"target": self.target, "precision": self.precision, "batch": self.batch, "threads": self.threads}
        stages = [{**dataclasses.asdict(s), "machine": s.machine.to_dict(), "busy": list(s.busy)} for s in self.stages]
        return {
            "tuned": True,
            **fields,
            "chosen": self.chosen.to_dict(),
            "default": self.default.to_dict(),
            "decision": self.decision,
            "busy_machine": self.busy_warning(),
            "candidates": [t.to_dict() for t in self.times],
            "stages": stages,
            "plan": dict(self.plan),
        }


def choose(times: Sequence[CandidateTime], default: Candidate) -> tuple[Candidate, str]:
    """The candidate to keep from the last stage's times, and why: the fastest median when its speedup over the
    untuned default is sure (its whole interval above 1), otherwise the default."""
    timed = [t for t in times if t.median_ms is not None and not t.screened]
    kept = "the untuned default is kept"
    if not timed:
        return default, f"nothing was timed: {kept}"
    best = min(timed, key=lambda t: t.median_ms or 0.0)
    label = best.candidate.label
    if best.candidate == default:
        return default, "the untuned default was the fastest"
    if best.speedup_low is None:
        return default, f"{label} was fastest but too few turns gave no interval: {kept}"
    interval = f"interval {best.speedup_low:.3f}-{best.speedup_high:.3f}"
    if best.speedup_low <= 1.0:
        return default, f"{label} was fastest ({best.speedup:.3f}x, {interval}) but not surely faster: {kept}"
    return best.candidate, f"{label}: {best.speedup:.3f}x the untuned default ({interval})"


def _describe_form(path: Path) -> tuple[str, str]:
    """An exported file's graph identity (forms that lower to the same graph are one candidate, whatever their
    metadata says) and the form its metadata names (the rule's may be fused); one read of the file."""
    from sbdeploy.export.metadata import load_onnx, read_metadata

    model = load_onnx(path)
    key = sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()
    return key, str(read_metadata(model).get("lowering", "none"))


def _runner(candidate: Candidate, path: Path, threads: int, precision: str) -> Runner:
    """The runner of one candidate: ONNX Runtime with its settings, or OpenVINO in the run ``precision``."""
    if candidate.settings is None:
        return OpenVinoRunner(path, threads=threads, precision=precision)
    return OrtRunner(path, session=candidate.settings)


def _time_stage(
    stage: str,
    files: Mapping[Candidate, Path],
    default: Candidate,
    feed: dict[str, np.ndarray],
    options: TuneOptions,
    precision: str,
    on_progress: ProgressFn | None,
) -> tuple[list[CandidateTime], StageRecord]:
    """One interleaved group of ``files`` (each run with its candidate's settings), each paired with ``default``;
    a candidate far slower in its warm-up runs is dropped first (:attr:`TuneOptions.screen`)."""
    names = {c: f"{i}: {c.label}" for i, c in enumerate(files)}
    times: dict[Candidate, CandidateTime] = {}
    with contextlib.ExitStack() as stack:
        runners = {c: stack.enter_context(_runner(c, p, options.budget(), precision)) for c, p in files.items()}
        fns = {c: runner.timed_call(feed) for c, runner in runners.items()}
        # at least 2 runs each, the first (with its one-off costs) dropped
        warm = {c: [t * 1e3 for t in times[1:]] for c, times in warm_up(fns, max(2, options.plan.warmup_iters)).items()}
        for c in files:
            if c != default and min(warm[c]) > options.screen * min(warm[default]):
                median = float(np.median(warm[c]))
                speedup = float(np.median(warm[default])) / median
                times[c] = CandidateTime(stage, c, median, runs=len(warm[c]), speedup=speedup, screened=True)
        kept = [c for c in files if c not in times]
        pairs = [Pair(sb=names[c], baseline=names[default], mac_ratio=1.0) for c in kept if c != default]
        # warmed up above: one run fits the turns; interleaved spinning sessions settle as in bench
        plan = dataclasses.replace(options.plan, warmup_iters=1, warmup_s=None)
        plan = fair_plan(plan, [runners[c].idle_spin_s for c in kept])
        progress = round_progress(f"tuning: {stage}", on_progress)
        result = measure_group({names[c]: fns[c] for c in kept}, plan, pairs=pairs, on_round=progress)
    for c in kept:
        stats, speedup = result.stats[names[c]], result.speedups.get(names[c])
        value = 1.0 if c == default else speedup.value if speedup else None
        low, high = bounds(speedup.interval if speedup else None)
        figures = (stats.median_ms, stats.median_low_ms, stats.median_high_ms, stats.cv, stats.runs)
        times[c] = CandidateTime(stage, c, *figures, value, low, high)
    return [times[c] for c in files], StageRecord.of(stage, result)


def tune_files(
    forms: Mapping[str, Path],
    *,
    target: Target,
    precision: str,
    batch: int,
    input_shape: tuple[int, int, int],
    options: TuneOptions = TuneOptions(),
    on_progress: ProgressFn | None = None,
) -> TuneResult:
    """Time exported files of one model, one per form of ``target`` (spec -> file, the row's own first), and choose;
    ``precision``: the run's (on OpenVINO, bf16 is its hint on the fp32 files)."""
    from sbdeploy.export.onnx_export import INPUT_NAME

    specs = list(forms)
    row = target.with_variant(None)
    if not specs or specs[0] != row.spec:
        raise ConfigError(f"tuning needs the row's own form {row.spec} first, got {specs}")
    settings: list[SessionSettings | None] = [None] if "ov-cpu" in target.backends else [*options.session_settings()]
    described = {spec: _describe_form(path) for spec, path in forms.items()}
    lowering = {spec: form for spec, (_, form) in described.items()}
    default = Candidate(row.spec, lowering[row.spec], settings[0])
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal((batch, *input_shape), dtype=np.float32)}
    times: list[CandidateTime] = []
    stages: list[StageRecord] = []
    distinct: dict[str, str] = {}  # graph key -> the first form with it
    timed_forms: dict[Candidate, Path] = {}
    for spec in specs:
        key = described[spec][0]
        candidate = Candidate(spec, lowering[spec], settings[0])
        if key in distinct:
            times.append(CandidateTime("forms", candidate, None, same_graph_as=distinct[key]))
        else:
            distinct[key] = spec
            timed_forms[candidate] = forms[spec]
    finalists = [row.spec]
    chosen, decision = default, "a single candidate: nothing to choose"
    if len(timed_forms) > 1:
        form_times, record = _time_stage("forms", timed_forms, default, feed, options, precision, on_progress)
        times += form_times
        stages.append(record)
        ranked = sorted((t for t in form_times if not t.screened), key=lambda t: t.median_ms or float("inf"))
        finalists = [t.candidate.form for t in ranked[: options.finalists]]
        if len(settings) == 1:  # no settings to try: the forms stage chooses
            finalists = []
            chosen, decision = choose(form_times, default)
    final: dict[Candidate, Path] = {default: forms[row.spec]}
    for spec in finalists:
        for s in settings:
            final.setdefault(Candidate(spec, lowering[spec], s), forms[spec])
    if len(final) > 1:
        final_times, record = _time_stage("settings", final, default, feed, options, precision, on_progress)
        times += final_times
        stages.append(record)
        chosen, decision = choose(final_times, default)
    plan = options.plan.settings()
    return TuneResult(
        target.name, precision, batch, options.budget(), default, chosen, decision, tuple(times), tuple(stages), plan
    )


def tune_export(
    src: Checkpoint,
    outputs: Mapping[str, str | Path],
    *,
    target: str,
    batch: int,
    input_size: tuple[int, int] | None = None,
    opset: int = 17,
    passes: Sequence[str] | None = None,
    options: TuneOptions = TuneOptions(),
    on_progress: ProgressFn | None = None,
) -> dict[str, tuple[ExportResult, TuneResult]]:
    """Export ``src`` in every candidate form of ``target`` (once, every precision), tune each precision of
    ``outputs`` (:func:`tune_files`) and write the winners, with ``sbdeploy.ort_session`` and ``sbdeploy.tuning``; a
    run-time precision (ov-cpu's bf16) writes the fp32 file, its form chosen by bf16 runs."""
    from sbdeploy.export.metadata import load_onnx, read_metadata, write_metadata
    from sbdeploy.export.onnx_export import export_source

    deploy = get_target(target)
    if not deploy.tunable:
        tunable = ", ".join(t.name for t in TARGETS.values() if t.tunable)
        raise ConfigError(
            f"--tune applies to the targets whose form is chosen on this machine ({tunable}), not {deploy.name}"
        )
    if deploy.variant is not None:
        raise ConfigError(
            f"--tune chooses among the forms of {deploy.name} itself: give --target {deploy.name}, not {deploy.spec}"
        )
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError(f"--tune times the file at a fixed batch: give --batch N (got {batch!r})")
    for precision in outputs:
        deploy.check_precision(precision)
    unknown = sorted(set(options.variants or ()) - set(deploy.variants))
    if unknown:
        raise ConfigError(f"target {deploy.name} has no forms {unknown}; its variants: {', '.join(deploy.variants)}")
    wanted = options.variants
    forms = deploy.candidates(kernels_built=kernels.is_built())
    candidates = [c for c in forms if c.variant is None or wanted is None or c.variant in wanted]
    results: dict[str, tuple[ExportResult, TuneResult]] = {}
    stored = {p: file_precision(deploy.backends[0], p) for p in outputs}  # the precision of each file's bytes
    with tempfile.TemporaryDirectory(prefix="sbdeploy-tune-") as tmp:
        exported: dict[str, dict[str, ExportResult]] = {}
        for number, form in enumerate(candidates):
            if on_progress:
                on_progress(f"tuning: exporting {form.form}", number, len(candidates))
            paths = {p: Path(tmp) / f"{number}.{p}.onnx" for p in set(stored.values())}
            exported[form.spec] = export_source(
                src,
                paths,
                opset=opset,
                batch=batch,
                input_size=input_size,
                target=form.spec,
                passes=passes,
                rule=form.variant is None,  # the untuned default: the rule's form (fused where the library is built)
            )
        for precision, out_path in outputs.items():
            files = {spec: by_precision[stored[precision]].path for spec, by_precision in exported.items()}
            shape = tuple(exported[deploy.spec][stored[precision]].metadata["input_shape"][1:4])
            tuning = tune_files(
                files,
                target=deploy,
                precision=precision,
                batch=batch,
                input_shape=shape,
                options=options,
                on_progress=on_progress,
            )
            chosen = exported[tuning.chosen.form][stored[precision]]
            proto = load_onnx(chosen.path)
            tuned: dict[str, Any] = {TUNING_METADATA_KEY: tuning.to_metadata()}
            if tuning.chosen.settings is not None:
                tuned[SESSION_METADATA_KEY] = tuning.chosen.settings.to_dict()
            metadata = {**read_metadata(proto), **tuned}
            write_metadata(proto, metadata)
            data = proto.SerializeToString(deterministic=True)
            atomic_write_bytes(Path(out_path), data)
            # only metadata_props changed: the graph, so its op census and TensorRT check, are the chosen export's
            result = dataclasses.replace(
                chosen, path=Path(out_path), metadata=metadata, sha256=sha256(data).hexdigest()
            )
            results[precision] = (result, tuning)
    return results


def tuning_markdown(results: Sequence[tuple[str, TuneResult]]) -> str:
    """A report of tuned files (file name, result): per file its candidates' times, intervals, the load, the choice."""
    lines = [
        "# sbdeploy tuning",
        "",
        "Each file's candidate forms and ONNX Runtime session settings, timed on this machine by the bench's "
        "interleaved method (median with its 95% interval; speedup over the untuned default with its interval "
        "over paired turns). The fastest is kept only when it is surely faster than the untuned default.",
        "",
    ]
    for file, result in results:
        lines += [
            f"## {file}",
            "",
            f"- target {result.target}, {result.precision}, batch {result.batch}, {result.threads} threads",
            f"- chosen: **{result.chosen.label}** ({result.decision})",
        ]
        lines += [f"- {s.describe()}" for s in result.stages]
        if result.busy_warning():
            lines.append(f"- **warning**: {result.busy_warning()}")
        lines += [
            "",
            "| stage | form | session settings | median ms (95% CI) | CV | speedup vs default (95% CI) |",
            "|---|---|---|---|---|---|",
        ]
        for t in result.times:
            mark = " **(chosen)**" if result.is_chosen(t) else ""
            lines.append(
                f"| {t.stage} | {t.candidate.lowering}{mark} | {t.candidate.describe_settings()} | {' | '.join(t.cells())} |"
            )
        lines.append("")
    return "\n".join(lines)
