"""``sbdeploy pipeline``: export -> passes -> engine -> validate -> bench into one run folder, through the one flow.

The run folder keeps every file it validates and times (``model.onnx``; ``model.*`` and
``baseline.*`` deploy files per backend and precision; engines and sidecars where TensorRT
runs), each made once, and ``summary.md`` lists per file its sha256, verdict and latency.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sbdeploy import environment
from sbdeploy._io import atomic_write_bytes
from sbdeploy.bench.defaults import DEFAULT_BUDGET_S
from sbdeploy.bench.render import write_report
from sbdeploy.bench.timing import TimingPlan
from sbdeploy.errors import ConfigError, SbdeployError
from sbdeploy.flow import Flow, check_calibration
from sbdeploy.pipeline.summary import PipelineResult, StepResult, speedup_text, summarize_artifacts
from sbdeploy.serve.run_folder import SB_STEM
from sbdeploy.sources import resolve_models
from sbdeploy.targets import get_target, requested_precisions
from sbdeploy.tune import TuneOptions, tuning_markdown
from sbdeploy.validate.report import write_report as write_validation

STEPS: tuple[str, ...] = ("export + passes", "engine", "validate", "bench")
"""The pipeline's steps, in order."""

CPU_BACKENDS: tuple[str, ...] = ("ort-cpu", "ov-cpu")
"""The backends ``--backends`` may name: the CPU ones (trt joins by itself where TensorRT runs)."""

BASELINE_STEM = "baseline"
"""File-name stem of the baseline's artifacts in a run folder (the SB model's: :data:`SB_STEM`)."""

Outcome = tuple[bool, str, tuple[str, ...], bool]
"""What a step reports: ok, detail, files written, skipped (nothing to do on this machine)."""


@dataclass(frozen=True)
class PipelineOptions:
    """Knobs of the pipeline run; combinations it cannot honour are refused when they are made."""

    fp16: bool = False  # also make, validate and bench fp16 files
    int8: bool = False  # also make, validate and bench int8 files (each target's recipe)
    bf16: bool = False  # also validate and bench the fp32 files in bf16 where a backend sets it (ov-cpu)
    backends: tuple[str, ...] = ("ort-cpu",)  # the CPU backends of the deploy files (trt joins where it runs)
    calibration: str | None = None  # int8 calibration SOURCE (data source or .npy); default: the checkpoint's dataset
    batches: tuple[int, ...] = (1, 8)  # bench batch sizes (the ort-cpu form is made once per batch)
    iters: int | None = None  # bench timed runs per model (None: adaptive, at most budget_s)
    budget_s: float = DEFAULT_BUDGET_S  # bench seconds of timed turns per backend and batch, at most
    warmup_iters: int = 5
    threads: int | None = None  # intra-op threads of torch and ONNX Runtime CPU
    limit: int | None = None  # validate on at most this many real images
    baseline: str | None = None  # checkpoint folder or zoo name; default: the registry's baseline, random weights
    target: str | None = None  # one deploy target for every backend (default: each backend's own)
    tune: TuneOptions | None = None  # time every ort-cpu file's candidate forms, keep the fastest (tuning.md)

    def __post_init__(self) -> None:
        check_calibration(requested_precisions(self.fp16, self.int8, self.bf16), self.calibration)
        unknown = [b for b in self.backends if b not in CPU_BACKENDS]
        if not self.backends or unknown:
            raise ConfigError(f"--backends takes {', '.join(CPU_BACKENDS)} (trt joins where it runs), got {unknown}")
        if self.tune is not None and self.int8:
            raise ConfigError(
                "--tune times fp32 and fp16 files; an int8 file keeps its target's rule form, so its 'vs fp32' would "
                "mix tuning with precision: run the pipeline once with --tune and once with --int8"
            )
        if self.tune is not None and self.target is not None and not get_target(self.target).tunable:
            raise ConfigError(
                f"--tune times the forms of a tunable target (ort-cpu, ov-cpu); --target {self.target} has one form: drop --tune"
            )
        if not self.batches or min(self.batches) < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {list(self.batches)}")


def tune_options(options: PipelineOptions) -> TuneOptions | None:
    """The tuning options of a run (None without ``tune``), their thread budget the run's unless they name one."""
    if options.tune is None or options.tune.threads is not None:
        return options.tune
    return dataclasses.replace(options.tune, threads=options.threads)


def engine_backend() -> tuple[str, str]:
    """``("trt", why)`` when TensorRT, pycuda and an NVIDIA GPU are here, else ``("ort-cpu", why)``."""
    stack = environment.gpu_stack()
    if stack.trt_ready:
        return "trt", f"TensorRT {stack.tensorrt} and {stack.gpu_name} are present"
    return "ort-cpu", f"{stack.why_not_trt()} here: ONNX Runtime CPU (the embedded default) runs the model"


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

    The models are read and every file planned before anything is written: a bad source,
    baseline or option raises and leaves no run folder behind. A step that fails with a
    user's or the machine's error (SbdeployError, OSError) is reported in the summary (a failed export ends the run);
    any other exception is a bug and propagates. ``on_step``/``on_step_done`` get each step
    (one of :data:`STEPS`) as it starts and ends, ``on_progress`` its ``(stage, done, total)``.
    """
    out = Path(out)
    models = resolve_models([source], baseline=options.baseline, stems=[SB_STEM, BASELINE_STEM])
    backend, why = engine_backend()
    precisions = requested_precisions(options.fp16, options.int8, options.bf16)
    flow = Flow.plan(
        models,
        backends=["torch", *options.backends] + (["trt"] if backend == "trt" else []),
        batches=options.batches,
        precisions=precisions,
        target=options.target,
        calibration=options.calibration,
        validate_data=None,
        canonical=True,
    )
    out.mkdir(parents=True, exist_ok=True)  # every model read and every file planned: the run can start
    result = PipelineResult(source=str(source), out=out, engine_backend=backend)
    say = on_step or (lambda _: None)

    def step(name: str, fn: Callable[[], Outcome]) -> bool:
        say(name)
        start = time.perf_counter()
        try:
            ok, detail, files, skipped = fn()
        except (SbdeployError, OSError) as error:  # a user's or the machine's failure: reported in the summary
            ok, detail, files, skipped = False, f"{type(error).__name__}: {error}", (), False
        result.steps.append(StepResult(name, ok, round(time.perf_counter() - start, 2), detail, files, skipped))
        if on_step_done is not None:
            on_step_done(result.steps[-1])
        return ok

    def do_export() -> Outcome:
        flow.make(out, engines=False, tune=tune_options(options), on_progress=on_progress)
        onnx_plans = [p for p in flow.plans if p.kind == "onnx"]
        forms = ", ".join(sorted({f"{p.target} ({p.precision})" for p in onnx_plans}))
        files = tuple(p.filename for p in onnx_plans)
        if flow.tuned:
            report = {"files": {name: r.to_metadata() for name, r in flow.tuned.items()}}
            atomic_write_bytes(out / "tuning.json", (json.dumps(report, indent=2) + "\n").encode())
            atomic_write_bytes(out / "tuning.md", tuning_markdown(list(flow.tuned.items())).encode())
            chosen = "; ".join(f"{name}: {r.chosen.label}" for name, r in flow.tuned.items())
            return (
                True,
                f"{len(files)} ONNX files: {forms}; tuned {chosen}",
                (*files, "tuning.json", "tuning.md"),
                False,
            )
        untuned = any(get_target(p.target).tunable for p in onnx_plans)
        rule = " (CPU forms chosen by the target's rule, not tuned: --tune times them)" if untuned else ""
        return True, f"{len(files)} ONNX files: {forms}{rule}", files, False

    def do_engine() -> Outcome:
        built = flow.build_engines(out, on_progress)
        if not built:
            return True, f"skipped: no TensorRT here ({why})", (), True
        files = tuple(f for name in built for f in (name, f"{name}.json"))
        return True, f"{len(built)} TensorRT engines built ({why})", files, False

    def do_validate() -> Outcome:
        report = flow.validate(limit=options.limit, on_progress=on_progress)
        result.validation = report
        write_validation(report, out)
        reference = str(models[0].source.path)
        accuracy = "; ".join(
            f"{a.file or 'torch'} top-1 {a.top1:.2%}" for a in report.accuracy if a.reference == reference
        )
        verdict = "all checks passed" if report else f"{len(report.failures)} of {len(report.checks)} checks FAILED"
        detail = f"{verdict} ({len(report.checks)} checks of {len(report.file_verdicts())} files); {accuracy}"
        return bool(report), detail, ("validate.json", "validate.md"), False

    def do_bench() -> Outcome:
        plan = TimingPlan(warmup_iters=options.warmup_iters, iters=options.iters, budget_s=options.budget_s)
        checks = result.validation.checks if result.validation is not None else ()
        failed = {(c.sha256, c.backend, c.precision) for c in checks if c.judged and not c.passed}
        passed = {(c.sha256, c.backend, c.precision) for c in checks} - failed  # a fastest file must have passed
        report = result.bench = flow.bench(plan, threads=options.threads, on_progress=on_progress, passed=passed)
        files = write_report(report, out)
        speedups = "; ".join(
            f"{r.backend} {r.precision} b{r.batch} {speedup_text(r)}" for r in report.rows if r.speedup is not None
        )
        figures = (*report.rows, *report.fastest)
        unstable = sum(r.unstable for r in figures)
        flags = f"; {unstable} of {len(figures)} figures unstable (bench.md)" if report.unstable else ""
        return True, f"SB vs baseline: {speedups or 'no baseline pair'}{flags}", tuple(p.name for p in files), False

    if step("export + passes", do_export):
        step("engine", do_engine)
        step("validate", do_validate)
        step("bench", do_bench)
        result.artifacts = summarize_artifacts(flow.made, flow.plans, result.validation, result.bench)
    result.write()
    return result
