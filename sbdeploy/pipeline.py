"""``sbdeploy pipeline``: export -> passes -> engine -> validate -> bench, into one folder.

The engine is TensorRT where TensorRT and a GPU are present, else ONNX Runtime on the
CPU (the embedded default), and the summary says which and why. Every step's
outcome, time and files go into ``summary.json`` and ``summary.md`` beside the
artifacts and the validate and bench reports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sbdeploy._io import atomic_write_bytes
from sbdeploy.bench.defaults import DEFAULT_BUDGET_S

if TYPE_CHECKING:
    from sbdeploy.bench.report import BenchReport, BenchRow


@dataclass(frozen=True)
class StepResult:
    """One pipeline step: what it did, how long it took, what it wrote."""

    name: str
    ok: bool
    seconds: float
    detail: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class PipelineOptions:
    """Knobs of the pipeline run.

    Attributes:
        fp16: also make (and validate, bench) an fp16 artifact.
        batches: bench batch sizes.
        iters: bench timed runs per model (None: the adaptive length, see ``budget_s``).
        budget_s: bench seconds of timed turns per backend and batch, at most, for the adaptive length.
        warmup_iters: bench warm-up runs per model.
        threads: intra-op threads for torch and ONNX Runtime CPU.
        limit: use at most this many real images in validation.
        baseline: the baseline to bench against (checkpoint folder or zoo name); default:
            the registry's baseline of the source's architecture, random weights.
        lowering: bench the canonical ONNX form with this SB lowering (default: each
            backend's exact deploy form, :data:`sbdeploy.bench.run.DEFAULT_TARGET`).
    """

    fp16: bool = False
    batches: tuple[int, ...] = (1, 8)
    iters: int | None = None
    budget_s: float = DEFAULT_BUDGET_S
    warmup_iters: int = 5
    threads: int | None = None
    limit: int | None = None
    baseline: str | None = None
    lowering: str | None = None


@dataclass
class PipelineResult:
    """All steps of one pipeline run; ``bool()`` is true when every step succeeded."""

    source: str
    out: Path
    engine_backend: str
    steps: list[StepResult] = field(default_factory=list)
    bench: BenchReport | None = None  # the bench step's report (its warnings are the CLI's to print)

    def __bool__(self) -> bool:
        return all(s.ok for s in self.steps)

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "out": str(self.out), "engine_backend": self.engine_backend, "passed": bool(self), "steps": [asdict(s) for s in self.steps]}


def engine_backend() -> tuple[str, str]:
    """``("trt", why)`` when TensorRT, pycuda and an NVIDIA GPU are here (:func:`sbdeploy.environment.gpu_stack`), else ``("ort-cpu", why)``."""
    from sbdeploy import environment

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
) -> PipelineResult:
    """Run the whole chain on a checkpoint folder (or zoo name) and write every report to ``out``.

    Args:
        source: checkpoint folder or zoo name.
        out: the run folder.
        options: what to make, validate and bench.
        on_step: called with each step's name as it starts.
        on_progress: the bench step's ``(stage, done, total)`` progress, as ``sbdeploy bench`` reports it.
    """
    from sbdeploy.bench.report import write_report
    from sbdeploy.bench.run import run_bench
    from sbdeploy.bench.timing import TimingPlan
    from sbdeploy.checkpoint import Checkpoint
    from sbdeploy.export import export_onnx, resolve_source
    from sbdeploy.passes import to_fp16
    from sbdeploy.validate.run import dataset_case, engine_artifact, onnx_artifact, to_markdown, validate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend, why = engine_backend()
    result = PipelineResult(source=str(source), out=out, engine_backend=backend)
    say = on_step or (lambda _: None)

    def step(name: str, fn: Callable[[], tuple[bool, str, tuple[str, ...]]]) -> bool:
        say(name)
        start = time.perf_counter()
        try:
            ok, detail, files = fn()
        except Exception as error:  # reported in the summary; the steps that need this one are skipped
            ok, detail, files = False, f"{type(error).__name__}: {error}", ()
        result.steps.append(StepResult(name, ok, round(time.perf_counter() - start, 2), detail, files))
        return ok

    src = resolve_source(source)
    onnx_path, fp16_path, engines = out / "model.onnx", out / "model.fp16.onnx", []

    def do_export() -> tuple[bool, str, tuple[str, ...]]:
        exported = export_onnx(source, onnx_path)
        passes = ", ".join(f"{r.name} {r.nodes_before}->{r.nodes_after}" for r in exported.pass_reports)
        trt = "TensorRT check ok" if exported.trt_check else f"TensorRT check: {len(exported.trt_check.errors)} error(s)"
        files = [onnx_path.name]
        if options.fp16:
            import onnx

            atomic_write_bytes(fp16_path, to_fp16(onnx.load(str(onnx_path))).SerializeToString(deterministic=True))
            files.append(fp16_path.name)
        return True, f"grouped lowering; passes: {passes}; {trt}", tuple(files)

    if not step("export + passes", do_export):
        return _finish(result)

    def do_engine() -> tuple[bool, str, tuple[str, ...]]:
        if backend != "trt":
            return True, why, ()
        from sbdeploy.backends.tensorrt.builder import BuildOptions, build_engine

        built = []
        for path, precision in [(onnx_path, "fp32")] + ([(onnx_path, "fp16")] if options.fp16 else []):
            engine = out / f"model.{precision}.engine"
            build_engine(path, engine, BuildOptions(precision=precision, min_batch=1, opt_batch=max(options.batches), max_batch=max(options.batches)))
            engines.append(engine)
            built += [engine.name, f"{engine.name}.json"]
        return True, f"TensorRT engines built ({why})", tuple(built)

    step("engine", do_engine)

    def do_validate() -> tuple[bool, str, tuple[str, ...]]:
        ckpt = Checkpoint(path=Path(source), model=src.model, config=src.config, weights_sha256=src.weights_sha256)
        artifacts = [onnx_artifact(onnx_path)] + ([onnx_artifact(fp16_path)] if options.fp16 else [])
        artifacts += [engine_artifact(e) for e in engines]
        dataset = dataset_case(src.config.dataset, src.config, limit=options.limit) if src.config.dataset else None
        from sbdeploy.backends import get_runner

        report = validate(ckpt, artifacts, runner_factory=lambda a: get_runner(a.backend, a.path), dataset=dataset)
        atomic_write_bytes(out / "validate.json", (json.dumps(report.to_dict(), indent=2) + "\n").encode())
        atomic_write_bytes(out / "validate.md", to_markdown(report).encode())
        accuracy = "; ".join(f"{a.backend} top-1 {a.top1:.2%}" for a in report.accuracy)
        verdict = "all checks passed" if report else f"{len(report.failures)} of {len(report.checks)} checks FAILED"
        return bool(report), f"{verdict} ({len(report.checks)}); {accuracy}", ("validate.json", "validate.md")

    step("validate", do_validate)

    def do_bench() -> tuple[bool, str, tuple[str, ...]]:
        specs = [str(source)] + ([options.baseline] if options.baseline else [])
        backends = ["torch", "ort-cpu"] + (["trt"] if backend == "trt" else [])
        plan = TimingPlan(warmup_iters=options.warmup_iters, iters=options.iters, budget_s=options.budget_s)
        report = run_bench(specs, backends=backends, batches=options.batches, plan=plan, threads=options.threads, lowering=options.lowering,
                           on_progress=on_progress)  # fmt: skip
        result.bench = report
        files = write_report(report, out)
        speedups = "; ".join(f"{r.backend} b{r.batch} {speedup_text(r)}" for r in report.rows if r.speedup is not None)
        unstable = f"; {sum(r.unstable for r in report.rows)} of {len(report.rows)} figures unstable (bench.md)" if report.unstable else ""
        return True, f"SB vs baseline: {speedups or 'no baseline pair'}{unstable}", tuple(p.name for p in files)

    step("bench", do_bench)
    return _finish(result)


def speedup_text(row: BenchRow) -> str:
    """``1.23x (1.20-1.26), MAC ratio 0.500`` for an SB bench row (no interval: too few turns)."""
    interval = f" ({row.speedup_low:.2f}-{row.speedup_high:.2f})" if row.speedup_low is not None else " (no interval)"
    return f"{row.speedup:.2f}x{interval}, MAC ratio {row.mac_ratio:.3f}"


def _finish(result: PipelineResult) -> PipelineResult:
    atomic_write_bytes(result.out / "summary.json", (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(result.out / "summary.md", summary_markdown(result).encode())
    return result


def summary_markdown(result: PipelineResult) -> str:
    """One page: each step with its outcome, time and files, and links to the reports."""
    lines = [f"# sbdeploy pipeline: {'PASSED' if result else 'FAILED'}", "", f"- source: `{result.source}`", f"- engine backend: {result.engine_backend}", ""]
    lines += ["| step | result | seconds | detail | files |", "|---|---|---|---|---|"]
    for s in result.steps:
        files = ", ".join(f"[{f}]({f})" for f in s.files)
        lines.append(f"| {s.name} | {'ok' if s.ok else '**FAILED**'} | {s.seconds:.1f} | {s.detail.replace('|', '/')} | {files} |")
    return "\n".join(lines) + "\n"
