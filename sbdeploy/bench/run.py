"""``sbdeploy bench``: time networks on backends with one method, SB beside its baseline.

Each model is resolved (zoo name or checkpoint folder), its baseline added when it is
an SB network, and every backend gets the artifact it runs (the module for ``torch``,
an ONNX export for ``ort-*``, an engine for ``trt``). For each backend and batch size
all models are timed together, interleaved (:func:`~sbdeploy.bench.timing.measure_interleaved`),
so SB and baseline see the same machine.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from sbdeploy.backends import get_runner
from sbdeploy.backends.base import Runner
from sbdeploy.bench.report import BenchReport, BenchRow, with_speedups
from sbdeploy.bench.timing import TimingPlan, measure_interleaved
from sbdeploy.environment import collect_environment
from sbdeploy.errors import ConfigError
from sbdeploy.flops import count_macs
from sbdeploy.models import create_model, model_info

BACKENDS = ("torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "trt")
DEFAULT_LOWERING = {"ort-cpu": "grouped", "ort-cuda": "grouped", "ort-trt": "grouped", "trt": "grouped"}


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


def _artifact(model: BenchModel, backend: str, batch: int, workdir: Path, lowering: str | None) -> nn.Module | Path:
    if backend.startswith("torch"):
        return model.module
    if backend == "trt":
        from sbdeploy.backends.tensorrt.builder import BuildOptions, build_engine

        onnx_path = _artifact(model, "ort-cpu", batch, workdir, lowering)
        engine = workdir / f"{model.label}.b{batch}.engine"
        build_engine(onnx_path, engine, BuildOptions(min_batch=batch, opt_batch=batch, max_batch=batch))
        return engine
    from sbdeploy.export import export_module

    path = workdir / f"{model.label}.{lowering or DEFAULT_LOWERING[backend]}.onnx"
    if not path.exists():
        proto, _ = export_module(model.module, in_chans=model.in_chans, input_size=model.input_size, lowering=lowering or DEFAULT_LOWERING[backend])
        path.write_bytes(proto.SerializeToString())
    return path


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
    on_progress: Callable[[str, int, int], None] | None = None,
) -> BenchReport:
    """Time every model on every backend at every batch size.

    Args:
        specs: zoo names or checkpoint folders.
        backends: backend names (see :data:`BACKENDS`).
        batches: batch sizes.
        plan: warm-up and measuring lengths.
        threads: intra-op threads for torch and ort-cpu (None: the library default).
        input_size: H, W for every model (default: each model's own).
        lowering: SB lowering of the ONNX exports (default per backend).
        add_baselines: also time the baseline of every SB model.
        on_progress: called as ``(stage, done, total)`` after each timed round.
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
    rows: list[BenchRow] = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="sbdeploy-bench-") as tmp:
        for backend in backends:
            for batch in batches:
                fns = {}
                with contextlib.ExitStack() as stack:
                    for m in models:
                        opts = {"threads": threads} if backend == "ort-cpu" and threads else {}
                        runner: Runner = stack.enter_context(get_runner(backend, _artifact(m, backend, batch, Path(tmp), lowering), **opts))
                        feed = {runner.input_specs()[0].name: rng.standard_normal((batch, m.in_chans, *m.input_size), dtype=np.float32)}
                        fns[m.label] = (lambda r=runner, f=feed: (r.infer(f), None)[1])
                    stage = f"{backend} batch {batch}"
                    report_round = (lambda n, s=stage: on_progress(s, n, plan.iters or 0)) if on_progress else None
                    stats = measure_interleaved(fns, plan, on_round=report_round)
                rows += [BenchRow(m.label, backend, batch, m.macs, m.baseline, stats[m.label]) for m in models]
    settings = {
        "models": [m.label for m in models], "backends": list(backends), "batches": list(batches),
        "warmup": plan.warmup_s if plan.warmup_s is not None else plan.warmup_iters, "iters": plan.iters,
        "duration_s": plan.duration_s, "threads": threads, "lowering": lowering or "per backend default",
    }
    return BenchReport(rows=with_speedups(rows), environment=collect_environment(), settings=settings)
