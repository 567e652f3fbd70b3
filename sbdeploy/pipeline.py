"""``sbdeploy pipeline``: export -> passes -> engine -> validate -> bench, into one folder, each artifact made once.

The run folder holds every artifact the run validates and times, made once by the
artifact code path (:mod:`sbdeploy.artifacts`) and kept: the canonical ``model.onnx``,
and for the SB model (stem ``model``) and its baseline (stem ``baseline``) the deploy
artifact of every backend and precision the run times (``model.ort-cpu.b1.fp32.onnx``,
``baseline.ort-cpu.b8.fp16.onnx``, ``model.trt.fp32.engine`` + sidecar, ...). Validate
judges every one of them against its own PyTorch training code (baseline files against
the baseline), bench times exactly those files, and ``summary.md`` lists per file its
sha256, parity verdict and latency. The engine is TensorRT where TensorRT and a GPU are
present; elsewhere the engine step builds nothing and says so, and ONNX Runtime on the
CPU (the embedded default) runs the model.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sbdeploy._io import atomic_write_bytes
from sbdeploy.bench.defaults import DEFAULT_BUDGET_S
from sbdeploy.errors import ConfigError

if TYPE_CHECKING:
    from sbdeploy.artifacts import ArtifactPlan
    from sbdeploy.bench.report import BenchReport, BenchRow
    from sbdeploy.export import ModelSource
    from sbdeploy.files import DeployFile
    from sbdeploy.tune import TuneOptions, TuneResult
    from sbdeploy.validate.run import ValidationReport

STEPS: tuple[str, ...] = ("export + passes", "engine", "validate", "bench")
"""The pipeline's steps, in order."""

SB_STEM, BASELINE_STEM = "model", "baseline"
"""File-name stems of the SB model's and the baseline's artifacts in a run folder."""

Outcome = tuple[bool, str, tuple[str, ...], bool]
"""What a step reports: ok, detail, files written, skipped (nothing to do on this machine)."""


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
class PipelineOptions:
    """Knobs of the pipeline run.

    Attributes:
        fp16: also make, validate and bench fp16 artifacts.
        int8: also make, validate and bench int8 artifacts (each target's recipe).
        calibration: int8 calibration SOURCE (a data source or a .npy); default: the checkpoint's dataset.
        batches: bench batch sizes (the ort-cpu form is made once per batch).
        iters: bench timed runs per model (None: the adaptive length, see ``budget_s``).
        budget_s: bench seconds of timed turns per backend and batch, at most, for the adaptive length.
        warmup_iters: bench warm-up runs per model.
        threads: intra-op threads for torch and ONNX Runtime CPU.
        limit: use at most this many real images in validation.
        baseline: the baseline to bench against (checkpoint folder or zoo name); default:
            the registry's baseline of the source's architecture, random weights.
        target: one deploy target for every backend (default: each backend's own,
            :data:`sbdeploy.targets.BACKEND_TARGETS`).
        tune: time the candidate forms and session settings of every ort-cpu file on this
            machine and keep the fastest (:mod:`sbdeploy.tune`; ``tuning.md`` reports them);
            None: each target's rule chooses the form. Its ``threads`` default to the run's.
    """

    fp16: bool = False
    int8: bool = False
    calibration: str | None = None
    batches: tuple[int, ...] = (1, 8)
    iters: int | None = None
    budget_s: float = DEFAULT_BUDGET_S
    warmup_iters: int = 5
    threads: int | None = None
    limit: int | None = None
    baseline: str | None = None
    target: str | None = None
    tune: TuneOptions | None = None


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
    speedup_interval: dict[str, dict[int, tuple[float, float]]] = field(
        default_factory=dict
    )  # backend -> batch -> (low, high)


@dataclass
class PipelineResult:
    """All steps of one pipeline run; ``bool()`` is true when every step succeeded (or had nothing to do)."""

    source: str
    out: Path
    engine_backend: str
    steps: list[StepResult] = field(default_factory=list)
    artifacts: list[ArtifactSummary] = field(default_factory=list)
    bench: BenchReport | None = None  # the bench step's report (its warnings are the CLI's to print)

    def __bool__(self) -> bool:
        return all(s.ok for s in self.steps)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source, "out": str(self.out), "engine_backend": self.engine_backend, "passed": bool(self),
            "steps": [{**asdict(s), "status": s.status} for s in self.steps], "artifacts": [asdict(a) for a in self.artifacts],
        }  # fmt: skip


def tune_options(options: PipelineOptions) -> TuneOptions | None:
    """The tuning options of a run (None without ``tune``), their thread budget the run's unless they name one."""
    if options.tune is None or options.tune.threads is not None:
        return options.tune
    return dataclasses.replace(options.tune, threads=options.threads)


def engine_backend() -> tuple[str, str]:
    """``("trt", why)`` when TensorRT, pycuda and an NVIDIA GPU are here (:func:`sbdeploy.environment.gpu_stack`), else ``("ort-cpu", why)``."""
    from sbdeploy import environment

    stack = environment.gpu_stack()
    if stack.trt_ready:
        return "trt", f"TensorRT {stack.tensorrt} and {stack.gpu_name} are present"
    return "ort-cpu", f"{stack.why_not_trt()} here: ONNX Runtime CPU (the embedded default) runs the model"


def _baseline_source(source: ModelSource, baseline: str | None) -> tuple[str, ModelSource] | None:
    """(label, ModelSource) of the baseline: the given one, else the registry's baseline with random weights."""
    from sbdeploy.export import resolve_source
    from sbdeploy.models import model_info

    if baseline is not None:
        return Path(baseline).name if Path(baseline).is_dir() else baseline, resolve_source(baseline)
    name = model_info(source.config.arch).baseline
    if name is None:
        return None
    options = {k: v for k, v in source.config.options.items() if k != "sampling"}
    return name, resolve_source(name, options=options)


def run_pipeline(
    source: str | Path,
    out: str | Path,
    options: PipelineOptions = PipelineOptions(),
    *,
    on_step: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_step_done: Callable[[StepResult], None] | None = None,
) -> PipelineResult:
    """Run the whole chain on a checkpoint folder (or zoo name); write every artifact and report to ``out``.

    The models are read before anything is written: a bad source or baseline raises
    (CheckpointError, ConfigError) and leaves no run folder behind.

    Args:
        source: checkpoint folder or zoo name.
        out: the run folder.
        options: what to make, validate and bench.
        on_step: called with each step's name (one of :data:`STEPS`) as it starts.
        on_progress: the running step's ``(stage, done, total)`` progress (exports made, checks run,
            the bench's timed rounds as ``sbdeploy bench`` reports them).
        on_step_done: called with each step's result as it ends.
    """
    from sbdeploy.artifacts import build_planned_engine, canonical_plan, make_artifacts, plan_artifacts
    from sbdeploy.bench.report import BenchReport, write_report
    from sbdeploy.bench.run import BenchModel, bench_settings, subjects_from_made, time_subjects
    from sbdeploy.bench.timing import TimingPlan
    from sbdeploy.calibration import calibration_for
    from sbdeploy.environment import collect_environment
    from sbdeploy.export import resolve_source
    from sbdeploy.flops import count_macs
    from sbdeploy.targets import get_target, requested_precisions

    out = Path(out)
    src = resolve_source(source)
    label = Path(source).name if Path(source).is_dir() else str(source)
    base = _baseline_source(src, options.baseline)
    backend, why = engine_backend()
    result = PipelineResult(source=str(source), out=out, engine_backend=backend)
    say = on_step or (lambda _: None)

    def step(name: str, fn: Callable[[], Outcome]) -> bool:
        say(name)
        start = time.perf_counter()
        try:
            ok, detail, files, skipped = fn()
        except Exception as error:  # reported in the summary; the steps that need this one are skipped
            ok, detail, files, skipped = False, f"{type(error).__name__}: {error}", (), False
        result.steps.append(StepResult(name, ok, round(time.perf_counter() - start, 2), detail, files, skipped))
        if on_step_done is not None:
            on_step_done(result.steps[-1])
        return ok

    size = src.config.input_size
    models = [BenchModel(label, src.config.arch, src.model, src.config.in_chans, size, count_macs(src.model, size, src.config.in_chans),
                         base[0] if base else None)]  # fmt: skip
    sources = {label: src}
    stems = {label: SB_STEM}
    if base is not None:
        base_label, base_src = base
        models.append(BenchModel(base_label, base_src.config.arch, base_src.model, base_src.config.in_chans, size,
                                 count_macs(base_src.model, size, base_src.config.in_chans), None))  # fmt: skip
        sources[base_label], stems[base_label] = base_src, BASELINE_STEM
    backends = ["torch", "ort-cpu"] + (["trt"] if backend == "trt" else [])
    precisions = requested_precisions(options.fp16, options.int8)
    # resolved before any step: a bad --calibration is the user's error, said at once
    calibrations = (
        calibration_for({k: v.config for k, v in sources.items()}, options.calibration) if options.int8 else None
    )
    if options.int8 and not any(s.config.dataset for s in sources.values()):
        raise ConfigError(
            "int8 files are judged on real images (their scales are calibrated on them), and no checkpoint of this "
            "run names a dataset: run `sbdeploy validate CHECKPOINT --int8 --data SOURCE` instead, or give the "
            "pipeline a checkpoint trained by `sbdeploy train` (its config.json names the dataset)"
        )
    plans, uses = plan_artifacts([(m.label, stems[m.label]) for m in models], backends, options.batches, precisions=precisions,
                                 target=options.target)  # fmt: skip
    canonical = canonical_plan(label, SB_STEM)
    if canonical.filename not in {p.filename for p in plans}:  # (with --target grouped it is already a timed file)
        plans = [canonical, *plans]
    made: dict[str, DeployFile] = {}
    out.mkdir(parents=True, exist_ok=True)  # every model read and every file planned: the run can start

    validation: ValidationReport | None = None
    bench: BenchReport | None = None

    def do_export() -> Outcome:
        onnx_plans = [p for p in plans if p.kind == "onnx"]
        tuned: dict[str, TuneResult] = {}
        made.update(make_artifacts(onnx_plans, sources, out, input_sizes={m.label: size for m in models}, calibration=calibrations,
                                   tune=tune_options(options), tuned=tuned, on_progress=on_progress))  # fmt: skip
        forms = sorted({f"{p.target} ({p.precision})" for p in onnx_plans})
        files = tuple(p.filename for p in onnx_plans)
        if tuned:
            from sbdeploy.tune import tuning_markdown

            report = {"files": {name: result.to_metadata() for name, result in tuned.items()}}
            atomic_write_bytes(out / "tuning.json", (json.dumps(report, indent=2) + "\n").encode())
            atomic_write_bytes(out / "tuning.md", tuning_markdown(list(tuned.items())).encode())
            chosen = "; ".join(f"{name}: {r.chosen.label}" for name, r in tuned.items())
            return (
                True,
                f"{len(onnx_plans)} ONNX files: {', '.join(forms)}; tuned {chosen}",
                (*files, "tuning.json", "tuning.md"),
                False,
            )
        untuned = " (ort-cpu forms chosen by the target's rule, not tuned: --tune times them)" if any(
            get_target(p.target).tunable for p in onnx_plans) else ""  # fmt: skip
        return True, f"{len(onnx_plans)} ONNX files: {', '.join(forms)}{untuned}", files, False

    if not step("export + passes", do_export):
        return _finish(result)

    def do_engine() -> Outcome:
        engine_plans = [p for p in plans if p.kind == "engine"]
        if not engine_plans:
            return True, f"skipped: no TensorRT here ({why})", (), True
        built = []
        for plan in engine_plans:
            made[plan.filename] = build_planned_engine(plan, out, on_progress)
            built += [plan.filename, f"{plan.filename}.json"]
        return True, f"{len(engine_plans)} TensorRT engines built ({why})", tuple(built), False

    step("engine", do_engine)

    def do_validate() -> Outcome:
        nonlocal validation
        from sbdeploy.validate.run import to_markdown

        validation = report = validate_files(made, plans, sources, limit=options.limit, on_progress=on_progress)
        atomic_write_bytes(out / "validate.json", (json.dumps(report.to_dict(), indent=2) + "\n").encode())
        atomic_write_bytes(out / "validate.md", to_markdown(report).encode())
        verdicts = report.file_verdicts()
        accuracy = "; ".join(f"{a.file or 'torch'} top-1 {a.top1:.2%}" for a in report.accuracy if a.reference == label)
        verdict = "all checks passed" if report else f"{len(report.failures)} of {len(report.checks)} checks FAILED"
        detail = f"{verdict} ({len(report.checks)} checks of {len(verdicts)} files); {accuracy}"
        return bool(report), detail, ("validate.json", "validate.md"), False

    step("validate", do_validate)

    def do_bench() -> Outcome:
        nonlocal bench
        timed = {k: v for k, v in uses.items() if v in made}
        timed_backends = [b for b in backends if b.startswith("torch") or any(k[1] == b for k in timed)]
        subjects = subjects_from_made(models, made, timed)
        plan = TimingPlan(warmup_iters=options.warmup_iters, iters=options.iters, budget_s=options.budget_s)
        rows, groups, notes = time_subjects(subjects, backends=timed_backends, batches=options.batches, precisions=precisions,
                                            plan=plan, threads=options.threads, on_progress=on_progress)  # fmt: skip
        settings = bench_settings(
            subjects, timed_backends, options.batches, precisions, plan, options.threads, options.target, False, notes
        )
        bench = result.bench = report = BenchReport(
            rows=rows, environment=collect_environment(), settings=settings, groups=groups
        )
        files = write_report(report, out)
        speedups = "; ".join(
            f"{r.backend} {r.precision} b{r.batch} {speedup_text(r)}" for r in report.rows if r.speedup is not None
        )
        unstable = (
            f"; {sum(r.unstable for r in report.rows)} of {len(report.rows)} figures unstable (bench.md)"
            if report.unstable
            else ""
        )
        return True, f"SB vs baseline: {speedups or 'no baseline pair'}{unstable}", tuple(p.name for p in files), False

    step("bench", do_bench)
    result.artifacts = summarize_artifacts(made, plans, validation, bench)
    return _finish(result)


def validate_files(
    made: dict[str, DeployFile],
    plans: Sequence[ArtifactPlan],
    sources: dict[str, ModelSource],
    *,
    limit: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> ValidationReport:
    """Every made file against its own model's PyTorch code, on the backends that time it (else ONNX Runtime CPU).

    ``on_progress`` gets ``(what runs, done, total)`` per reference model, as :func:`sbdeploy.validate.run.validate` reports it.
    """
    from sbdeploy.backends import get_runner
    from sbdeploy.checkpoint import Checkpoint
    from sbdeploy.validate.run import artifact_of, dataset_case, merge_reports, validate

    reports = []
    # a baseline of random weights (no dataset) is judged on the images of the run's checkpoint, as it was calibrated
    run_dataset = next((src.config.dataset for src in sources.values() if src.config.dataset), "")
    for label, src in sources.items():
        artifacts = []
        for plan in plans:
            if plan.model != label or plan.filename not in made:
                continue
            file = made[plan.filename]
            # a file no backend times (model.onnx, an engine's ONNX) runs on ONNX Runtime CPU, there on every machine
            runners = [b for b in plan.backends if file.runs_on(b)] or [
                file.default_backend() if file.kind == "engine" else "ort-cpu"
            ]
            artifacts += [artifact_of(file, b) for b in runners]
        if not artifacts:
            continue
        ckpt = Checkpoint(path=Path(label), model=src.model, config=src.config, weights_sha256=src.weights_sha256)
        data = src.config.dataset or (run_dataset if any(a.precision == "int8" for a in artifacts) else "")
        dataset = dataset_case(data, src.config, limit=limit) if data else None
        reports.append(validate(ckpt, artifacts, runner_factory=lambda a: get_runner(a.backend, a.path), dataset=dataset,
                                on_progress=on_progress))  # fmt: skip
    return merge_reports(reports)


def summarize_artifacts(
    made: dict[str, DeployFile],
    plans: Sequence[ArtifactPlan],
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
        latency: dict[str, dict[int, float]] = {}
        speedup: dict[str, dict[int, float]] = {}
        interval: dict[str, dict[int, tuple[float, float]]] = {}
        for row in bench.rows if bench is not None else ():
            if row.file == file.name:
                latency.setdefault(row.backend, {})[row.batch] = round(row.stats.median_ms, 4)
                if row.speedup is not None:
                    speedup.setdefault(row.backend, {})[row.batch] = round(row.speedup, 3)
                if row.speedup_low is not None and row.speedup_high is not None:
                    interval.setdefault(row.backend, {})[row.batch] = (
                        round(row.speedup_low, 3),
                        round(row.speedup_high, 3),
                    )
        summaries.append(ArtifactSummary(file.name, file.sha256, plan.model, file.target, file.precision, file.batch,
                                         verdicts.get(file.name), latency, speedup, interval))  # fmt: skip
    return summaries


def speedup_text(row: BenchRow) -> str:
    """``1.23x (1.20-1.26), MAC ratio 0.500`` for an SB bench row (no interval: too few turns)."""
    interval = f" ({row.speedup_low:.2f}-{row.speedup_high:.2f})" if row.speedup_low is not None else " (no interval)"
    return f"{row.speedup:.2f}x{interval}, MAC ratio {row.mac_ratio:.3f}"


def _finish(result: PipelineResult) -> PipelineResult:
    atomic_write_bytes(result.out / "summary.json", (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(result.out / "summary.md", summary_markdown(result).encode())
    return result


def summary_markdown(result: PipelineResult) -> str:
    """One page: each step with its outcome, time and files; each artifact with its parity and latency."""
    lines = [f"# sbdeploy pipeline: {'PASSED' if result else 'FAILED'}", "", f"- source: `{result.source}`",
             f"- engine backend: {result.engine_backend}", ""]  # fmt: skip
    lines += ["| step | result | seconds | detail | files |", "|---|---|---|---|---|"]
    for s in result.steps:
        files = ", ".join(f"[{f}]({f})" for f in s.files)
        result_text = {"ok": "ok", "skipped": "skipped", "FAILED": "**FAILED**"}[s.status]
        seconds = "-" if s.skipped else f"{s.seconds:.1f}"
        lines.append(f"| {s.name} | {result_text} | {seconds} | {s.detail.replace('|', '/')} | {files} |")
    if result.artifacts:
        lines += ["", "## Artifacts", "", "Each file as validated against its PyTorch training code and as timed "
                  "(median latency per batch; the speedup's 95% interval in brackets, bench.md says how sure).", ""]  # fmt: skip
        lines += [
            "| file | model | target | precision | sha256 | parity | latency | speedup vs baseline |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in result.artifacts:
            parity = "-" if a.parity is None else "pass" if a.parity else "**FAIL**"
            latency = (
                "; ".join(f"{b} b{n} {ms:.3f} ms" for b, per in a.latency_ms.items() for n, ms in sorted(per.items()))
                or "-"
            )
            speedup = "; ".join(
                f"{b} b{n} {x:.2f}x" + (f" ({a.speedup_interval[b][n][0]:.2f}-{a.speedup_interval[b][n][1]:.2f})"
                                        if n in a.speedup_interval.get(b, {}) else "")
                for b, per in a.speedup.items() for n, x in sorted(per.items())
            ) or "-"  # fmt: skip
            lines.append(f"| [{a.file}]({a.file}) | {a.model} | {a.target or '-'} | {a.precision} | `{a.sha256[:16]}` | {parity} | "
                         f"{latency} | {speedup} |")  # fmt: skip
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ServedArtifact:
    """A run folder's file that ``triton-repo`` serves, and the model name it gets."""

    path: Path
    name: str


def served_artifacts(folder: str | Path) -> tuple[list[ServedArtifact], list[str]]:
    """The validated SB artifacts of a pipeline run folder that Triton can serve, and notes on those left out.

    Served: every SB file (``model.*``) whose parity passed, except fixed-batch ONNX files
    with a batch above 1 (Triton's dynamic batcher sends any batch of 1..max_batch_size; a
    file that takes exactly 8 images would refuse the rest: serve ``model.onnx`` or an
    engine for batches, the batch-1 file for batch-1 latency), and the ONNX file an engine
    was built from when that engine is served (``model.trt.fp32.onnx`` beside
    ``model.trt.fp32.engine``: the same model name, and the engine is what it was made
    for). Baseline files are not served. Model names are the file names without the
    extension, dots as underscores (``model_ort-cpu_b1_fp32``).

    Raises:
        ArtifactError: the folder holds no pipeline summary.
    """
    from sbdeploy.errors import ArtifactError

    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise ArtifactError(
            f"{folder} is not a pipeline run folder (no summary.json); give its files, or run `sbdeploy pipeline`"
        )
    try:
        summary = json.loads(summary_path.read_text())
        entries = list(summary["artifacts"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ArtifactError(
            f"{summary_path} is not a pipeline summary sbdeploy can read ({error}); rerun `sbdeploy pipeline`"
        ) from None
    served, notes = [], []
    for entry in entries:
        file = str(entry.get("file", ""))
        if not file.startswith(f"{SB_STEM}."):
            continue
        if entry.get("parity") is not True:
            notes.append(f"{file}: not served, its parity check did not pass")
        elif (entry.get("batch") or 1) > 1:
            notes.append(f"{file}: not served, it takes exactly batch {entry['batch']} and Triton batches 1..N "
                         f"(serve {SB_STEM}.onnx or an engine for batches)")  # fmt: skip
        elif not (folder / file).is_file():
            notes.append(f"{file}: not served, it is missing from {folder}")
        else:
            served.append(ServedArtifact(folder / file, file.rsplit(".", 1)[0].replace(".", "_")))
    engines = {s.name: s.path.name for s in served if s.path.suffix != ".onnx"}
    for source in [s for s in served if s.path.suffix == ".onnx" and s.name in engines]:
        served.remove(source)
        notes.append(
            f"{source.path.name}: not served, the engine built from it ({engines[source.name]}) is served as {source.name}"
        )
    if not served:
        raise ArtifactError(
            f"{folder} holds no validated SB artifact Triton can serve ({'; '.join(notes) or 'none listed'})"
        )
    return served, notes
