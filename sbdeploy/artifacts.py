"""Deploy artifacts: which files a run needs (from the target table), each planned once, and making them.

:func:`plan_artifacts`: per backend its target's files (one per batch size for a per-batch
target, one dynamic-batch file otherwise, an engine whose one profile serves every batch);
:func:`make_artifacts`: one export per (model, target, batch), every precision from it, tuned
where asked; each engine from its ONNX. :class:`sbdeploy.flow.Flow` is the one caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sbdeploy import kernels
from sbdeploy.errors import ConfigError
from sbdeploy.export.onnx_export import export_source
from sbdeploy.files import DeployFile, describe_file
from sbdeploy.targets import (
    CANONICAL,
    ENGINE_BACKENDS,
    FUSED_PRECISIONS,
    Target,
    artifact_filename,
    file_precision,
    get_target,
    target_for,
)
from sbdeploy.tune import TuneOptions, TuneResult, tune_export

if TYPE_CHECKING:
    from sbdeploy.calibration import Calibration
    from sbdeploy.checkpoint import Checkpoint

Progress = Callable[[str, int, int], None]
"""Called as ``(stage, done, total)`` while artifacts are made (total 0: unknown)."""


@dataclass(frozen=True)
class ArtifactPlan:
    """One file to make: an ONNX export, or a TensorRT engine built from one."""

    kind: Literal["onnx", "engine"]
    model: str  # the model's label
    stem: str  # its file-name stem (model, baseline; in bench, the label)
    filename: str  # the file's identity: equal names are made once
    target: str
    precision: str  # fp32, fp16 or int8 (an int8 engine is built from the target's QDQ file)
    batch: int | None = None  # a fixed batch (per-batch targets); None: dynamic
    profile: tuple[int, int, int] | None = None  # an engine's (min, opt, max) batch, covering every batch timed
    source: str | None = None  # an engine's ONNX file name
    backends: tuple[str, ...] = ()  # the backends that run it


Uses = dict[tuple[str, str, int, str], str]
"""(model label, backend, batch, precision) -> the filename that backend runs there."""


def engine_profile(batches: Sequence[int]) -> tuple[int, int, int]:
    """The batch profile of the one engine that serves every batch size: min 1, opt = max = the largest batch.

    TensorRT tunes its kernels at the opt shape; the largest batch is where
    throughput matters most, and smaller batches still run (at their own shapes).
    """
    if not batches or min(batches) < 1:
        raise ConfigError(f"batch sizes must be >= 1, got {list(batches)}")
    return 1, max(batches), max(batches)


def canonical_plan(model: str, stem: str, backends: tuple[str, ...] = ("ort-cpu",)) -> ArtifactPlan:
    """The canonical interchange file of a model (``STEM.onnx``: grouped, fp32, dynamic batch)."""
    return ArtifactPlan(
        "onnx", model, stem, artifact_filename(stem, CANONICAL, "fp32"), CANONICAL, "fp32", backends=backends
    )


def plan_artifacts(
    models: Sequence[tuple[str, str]],
    backends: Sequence[str],
    batches: Sequence[int],
    *,
    precisions: Sequence[str] = ("fp32",),
    target: str | None = None,
    plain: Collection[str] = (),
) -> tuple[list[ArtifactPlan], Uses]:
    """Which files ``models`` ((label, file stem) pairs) need on ``backends`` (torch needs none), each planned once.

    ``target`` forces one target for every backend (it must run on each); ``plain``: the labels of networks without SB
    blocks, which have no file of a precision only fused SB nodes compute in (FUSED_PRECISIONS). Returns the plans
    in build order (an engine after its ONNX) and which file each (model, backend, batch,
    precision) runs.
    """
    engine_profile(batches)  # refuses empty or non-positive batch lists
    plans: dict[str, ArtifactPlan] = {}
    uses: Uses = {}

    def add(plan: ArtifactPlan, backend: str | None) -> str:
        known = plans.get(plan.filename, plan)
        if backend is not None and backend not in known.backends:
            known = dataclasses.replace(known, backends=(*known.backends, backend))
        plans[plan.filename] = known
        return plan.filename

    deploys = {b: target_for(b, target) for b in backends if not b.startswith("torch")}
    built = kernels.is_built()

    def offers(deploy: Target, precision: str) -> bool:  # a fused-only precision needs the kernel library
        fused_only = precision in FUSED_PRECISIONS and deploy.fused is not None
        return precision in deploy.precisions and (built or not fused_only)

    for precision in precisions:  # one backend offering a precision (ov-cpu's bf16) is enough: the others skip it
        if deploys and not any(offers(d, precision) for d in deploys.values()):
            first = next(iter(deploys.values()))
            first.check_precision(precision)
            first.by_rule(precision, kernels_built=built)  # refuses: the fused form's, and no library here
    for label, stem in models:
        for backend, deploy in deploys.items():
            if deploy.variant is not None:  # a variant is a tuning candidate: its file would carry the row's name
                raise ConfigError(
                    f"--target {deploy.spec}: a form variant is written by `sbdeploy export --target {deploy.spec}` "
                    f"only; here give --target {deploy.name} (and --tune to let the measured fastest form win)"
                )
            for precision in (p for p in precisions if offers(deploy, p)):
                if label in plain and precision in FUSED_PRECISIONS and deploy.fused is not None:
                    continue  # computed by fused SB nodes: a network without any has no such file
                if backend in ENGINE_BACKENDS:
                    # the builder converts fp32 for fp16; an int8 engine is built from the target's QDQ file
                    source = "int8" if precision == "int8" else "fp32"
                    onnx_name = artifact_filename(stem, deploy.name, source)
                    add(ArtifactPlan("onnx", label, stem, onnx_name, deploy.name, source), None)
                    engine = ArtifactPlan(
                        "engine",
                        label,
                        stem,
                        artifact_filename(stem, deploy.name, precision, engine=True),
                        deploy.name,
                        precision,
                        profile=engine_profile(batches),
                        source=onnx_name,
                    )
                    name = add(engine, backend)
                    uses.update({(label, backend, b, precision): name for b in batches})
                elif deploy.per_batch:
                    made = file_precision(backend, precision)  # a run-time precision runs the fp32 file
                    for b in batches:
                        plan = ArtifactPlan(
                            "onnx",
                            label,
                            stem,
                            artifact_filename(stem, deploy.name, made, batch=b),
                            deploy.name,
                            made,
                            batch=b,
                        )
                        uses[(label, backend, b, precision)] = add(plan, backend)
                else:
                    made = file_precision(backend, precision)
                    plan = ArtifactPlan(
                        "onnx", label, stem, artifact_filename(stem, deploy.name, made), deploy.name, made
                    )
                    name = add(plan, backend)
                    uses.update({(label, backend, b, precision): name for b in batches})
    ordered = sorted(plans.values(), key=lambda p: p.kind == "engine")  # stable: ONNX files first, in plan order
    return ordered, uses


def make_artifacts(
    plans: Sequence[ArtifactPlan],
    sources: Mapping[str, Checkpoint],
    folder: str | Path,
    *,
    input_sizes: Mapping[str, tuple[int, int]] | None = None,
    calibration: Mapping[str, Calibration] | None = None,
    on_progress: Progress | None = None,
    tune: TuneOptions | None = None,
    tuned: dict[str, TuneResult] | None = None,
) -> dict[str, DeployFile]:
    """Write every planned file into ``folder``, each once; return them by file name.

    ``sources``, ``input_sizes`` and ``calibration`` (needed by an int8 file) are per model
    label. With ``tune`` the fixed-batch files of a tunable target are tuned (each record
    into ``tuned``, by file name); without, the target's rule chooses the form.
    """
    folder = Path(folder)
    made: dict[str, DeployFile] = {}
    exports: dict[tuple[str, str, int | None], dict[str, Path]] = {}
    for plan in plans:
        if plan.kind == "onnx":
            exports.setdefault((plan.model, plan.target, plan.batch), {})[plan.precision] = folder / plan.filename
    for (model, _, _), outputs in exports.items():  # refused before anything is written
        if "int8" in outputs and (calibration is None or model not in calibration):
            raise ConfigError(f"{model}: an int8 artifact needs calibration data (--calibration SRC)")
    folder.mkdir(parents=True, exist_ok=True)
    for number, ((model, target, batch), outputs) in enumerate(exports.items()):
        if on_progress:
            on_progress(f"exporting {', '.join(p.name for p in outputs.values())}", number, len(exports))
        size = (input_sizes or {}).get(model)
        plain = dict(outputs)
        if tune is not None and batch is not None and get_target(target).tunable:  # int8 files keep the rule's form
            timed = {p: o for p, o in outputs.items() if p != "int8"}
            plain = {p: o for p, o in outputs.items() if p not in timed}
            results = tune_export(
                sources[model],
                timed,
                target=target,
                batch=batch,
                input_size=size,
                options=tune,
                on_progress=on_progress,
            )
            if tuned is not None:
                tuned.update({outputs[p].name: result for p, (_, result) in results.items()})
        if plain:
            export_source(
                sources[model],
                plain,
                target=target,
                batch="dynamic" if batch is None else batch,
                input_size=size,
                calibration=(calibration or {}).get(model),
            )
        made.update({p.name: describe_file(p) for p in outputs.values()})
    for plan in plans:
        if plan.kind == "engine":
            made[plan.filename] = build_planned_engine(plan, folder, on_progress)
    return made


def build_planned_engine(plan: ArtifactPlan, folder: Path, on_progress: Progress | None = None) -> DeployFile:
    """Build one planned TensorRT engine from its ONNX (already in ``folder``) with its target's build options."""
    from sbdeploy.backends.tensorrt.builder import BuildOptions, build_engine

    assert plan.kind == "engine" and plan.profile is not None and plan.source is not None
    lo, opt, hi = plan.profile
    options = BuildOptions(
        **get_target(plan.target).build_options(plan.precision), min_batch=lo, opt_batch=opt, max_batch=hi
    )
    report = (lambda phase, step, total: on_progress(f"{plan.filename}: {phase}", step, total)) if on_progress else None
    build_engine(folder / plan.source, folder / plan.filename, options, progress=report)
    return describe_file(folder / plan.filename)
