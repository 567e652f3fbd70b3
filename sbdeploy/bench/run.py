"""Timing subjects with one method, SB beside its baseline: what ``sbdeploy bench`` and the pipeline time.

What is timed is always a file (or, for ``torch``, the module): a model's files made by
:class:`sbdeploy.flow.Flow`, or an ``.onnx`` file or TensorRT engine given as it is,
described by its metadata or sidecar, its MACs counted from the architecture by the
spec's rule, and paired with a baseline among the given files by architecture. For each
backend and batch size all files are timed together, interleaved
(:func:`~sbdeploy.bench.timing.measure_group`), so SB and baseline see the same machine;
each group's length, intervals, machine load and flags go into the report
(:mod:`sbdeploy.bench.report`). Every row names its file, sha256, precision and form.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from sbdeploy.backends import get_runner
from sbdeploy.backends.base import Runner
from sbdeploy.backends.ort import TF32_NOTES
from sbdeploy.bench.report import BenchGroup, BenchReport, BenchRow, judged, pairs_of
from sbdeploy.bench.stability import Limits
from sbdeploy.bench.timing import TimingPlan, measure_group, round_progress
from sbdeploy.environment import collect_environment
from sbdeploy.errors import ConfigError
from sbdeploy.files import DeployFile, describe_file
from sbdeploy.flops import count_macs
from sbdeploy.models import create_model, model_info
from sbdeploy.sources import Model

BACKENDS = ("torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "trt")
DEFAULT_BACKENDS = ("torch", "ort-cpu")
"""What a checkpoint or zoo name is timed on unless told otherwise (a file: the backend that runs it)."""


@dataclass(frozen=True)
class BenchSubject:
    """One row label to time: a model (its module for torch, its files for the other backends) or one given file.

    Attributes:
        label: the rows' model name (a given file: its file name).
        arch: the registry architecture.
        macs: per image, by the spec's rule.
        baseline: the label of the subject its speedup is measured against.
        in_chans, input_size: the input geometry.
        module: what the torch backends time (None for a given file).
        files: (backend, batch, precision) -> the file that backend times there.
    """

    label: str
    arch: str
    macs: int
    baseline: str | None
    in_chans: int
    input_size: tuple[int, int]
    module: nn.Module | None = None
    files: Mapping[tuple[str, int, str], DeployFile] = field(default_factory=dict)


def subjects_from_files(
    paths: Sequence[str | Path], backends: Sequence[str] | None, batches: Sequence[int]
) -> list[BenchSubject]:
    """One subject per given file, paired with a baseline among the files by architecture.

    A file is timed on the requested backends that run its kind (default: its own,
    :meth:`~sbdeploy.artifacts.DeployFile.default_backend`), at its fixed batch or at the
    requested batch sizes it takes. An SB file's baseline is a given file of the
    registry baseline's architecture with the same precision, of the same target if
    there is one. MACs come from the architecture and input size by the spec's rule.
    """
    files = [describe_file(p) for p in paths]
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ConfigError(f"two of the given files share a name ({names}); rows are labelled by file name")
    macs: dict[str, int] = {}
    for f in files:
        if f.arch is None or f.input_shape is None:
            build = " and build it with `sbdeploy build-engine`" if f.kind == "engine" else ""
            raise ConfigError(
                f"{f.name} carries no sbdeploy metadata (arch, input shape); export it with `sbdeploy export`{build}"
            )
        key = repr((f.arch, sorted(f.options.items()), f.input_shape))
        if key not in macs:
            options = {k: v for k, v in f.options.items() if k in ("num_classes", "in_chans", "sampling")}
            in_chans, h, w = f.input_shape
            macs[key] = count_macs(create_model(f.arch, **options).eval(), (h, w), in_chans)

    def baseline_of(f: DeployFile) -> DeployFile | None:
        arch = model_info(str(f.arch)).baseline
        candidates = [o for o in files if arch is not None and o.arch == arch and o.precision == f.precision]
        return next((o for o in candidates if o.target == f.target), candidates[0] if candidates else None)

    subjects = []
    for f in files:
        assert f.arch is not None and f.input_shape is not None
        in_chans, h, w = f.input_shape
        runs_on = [b for b in (backends or [f.default_backend()]) if f.runs_on(b)]
        timed = {(b, n, f.precision): f for b in runs_on for n in f.batch_sizes(batches)}
        if not timed and not runs_on:
            raise ConfigError(
                f"{f.name} would not be timed: none of --backends runs it "
                "(an ONNX file runs on ort-cpu, ort-cuda or ort-trt; an engine on trt)"
            )
        if not timed:
            assert f.profile is not None  # only an engine's profile can exclude every batch
            raise ConfigError(
                f"{f.name} would not be timed: its profile takes batches {f.profile[0]}..{f.profile[2]}, "
                f"none of --batch {','.join(map(str, batches))}"
            )
        base = baseline_of(f)
        key = repr((f.arch, sorted(f.options.items()), f.input_shape))
        subjects.append(
            BenchSubject(f.name, f.arch, macs[key], base.name if base else None, in_chans, (h, w), files=timed)
        )
    return subjects


def subjects_from_made(
    models: Sequence[Model], made: Mapping[str, DeployFile], uses: Mapping[tuple[str, str, int, str], str]
) -> list[BenchSubject]:
    """One subject per model, its files the made artifacts each backend times."""
    subjects = []
    for m in models:
        files = {
            (backend, batch, precision): made[name]
            for (label, backend, batch, precision), name in uses.items()
            if label == m.label
        }
        subjects.append(
            BenchSubject(m.label, m.arch, m.macs, m.baseline, m.in_chans, m.input_size, module=m.module, files=files)
        )
    return subjects


def time_subjects(
    subjects: Sequence[BenchSubject],
    *,
    backends: Sequence[str],
    batches: Sequence[int],
    precisions: Sequence[str] = ("fp32",),
    plan: TimingPlan = TimingPlan(),
    threads: int | None = None,
    cuda_graph: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> tuple[list[BenchRow], list[BenchGroup], list[str]]:
    """Time every subject's file (or module, on torch) per backend and batch, all files of a (backend, batch) interleaved.

    Each SB file is paired with its baseline's file of the same precision (the speedup's
    interval over paired turns). Returns the rows (speedups and flags filled in), how each
    group was measured, and notes for the report.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows: list[BenchRow] = []
    groups: list[BenchGroup] = []
    notes: list[str] = []
    limits = Limits.of(plan)
    for backend in backends:
        for batch in batches:
            entries: list[tuple[BenchSubject, str, DeployFile | None]] = []
            for s in subjects:
                if backend.startswith("torch"):
                    if s.module is not None:
                        entries.append((s, "fp32", None))
                    continue
                entries += [(s, p, s.files[(backend, batch, p)]) for p in precisions if (backend, batch, p) in s.files]
            if not entries:
                continue
            fns = {}
            keys = {(s.label, precision): f"{s.label} {precision}" for s, precision, _ in entries}
            described = {keys[(s.label, p)]: (s.macs, keys.get((s.baseline or "", p))) for s, p, _ in entries}
            # each fp16/int8 file against its model's fp32 file, timed in this group
            reduced = [
                (keys[(s.label, "fp32")], keys[(s.label, p)])
                for s, p, _ in entries
                if p != "fp32" and (s.label, "fp32") in keys
            ]
            with contextlib.ExitStack() as stack:
                runners: list[Runner] = []
                for s, precision, f in entries:
                    key = keys[(s.label, precision)]
                    opts: dict[str, object] = {"threads": threads} if backend == "ort-cpu" and threads else {}
                    if backend == "trt" and cuda_graph:
                        opts["cuda_graph"] = True
                    runner: Runner = stack.enter_context(get_runner(backend, s.module if f is None else f.path, **opts))
                    runners.append(runner)
                    feed = {
                        runner.input_specs()[0].name: rng.standard_normal(
                            (batch, s.in_chans, *s.input_size), dtype=np.float32
                        )
                    }
                    fns[key] = runner.timed_call(feed)
                result = measure_group(
                    fns,
                    plan,
                    pairs=pairs_of(described),
                    ratios=reduced,
                    on_round=round_progress(f"{backend} batch {batch}", on_progress),
                )
                for (s, _, _), r in zip(entries, runners):
                    notes += [f"{s.label}: {n}" for n in r.notes if f"{s.label}: {n}" not in notes]
            groups.append(BenchGroup.of(backend, batch, result.record, limits))
            versus = result.ratios
            for s, precision, f in entries:
                key = keys[(s.label, precision)]
                interval = result.speedups[key].interval if key in result.speedups else None
                fp32_ratio, fp32_interval = versus.get((keys.get((s.label, "fp32"), ""), key), (None, None))
                rows.append(
                    BenchRow(
                        s.label,
                        backend,
                        batch,
                        s.macs,
                        s.baseline,
                        result.stats[key],
                        precision=precision,
                        speedup_low=interval.low if interval else None,
                        speedup_high=interval.high if interval else None,
                        target=None if f is None else f.target,
                        file=None if f is None else f.name,
                        sha256=None if f is None else f.sha256,
                        vs_fp32=fp32_ratio,
                        vs_fp32_low=fp32_interval.low if fp32_interval else None,
                        vs_fp32_high=fp32_interval.high if fp32_interval else None,
                    )
                )
    return judged(rows, groups, limits), groups, notes


def bench_settings(
    subjects: Sequence[BenchSubject],
    backends: Sequence[str],
    batches: Sequence[int],
    precisions: Sequence[str],
    plan: TimingPlan,
    threads: int | None,
    target: str | None,
    cuda_graph: bool,
    notes: list[str],
) -> dict[str, object]:
    """The settings block of a bench report: what ran, how long, on which files."""
    files = {f.name: f for s in subjects for f in s.files.values()}
    engines = {
        f.name: {"profile": list(f.profile or ()), "precision": f.precision}
        for f in files.values()
        if f.kind == "engine"
    }
    forms: dict[str, str] = {}  # what each backend timed: the deploy target of its files, or the training code
    for backend in backends:
        if backend.startswith("torch"):
            forms[backend] = "training code"
        else:
            timed = {f.target or "foreign file" for s in subjects for (b, _, _), f in s.files.items() if b == backend}
            forms[backend] = ", ".join(sorted(timed)) or "-"
    notes = notes + [
        TF32_NOTES[b] for b in backends if b in TF32_NOTES and "fp32" in precisions
    ]  # as validate judges them
    return {
        "models": [s.label for s in subjects],
        "backends": list(backends),
        "batches": list(batches),
        "precisions": list(precisions),
        **plan.settings(),
        "threads": threads,
        "target": target,
        "forms": forms,
        "fp16": "fp16" in precisions,
        "cuda_graph": cuda_graph,
        "engines": engines,
        "files": [f.to_dict() for f in files.values()],
        "notes": notes,
    }


def bench_subjects(
    subjects: Sequence[BenchSubject],
    *,
    backends: Sequence[str],
    batches: Sequence[int],
    precisions: Sequence[str],
    plan: TimingPlan,
    threads: int | None = None,
    target: str | None = None,
    cuda_graph: bool = False,
    notes: Sequence[str] = (),
    on_progress: Callable[[str, int, int], None] | None = None,
) -> BenchReport:
    """Time ``subjects`` (:func:`time_subjects`) and report the rows with the settings and the machine."""
    rows, groups, run_notes = time_subjects(
        subjects,
        backends=backends,
        batches=batches,
        precisions=precisions,
        plan=plan,
        threads=threads,
        cuda_graph=cuda_graph,
        on_progress=on_progress,
    )
    settings = bench_settings(
        subjects, backends, batches, precisions, plan, threads, target, cuda_graph, [*notes, *run_notes]
    )
    return BenchReport(rows=rows, environment=collect_environment(), settings=settings, groups=groups)
