"""The one flow every command runs: models -> their deploy files, each made once -> validated -> timed.

:class:`Flow` plans (refusing what cannot be honoured before anything is made), makes,
validates and times the files, so the file validated is the file timed, byte for byte;
``run_bench``, ``run_validate`` and ``run_export`` are the commands' library functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sbdeploy.artifacts import (
    ArtifactPlan,
    Uses,
    build_planned_engine,
    canonical_plan,
    make_artifacts,
    plan_artifacts,
)
from sbdeploy.bench.report import BenchReport
from sbdeploy.bench.run import (
    BACKENDS,
    DEFAULT_BACKENDS,
    BenchSubject,
    Proof,
    bench_subjects,
    subjects_from_files,
    subjects_from_made,
)
from sbdeploy.bench.timing import TimingPlan
from sbdeploy.calibration import Calibration, calibration_for, load_calibration
from sbdeploy.checkpoint import require_folder
from sbdeploy.errors import ConfigError
from sbdeploy.export.onnx_export import ExportResult, export_source
from sbdeploy.files import ENGINE_SUFFIXES, DeployFile, describe_file
from sbdeploy.nn.sb import has_sb
from sbdeploy.sources import Model, is_artifact_file, resolve_models, resolve_source
from sbdeploy.targets import CANONICAL, FUSED_PRECISIONS, ONNX_BACKENDS, RUN_PRECISIONS, target_for
from sbdeploy.tolerance import DEFAULT_TOLERANCES, Tolerance
from sbdeploy.tune import TuneOptions, TuneResult, tune_budget_options, tune_export
from sbdeploy.validate.compare import ValidationReport, judge, merge_reports
from sbdeploy.validate.run import (
    Artifact,
    RunResults,
    artifact_of,
    check_same_model,
    dataset_case,
    open_runner,
    require_data,
    run_validation,
    validate,
)

Progress = Callable[[str, int, int], None]


def check_calibration(precisions: Sequence[str], calibration: str | None) -> None:
    """Calibration data is for int8 files: ConfigError when it is given without them."""
    if calibration is not None and "int8" not in precisions:
        raise ConfigError("--calibration is for int8 artifacts; add --int8")


@dataclass
class Flow:
    """The files some models need on some backends, batch sizes and precisions, and what was made of them."""

    models: list[Model]  # an SB network's baseline among them (sbdeploy.sources.resolve_models)
    backends: tuple[str, ...]
    batches: tuple[int, ...]
    precisions: tuple[str, ...]
    target: str | None
    plans: list[ArtifactPlan]  # each file once (sbdeploy.artifacts.plan_artifacts)
    uses: Uses  # which file each (model, backend, batch, precision) runs
    calibration: dict[str, Calibration] | None = None
    made: dict[str, DeployFile] = field(default_factory=dict)  # the files on disk, by name
    tuned: dict[str, TuneResult] = field(default_factory=dict)  # each tuned file's record, by name

    @classmethod
    def plan(
        cls,
        models: Sequence[Model],
        *,
        backends: Sequence[str],
        batches: Sequence[int],
        precisions: Sequence[str] = ("fp32",),
        target: str | None = None,
        calibration: str | None = None,
        validate_data: str | None | bool = False,
        canonical: bool = False,
    ) -> Flow:
        """Plan the files; every refusal (a bad target, precision or calibration) comes here, before anything is made.

        ``validate_data``: the data the files will be validated on (None: each checkpoint's own;
        False: not validated), so int8 without real images is refused now. ``canonical`` adds the
        first model's canonical interchange file (``STEM.onnx``).
        """
        calibrations = None
        if "int8" in precisions:  # a bad --calibration is named first
            sizes = {m.label: m.input_size for m in models}
            calibrations = calibration_for({m.label: m.source.config for m in models}, calibration, input_sizes=sizes)
        if validate_data is not False:
            require_data(precisions, validate_data or any(m.source.config.dataset for m in models))
        plain = [m.label for m in models if not has_sb(m.module)]
        plans, uses = plan_artifacts(
            [(m.label, m.stem) for m in models], backends, batches, precisions=precisions, target=target, plain=plain
        )
        if canonical:
            extra = canonical_plan(models[0].label, models[0].stem)
            if extra.filename not in {p.filename for p in plans}:  # (with --target grouped it is already a timed file)
                plans = [extra, *plans]
        return cls(list(models), tuple(backends), tuple(batches), tuple(precisions), target, plans, uses, calibrations)

    def make(
        self,
        folder: str | Path,
        *,
        engines: bool = True,
        tune: TuneOptions | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        """Write the planned ONNX files (tuned where ``tune``) and, with ``engines``, the TensorRT engines into ``folder``."""
        onnx_plans = [p for p in self.plans if p.kind == "onnx"]
        sources = {m.label: m.source for m in self.models}
        sizes = {m.label: m.input_size for m in self.models}
        self.made.update(
            make_artifacts(
                onnx_plans,
                sources,
                folder,
                input_sizes=sizes,
                calibration=self.calibration,
                tune=tune,
                tuned=self.tuned,
                on_progress=on_progress,
            )
        )
        if engines:
            self.build_engines(folder, on_progress)

    def build_engines(self, folder: str | Path, on_progress: Progress | None = None) -> list[str]:
        """Build the planned TensorRT engines from their ONNX files in ``folder``; their file names."""
        built = []
        for plan in (p for p in self.plans if p.kind == "engine"):
            self.made[plan.filename] = build_planned_engine(plan, Path(folder), on_progress)
            built.append(plan.filename)
        return built

    def artifacts(self, plan: ArtifactPlan, backends: Sequence[str]) -> list[Artifact]:
        """What validating a made file on ``backends`` runs: the file as it is, and each precision a backend times it
        in at run time (ov-cpu's bf16), so every (sha256, backend, precision) timed is one validated."""
        file = self.made[plan.filename]
        hinted = {(b, p) for (_, b, _, p), name in self.uses.items() if name == plan.filename and b in backends}
        hinted = {(b, p) for b, p in hinted if p != file.precision}
        return [artifact_of(file, b) for b in backends] + [artifact_of(file, b, p) for b, p in sorted(hinted)]

    def validate(
        self,
        *,
        data: str | None = None,
        limit: int | None = None,
        tolerances: dict[str, Tolerance] | None = None,
        on_progress: Progress | None = None,
    ) -> ValidationReport:
        """Every made file against its own model's PyTorch code, on the backends that time it (else ONNX Runtime CPU).

        Real images come from ``data``, else the model's dataset; a baseline of random weights
        with an int8 file is judged on the run's dataset, on which it was calibrated.
        """
        reports = []
        run_data = data or next((m.source.config.dataset for m in self.models if m.source.config.dataset), "")
        for model in self.models:
            artifacts = []
            for plan in self.plans:
                if plan.model != model.label or plan.filename not in self.made:
                    continue
                file = self.made[plan.filename]
                # a file no backend times (model.onnx, an engine's ONNX) runs on ONNX Runtime CPU, there on every machine
                runners = [b for b in plan.backends if file.runs_on(b)]
                runners = runners or [file.default_backend() if file.kind == "engine" else "ort-cpu"]
                artifacts += self.artifacts(plan, runners)
            if not artifacts:
                continue
            source = data or model.source.config.dataset
            source = source or (run_data if any(a.precision == "int8" for a in artifacts) else "")
            reports.append(
                validate(
                    model.source,
                    artifacts,
                    runner_factory=open_runner,
                    dataset=dataset_case(source, model.source.config, limit=limit) if source else None,
                    tolerances=tolerances,
                    on_progress=on_progress,
                )
            )
        return merge_reports(reports)

    def subjects(self) -> list[BenchSubject]:
        """What :meth:`bench` times: each model, its files those it was made."""
        return subjects_from_made(self.models, self.made, {k: v for k, v in self.uses.items() if v in self.made})

    def bench(
        self,
        plan: TimingPlan,
        *,
        threads: int | None = None,
        cuda_graph: bool = False,
        files: Sequence[BenchSubject] = (),
        precisions: Sequence[str] = (),
        baseline: str | None = None,
        notes: Sequence[str] = (),
        on_progress: Progress | None = None,
        passed: Collection[Proof] | None = None,
    ) -> BenchReport:
        """Time the made files (and ``files`` given as they are, in ``precisions`` too), per backend and batch;
        ``baseline``: the label every other subject is timed against (run_bench's ``baseline``); ``passed``: the
        (sha256, backend, precision) that passed validation, the only ones a network's fastest file is chosen from."""
        subjects = self.subjects() + list(files)
        timed = {b for s in subjects for b, _, _ in s.files}
        backends = [b for b in self.backends if b.startswith("torch") or b in timed]
        batches = sorted({*self.batches, *(n for s in files for _, n, _ in s.files)})  # a fixed-batch file's own
        precisions = tuple(precisions) or self.precisions
        made = {(b, p) for s in subjects for b, _, p in s.files}
        for precision in (p for p in precisions if p != "fp32"):  # what a backend cannot run it skips
            runs = [b for b in backends if (b, precision) in made]
            if runs and len(runs) < len(backends):
                without = ", ".join(b for b in backends if b not in runs)
                notes = [*notes, f"{precision} runs on {', '.join(runs)}; {without} timed without it"]
            plain = ", ".join(m.label for m in self.models if not has_sb(m.module))
            fused = [b for b in runs if precision in FUSED_PRECISIONS and target_for(b, self.target).fused]
            if plain and fused:  # e.g. bf16 on ort-cpu: a network without SB blocks has no such file
                notes = [*notes, f"{precision} on {', '.join(fused)} is the fused SB kernel's: {plain} has no SB block"]
        return bench_subjects(
            subjects,
            backends=backends,
            batches=batches,
            precisions=precisions,
            plan=plan,
            threads=threads,
            target=self.target,
            cuda_graph=cuda_graph,
            baseline=baseline,
            notes=list(notes),
            on_progress=on_progress,
            passed=passed,
        )


def against(
    baseline: str, models: Sequence[Model], files: Sequence[BenchSubject]
) -> tuple[list[Model], list[BenchSubject]]:
    """The models and files with ``baseline`` (the label of one of them) as the baseline of every other one."""

    def base(label: str) -> str | None:
        return None if label == baseline else baseline

    return (
        [dataclasses.replace(m, baseline=base(m.label)) for m in models],
        [dataclasses.replace(s, baseline=base(s.label)) for s in files],
    )


def run_bench(
    specs: Sequence[str | Path],
    *,
    backends: Sequence[str] | None = None,
    batches: Sequence[int] = (1, 8),
    plan: TimingPlan = TimingPlan(),
    threads: int | None = None,
    input_size: tuple[int, int] | None = None,
    target: str | None = None,
    add_baselines: bool = True,
    baseline: str | Path | None = None,
    precisions: Sequence[str] = ("fp32",),
    calibration: str | None = None,
    cuda_graph: bool = False,
    workdir: str | Path | None = None,
    on_progress: Progress | None = None,
) -> BenchReport:
    """``sbdeploy bench``: time every model (zoo name, checkpoint folder, ``.onnx`` file, engine) on every backend.

    Checkpoints and zoo names get their files made (into ``workdir``, else a temporary folder)
    for ``backends`` (default :data:`DEFAULT_BACKENDS`), each SB network beside its baseline
    (``add_baselines``); a given file is timed as it is, on its own backend unless told, at
    its own batch when fixed. ``baseline`` (any of those kinds) is timed beside them instead of
    their own baselines, and every spec against it: one speedup each. ``on_progress`` gets
    ``(stage, done, total)`` while files are made and after each timed round (done of 1000).
    """
    if not specs:
        raise ConfigError("give at least one model (zoo name, checkpoint folder, .onnx file or engine)")
    if baseline is not None and not add_baselines:
        raise ConfigError("--baseline names the one baseline every model is timed against: drop --no-baselines")
    if baseline is not None and any(Path(s).resolve() == Path(baseline).resolve() for s in specs):
        raise ConfigError(
            f"{baseline} is both a model (-m) and the --baseline; to time a file against itself (an A/A check), "
            "give a byte copy of it as the baseline"
        )
    unknown = [b for b in backends or () if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    if not batches or any(b < 1 for b in batches):
        raise ConfigError(f"batch sizes must be >= 1, got {list(batches)}")
    check_calibration(precisions, calibration)
    specs = [*specs, baseline] if baseline is not None else list(specs)  # the baseline last: the last of its kind
    file_specs = [s for s in specs if is_artifact_file(s)]
    sources = [s for s in specs if not is_artifact_file(s)]
    notes: list[str] = []
    if file_specs and input_size is not None:
        notes.append(
            "--input-size applies to checkpoints and zoo names; files run at the input size they were exported at"
        )
    if file_specs and not sources and (set(precisions) - {"fp32"} or calibration is not None):
        raise ConfigError(
            "--fp16, --int8 and --calibration make artifacts of checkpoints and zoo names; the given files are "
            "timed in the precision they hold: drop those flags (or give the checkpoint too)"
        )
    files = subjects_from_files(file_specs, backends, batches) if file_specs else []
    if backends is None:  # each file's own backend, and the defaults for the models
        backends = sorted({b for s in files for b, _, _ in s.files}, key=BACKENDS.index)
        if sources:
            backends = [b for b in DEFAULT_BACKENDS if b not in backends] + backends
    if file_specs and any(b.startswith("torch") for b in backends):
        notes.append(
            "torch backends time the modules of checkpoints and zoo names; the given files are not timed there"
        )
    timed_precisions = list(precisions) + sorted({p for s in files for _, _, p in s.files} - set(precisions))
    if cuda_graph and "trt" not in backends:
        notes.append("--cuda-graph applies to trt only")
    models = resolve_models(sources, add_baselines=add_baselines and baseline is None, input_size=input_size)
    label = None
    if baseline is not None:
        label = (files if is_artifact_file(baseline) else models)[-1].label
        models, files = against(label, models, files)
    flow = Flow.plan(
        models, backends=backends, batches=batches, precisions=precisions, target=target, calibration=calibration
    )
    with contextlib.ExitStack() as stack:
        if workdir is None:  # the artifacts live as long as the run
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="sbdeploy-bench-"))
        flow.make(workdir, on_progress=on_progress)
        return flow.bench(
            plan,
            threads=threads,
            cuda_graph=cuda_graph,
            files=files,
            precisions=timed_precisions,
            baseline=label,
            notes=notes,
            on_progress=on_progress,
        )


@dataclass(frozen=True)
class ValidateOptions:
    """What ``sbdeploy validate`` makes and how it judges; combinations it cannot honour are refused here."""

    backends: tuple[str, ...] = ("ort-cpu",)  # the ONNX Runtime providers that run the ONNX files
    target: str | None = None  # without files: make this target's files (default: each backend's own)
    batches: tuple[int, ...] = (1, 8)  # without files: the batch sizes of the per-batch files
    precisions: tuple[str, ...] = ("fp32",)  # without files: the precisions to make, fp32 first
    calibration: str | None = None  # int8 calibration SOURCE; default: the checkpoint's dataset
    data: str | None = None  # real images; default: the checkpoint's dataset
    limit: int | None = None  # at most this many real images
    atol: float | None = None  # atol and rtol override every target's and precision's tolerance
    rtol: float | None = None

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in ONNX_BACKENDS]
        if unknown:
            raise ConfigError(
                f"--backends takes {', '.join(ONNX_BACKENDS)} (engines are given with --engine), got {unknown}"
            )
        check_calibration(self.precisions, self.calibration)

    @property
    def tolerances(self) -> dict[str, Tolerance] | None:
        """Every precision's tolerance with ``atol``/``rtol`` put in (None: each target's own)."""
        if self.atol is None and self.rtol is None:
            return None
        return {
            k: dataclasses.replace(
                t, atol=t.atol if self.atol is None else self.atol, rtol=t.rtol if self.rtol is None else self.rtol
            )
            for k, t in DEFAULT_TOLERANCES.items()
        }


def run_validate(
    checkpoint: str | Path,
    *,
    onnx: Sequence[str | Path] = (),
    engines: Sequence[str | Path] = (),
    options: ValidateOptions = ValidateOptions(),
    workdir: str | Path | None = None,
    save_outputs: str | Path | None = None,
    on_progress: Progress | None = None,
) -> ValidationReport:
    """``sbdeploy validate``: the checkpoint's PyTorch code against the given files, or against the files it makes.

    Without ``onnx``/``engines`` the files bench would time for ``options.backends`` are made
    (into ``workdir``, else a temporary folder). ``save_outputs`` keeps every output, to be
    judged again by :func:`judge_saved`. A given file made from another model than the
    checkpoint is refused (ArtifactError) before anything runs.
    """
    if (onnx or engines) and "int8" in options.precisions:
        raise ConfigError(
            "--int8 makes int8 artifacts; a given file (--onnx/--engine) is judged by the precision it holds"
        )
    path = Path(checkpoint)
    if path.suffix in (".onnx", *ENGINE_SUFFIXES) and not path.is_dir():
        option = "--onnx" if path.suffix == ".onnx" else "--engine"
        what = "is a model file" if path.is_file() else "does not exist (and is named like a model file)"
        raise ConfigError(
            f"{path} {what}: validate takes the checkpoint folder it was exported from first and the file "
            f"after {option}: `sbdeploy validate CHECKPOINT {option} {path}`"
        )
    require_folder(path)  # the reference is a checkpoint folder, never a zoo name's random weights
    (model,) = resolve_models([checkpoint], add_baselines=False, stems=["model"])
    ckpt = model.source
    data = options.data or ckpt.config.dataset or None
    with contextlib.ExitStack() as stack:
        if onnx or engines:
            files = [describe_file(f) for f in onnx]  # each read and hashed once, whatever the backends
            artifacts = [artifact_of(f, b) for f in files for b in options.backends]
            artifacts += [  # a run-time precision (ov-cpu's --bf16) of each fp32 file given
                artifact_of(f, b, p)
                for f in files
                for b in options.backends
                for p in options.precisions
                if f.precision == "fp32" and p in RUN_PRECISIONS.get(b, ())
            ]
            artifacts += [artifact_of(describe_file(e), "trt") for e in engines]
            for artifact in artifacts:  # a given file of another model: said before reading data or running anything
                if artifact.file_info is not None:
                    check_same_model(artifact.file_info, ckpt)
        else:
            flow = Flow.plan(
                [model],
                backends=options.backends,
                batches=options.batches,
                precisions=options.precisions,
                target=options.target,
                calibration=options.calibration,
                validate_data=data,
            )
            folder = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="sbdeploy-validate-"))
            flow.make(folder, on_progress=on_progress)
            artifacts = [a for p in flow.plans for a in flow.artifacts(p, p.backends)]
        results = run_validation(
            ckpt,
            artifacts,
            runner_factory=open_runner,
            dataset=dataset_case(data, ckpt.config, limit=options.limit) if data else None,
            on_progress=on_progress,
        )
    if save_outputs is not None:
        results.save(save_outputs)
    return judge(results, options.tolerances)


def judge_saved(folder: str | Path, options: ValidateOptions = ValidateOptions()) -> ValidationReport:
    """Judge the outputs ``validate --save-outputs`` kept, with ``options``' tolerances, without running anything."""
    return judge(RunResults.load(folder), options.tolerances)


TUNED_DEFAULT = "ort-cpu"
"""The target ``export --tune`` tunes when no target is given (the one whose form is chosen on the machine)."""


@dataclass(frozen=True)
class ExportOptions:
    """What ``sbdeploy export`` writes; combinations it cannot honour are refused here."""

    target: str | None = None  # default: the canonical grouped form; with tune, TUNED_DEFAULT
    precisions: tuple[str, ...] = ("fp32",)  # fp32 first; the file is written in the last one
    batch: str | int = "dynamic"
    input_size: tuple[int, int] | None = None  # (H, W); default: the checkpoint's
    opset: int = 17
    passes: tuple[str, ...] | None = None  # default: the target's
    calibration: str | None = None  # int8 calibration SOURCE; default: the checkpoint's dataset
    tune: bool = False  # time every candidate form and session setting, write the fastest
    tune_budget: float = 10.0  # seconds of timed turns per tuning stage at most
    threads: int | None = None  # the tuning thread budget
    variants: tuple[str, ...] | None = None  # the variants tuning tries besides the target's form (None: all)

    def __post_init__(self) -> None:
        if len(self.precisions) > 2:
            raise ConfigError("--fp16, --int8 and --bf16 each write one artifact; give one of them")
        run_time = "bf16" in self.precisions and "bf16" in RUN_PRECISIONS.get(self.deploy_target.partition(":")[0], ())
        if run_time and not self.tune:  # with --tune: the fp32 file, its form chosen by bf16 runs
            raise ConfigError(
                f"bf16 on {self.deploy_target} is a run-time setting of its fp32 file: export without --bf16, then "
                "validate, bench or serve that file with --bf16 (or add --tune to choose its form by bf16 timings)"
            )
        check_calibration(self.precisions, self.calibration)
        if self.tune and ("int8" in self.precisions or ("bf16" in self.precisions and not run_time)):
            raise ConfigError(
                "--tune times fp32 and fp16 files (and ov-cpu's bf16 runs); an int8 or bf16 file keeps its target's "
                f"rule form: drop --tune or --{self.precisions[-1]}"
            )
        if not self.tune and (self.threads is not None or self.variants is not None):
            raise ConfigError(
                "--threads and --tune-forms belong to --tune; without --tune the form is the target's rule's"
            )

    @property
    def deploy_target(self) -> str:
        return self.target or (TUNED_DEFAULT if self.tune else CANONICAL)


def run_export(
    source: str | Path,
    output: str | Path,
    options: ExportOptions = ExportOptions(),
    *,
    model_options: dict[str, object] | None = None,
    on_progress: Progress | None = None,
) -> tuple[ExportResult, TuneResult | None]:
    """``sbdeploy export``: ``source`` (checkpoint folder or zoo name, with ``model_options``) to one ONNX file.

    Returns the export and, with ``options.tune``, the tuning record of the written file.
    """
    src = resolve_source(source, options=model_options)
    precision = options.precisions[-1]
    common = {"input_size": options.input_size, "opset": options.opset, "passes": options.passes}
    if options.tune:
        tune = tune_budget_options(options.tune_budget, threads=options.threads, variants=options.variants)
        results = tune_export(
            src,
            {precision: output},
            target=options.deploy_target,
            batch=options.batch,  # type: ignore[arg-type]  # tune_export refuses "dynamic" in one line
            options=tune,
            on_progress=on_progress,
            **common,
        )
        return results[precision]
    calibration = None
    if precision == "int8":
        calibration = load_calibration(options.calibration, src.config, input_size=options.input_size)
    result = export_source(
        src, {precision: output}, batch=options.batch, target=options.deploy_target, calibration=calibration, **common
    )
    return result[precision], None
