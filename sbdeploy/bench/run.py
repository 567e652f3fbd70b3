"""``sbdeploy bench``: time networks on backends with one method, SB beside its baseline.

Each model is resolved (zoo name or checkpoint folder), its baseline added when it is
an SB network, and every backend gets the artifact it runs (the module for ``torch``,
an ONNX export for ``ort-*``, an engine for ``trt``). The ONNX is the exact deploy form
for the engine that runs it (:data:`DEFAULT_TARGET`: ``export --target``); a forced
``lowering`` times the canonical interchange form with that SB lowering instead. For each backend and batch size
all models are timed together, interleaved (:func:`~sbdeploy.bench.timing.measure_group`),
so SB and baseline see the same machine; each group's length, intervals, machine load and
flags go into the report (:mod:`sbdeploy.bench.report`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from sbdeploy.backends import get_runner
from sbdeploy.backends.base import Runner
from sbdeploy.bench.report import BenchGroup, BenchReport, BenchRow, group_rows, judged, pairs_of
from sbdeploy.bench.stability import Limits
from sbdeploy.bench.timing import TimingPlan, measure_group, round_progress
from sbdeploy.environment import collect_environment
from sbdeploy.errors import ConfigError
from sbdeploy.flops import count_macs
from sbdeploy.models import create_model, model_info
from sbdeploy.nn.phase import target_lowering

BACKENDS = ("torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "trt")
DEFAULT_TARGET = {"ort-cpu": "ort-cpu", "ort-cuda": "ort-cuda", "ort-trt": "trt", "trt": "trt"}
"""The deploy target (:data:`sbdeploy.nn.phase.TARGETS`) of the ONNX each backend times by default."""


@dataclass(frozen=True)
class BenchModel:
    """A network to time: its module, label, input geometry, MACs and its baseline's label."""

    label: str
    arch: str
    module: nn.Module
    in_chans: int
    input_size: tuple[int, int]
    macs: int
    baseline: str | None


def resolve_models(specs: Sequence[str | Path], *, add_baselines: bool = True, input_size: tuple[int, int] | None = None) -> list[BenchModel]:
    """Turn zoo names / checkpoint folders into :class:`BenchModel` s, adding missing baselines.

    A baseline added for an SB checkpoint is the registry's baseline with the same
    options and random weights: latency does not depend on the weights' values.
    """
    from sbdeploy.export import resolve_source

    resolved: list[tuple[str, nn.Module, dict, tuple[int, int]]] = []
    for spec in specs:
        src = resolve_source(spec)
        label = Path(spec).name if Path(spec).is_dir() else str(spec)
        resolved.append((label, src.model.eval(), {"arch": src.config.arch, **src.config.options}, input_size or src.config.input_size))
    archs = {opts["arch"]: label for label, _, opts, _ in resolved}
    if add_baselines:
        for label, _, opts, size in list(resolved):
            base = model_info(opts["arch"]).baseline
            if base and base not in archs:
                options = {k: v for k, v in opts.items() if k not in ("arch", "sampling")}
                resolved.append((base, create_model(base, **options).eval(), {"arch": base, **options}, size))
                archs[base] = base
    models = []
    for label, module, opts, size in resolved:
        in_chans = int(opts.get("in_chans", 3))
        base = model_info(opts["arch"]).baseline
        models.append(
            BenchModel(label, opts["arch"], module, in_chans, size, count_macs(module, size, in_chans), archs.get(base) if base else None)
        )
    return models


@dataclass(frozen=True)
class ArtifactPlan:
    """One file to make before timing: an ONNX export, or a TensorRT engine built from one.

    Attributes:
        kind: ``"onnx"`` or ``"engine"``.
        model: the model's label.
        filename: the file's name in the work folder (its identity: equal names are built once).
        lowering: the SB lowering of the ONNX export (a target's form name, e.g. ``subpixel+phase-runs``).
        precision: ``"fp32"`` or ``"fp16"`` (fp16 ONNX keeps fp32 inputs and outputs).
        profile: an engine's batch profile (min, opt, max), covering every batch size timed.
        source: an engine's ONNX filename.
        backends: the backends that run this file.
        target: the deploy target of the export (None: the canonical form with ``lowering``).
    """

    kind: str
    model: str
    filename: str
    lowering: str
    precision: str
    profile: tuple[int, int, int] | None = None
    source: str | None = None
    backends: tuple[str, ...] = ()
    target: str | None = None
    batch: int | None = None  # a fixed batch (the ort-cpu form depends on it); None: dynamic


def engine_profile(batches: Sequence[int]) -> tuple[int, int, int]:
    """The batch profile of the one engine that serves every batch size: min 1, opt = max = the largest batch.

    TensorRT tunes its kernels at the opt shape; the largest batch is where
    throughput matters most, and smaller batches still run (at their own shapes).
    """
    if not batches or min(batches) < 1:
        raise ConfigError(f"batch sizes must be >= 1, got {list(batches)}")
    return 1, max(batches), max(batches)


def plan_artifacts(
    models: Sequence[str], backends: Sequence[str], batches: Sequence[int], *, lowering: str | None = None, fp16: bool = False
) -> tuple[list[ArtifactPlan], dict[tuple[str, str], str]]:
    """Which ONNX files and engines a bench run needs, each made once.

    One ONNX export per (model, form, precision), shared by the backends that run the
    same form (by default each backend's deploy target, :data:`DEFAULT_TARGET`; with
    ``lowering`` the canonical form) and the engine build; one engine per model for ``trt``, whose profile covers every
    batch size (:func:`engine_profile`), so it is built once and reused for all of them.
    With ``fp16``, ``ort-*`` run an fp16 ONNX and ``trt`` an fp16 engine (built from the
    fp32 ONNX by the builder's own fp16 pass); the torch backends stay fp32.

    The ``ort-cpu`` deploy form is exported once per batch size with that batch fixed, as
    ``sbdeploy export --batch N --target ort-cpu`` writes it: small fixed batches get the
    stacked layout (:data:`sbdeploy.nn.phase.STACKED_MAX_MACS`).

    Returns:
        The plans in build order (an engine after its ONNX), and (model, backend, batch) -> filename.
    """
    plans: dict[str, ArtifactPlan] = {}
    uses: dict[tuple[str, str, int], str] = {}

    def add(plan: ArtifactPlan, backend: str) -> str:
        known = plans.get(plan.filename, plan)
        plans[plan.filename] = dataclasses.replace(known, backends=(*known.backends, backend))
        return plan.filename

    for model in models:
        for backend in backends:
            if backend.startswith("torch"):
                continue
            target = None if lowering else DEFAULT_TARGET[backend]
            low = lowering or target_lowering(DEFAULT_TARGET[backend])
            onnx_precision = "fp16" if fp16 and backend != "trt" else "fp32"
            if backend == "ort-cpu" and target is not None:
                for batch in batches:
                    name = f"{model}.{low}.b{batch}.{onnx_precision}.onnx"
                    uses[(model, backend, batch)] = add(ArtifactPlan("onnx", model, name, low, onnx_precision, target=target, batch=batch), backend)
                continue
            onnx_plan = ArtifactPlan("onnx", model, f"{model}.{low}.{onnx_precision}.onnx", low, onnx_precision, target=target)
            onnx_name = add(onnx_plan, backend)
            if backend == "trt":
                precision = "fp16" if fp16 else "fp32"
                engine = ArtifactPlan(
                    "engine", model, f"{model}.{low}.{precision}.engine", low, precision, engine_profile(batches), onnx_name
                )
                onnx_name = add(engine, backend)
            uses.update({(model, backend, batch): onnx_name for batch in batches})
    return list(plans.values()), uses


def _make_artifact(
    plan: ArtifactPlan, model: BenchModel, workdir: Path, on_progress: Callable[[str, int, int], None] | None
) -> None:
    """Write ``plan.filename`` into ``workdir`` (its ONNX source is already there)."""
    path = workdir / plan.filename
    if plan.kind == "engine":
        from sbdeploy.backends.tensorrt.builder import BuildOptions, build_engine

        assert plan.profile is not None and plan.source is not None
        lo, opt, hi = plan.profile
        options = BuildOptions(precision="fp16" if plan.precision == "fp16" else "fp32", min_batch=lo, opt_batch=opt, max_batch=hi)
        report = (lambda phase, step, total: on_progress(f"{plan.model} engine: {phase}", step, total)) if on_progress else None
        build_engine(workdir / plan.source, path, options, progress=report)
        return
    from sbdeploy.export import export_module

    if on_progress:
        on_progress(f"exporting {plan.filename}", 0, 0)
    lowering = "grouped" if plan.target else plan.lowering  # a target's form has its own lowering
    proto, _ = export_module(model.module, in_chans=model.in_chans, input_size=model.input_size, lowering=lowering, target=plan.target,
                             batch="dynamic" if plan.batch is None else plan.batch)  # fmt: skip
    if plan.precision == "fp16":
        from sbdeploy.passes import to_fp16

        proto = to_fp16(proto)
    path.write_bytes(proto.SerializeToString())


def run_bench(
    specs: Sequence[str | Path],
    *,
    backends: Sequence[str] = ("torch", "ort-cpu"),
    batches: Sequence[int] = (1, 8),
    plan: TimingPlan = TimingPlan(),
    threads: int | None = None,
    input_size: tuple[int, int] | None = None,
    lowering: str | None = None,
    add_baselines: bool = True,
    fp16: bool = False,
    cuda_graph: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> BenchReport:
    """Time every model on every backend at every batch size.

    Args:
        specs: zoo names or checkpoint folders.
        backends: backend names (see :data:`BACKENDS`).
        batches: batch sizes.
        plan: warm-up and measuring lengths (default: adaptive, :class:`~sbdeploy.bench.timing.TimingPlan`).
        threads: intra-op threads for torch and ort-cpu (None: the library default).
        input_size: H, W for every model (default: each model's own).
        lowering: force the canonical form with this SB lowering for every ONNX export
            (default: each backend's deploy target, :data:`DEFAULT_TARGET`).
        add_baselines: also time the baseline of every SB model.
        fp16: fp16 ONNX for ``ort-*`` and fp16 engines for ``trt`` (torch stays fp32).
        cuda_graph: ``trt`` replays each enqueue as a CUDA graph (noted in the report when capture fails).
        on_progress: called as ``(stage, done, total)`` while artifacts are made (total 0: unknown)
            and after each timed round (done of 1000: the share of the plan done).
    """
    import torch

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    if not specs:
        raise ConfigError("give at least one model (zoo name or checkpoint folder)")
    if any(b < 1 for b in batches):
        raise ConfigError(f"batch sizes must be >= 1, got {list(batches)}")
    models = resolve_models(specs, add_baselines=add_baselines, input_size=input_size)
    if threads is not None:
        torch.set_num_threads(threads)
    plans, uses = plan_artifacts([m.label for m in models], backends, batches, lowering=lowering, fp16=fp16)
    by_label = {m.label: m for m in models}
    rows: list[BenchRow] = []
    groups: list[BenchGroup] = []
    notes: list[str] = []
    if fp16 and any(b.startswith("torch") for b in backends):
        notes.append("--fp16 applies to ort-* and trt; the torch backends ran in fp32")
    if cuda_graph and "trt" not in backends:
        notes.append("--cuda-graph applies to trt only")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="sbdeploy-bench-") as tmp:
        workdir = Path(tmp)
        for plan_ in plans:
            _make_artifact(plan_, by_label[plan_.model], workdir, on_progress)
        for backend in backends:
            for batch in batches:
                fns = {}
                with contextlib.ExitStack() as stack:
                    runners: list[Runner] = []
                    for m in models:
                        artifact = m.module if backend.startswith("torch") else workdir / uses[(m.label, backend, batch)]
                        opts: dict[str, object] = {"threads": threads} if backend == "ort-cpu" and threads else {}
                        if backend == "trt" and cuda_graph:
                            opts["cuda_graph"] = True
                        runner: Runner = stack.enter_context(get_runner(backend, artifact, **opts))
                        runners.append(runner)
                        feed = {runner.input_specs()[0].name: rng.standard_normal((batch, m.in_chans, *m.input_size), dtype=np.float32)}
                        fns[m.label] = runner.timed_call(feed)
                    described = {m.label: (m.macs, m.baseline) for m in models}
                    result = measure_group(fns, plan, pairs=pairs_of(described), on_round=round_progress(f"{backend} batch {batch}", on_progress))
                    for m, r in zip(models, runners):
                        notes += [f"{m.label}: {n}" for n in r.notes if f"{m.label}: {n}" not in notes]
                groups.append(BenchGroup.of(backend, batch, result.record, Limits.of(plan)))
                rows += group_rows(result, backend=backend, batch=batch, models=described)
    settings = {
        "models": [m.label for m in models], "backends": list(backends), "batches": list(batches),
        **plan.settings(), "threads": threads, "lowering": lowering or "deploy target per backend: " + ", ".join(f"{b} {DEFAULT_TARGET[b]}" for b in backends if b in DEFAULT_TARGET),
        "fp16": fp16, "cuda_graph": cuda_graph,
        "engines": {p.model: {"profile": list(p.profile or ()), "precision": p.precision} for p in plans if p.kind == "engine"},
        "notes": notes,
    }
    return BenchReport(rows=judged(rows, groups, Limits.of(plan)), environment=collect_environment(), settings=settings, groups=groups)
