"""Timing subjects with one method, SB beside its baseline: what ``sbdeploy bench`` and the pipeline time.

A subject is a model (its module on torch, its made files elsewhere) or a given ``.onnx`` file or engine;
per backend and batch all files are timed interleaved, so SB and baseline see the same machine; then, where a
network had a choice of files, its fastest file (chosen by a group of each backend's fastest where backends
compete) is timed again beside its baseline's fastest.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from sbdeploy.backends import get_runner
from sbdeploy.backends.ort import TF32_NOTES
from sbdeploy.bench.report import FASTEST, FINALISTS, BenchGroup, BenchReport, BenchRow, judged, measured_row, pairs_of
from sbdeploy.bench.stability import Limits
from sbdeploy.bench.stats import bounds
from sbdeploy.bench.timing import (
    GroupResult,
    LatencyStats,
    Pair,
    ProgressFn,
    TimingPlan,
    fair_plan,
    measure_group,
    round_progress,
)
from sbdeploy.environment import collect_environment
from sbdeploy.errors import ConfigError
from sbdeploy.files import DeployFile, describe_file
from sbdeploy.flops import count_macs
from sbdeploy.models import SB_OPTIONS, create_model, model_info
from sbdeploy.sources import Model
from sbdeploy.targets import run_options

BACKENDS = ("torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "trt", "ov-cpu")
DEFAULT_BACKENDS = ("torch", "ort-cpu")
"""What a checkpoint or zoo name is timed on unless told otherwise (a file: the backend that runs it)."""
Proof = tuple[str | None, str, str]
"""(file sha256, backend, precision): what one validation verdict and one timed row are about."""
CPU_ENGINES = ("ort-cpu", "ov-cpu")
"""The backends whose runners take a thread count."""


@dataclass(frozen=True)
class BenchSubject:
    """One row label to time: a model (its module for torch, its files for the other backends) or one given file."""

    label: str  # the rows' model name (a given file: its file name)
    arch: str
    macs: int  # per image, by the spec's rule
    baseline: str | None  # the label of the subject its speedup is measured against
    in_chans: int
    input_size: tuple[int, int]
    module: torch.nn.Module | None = None  # what the torch backends time (None for a given file)
    # (backend, batch, precision) -> the file that backend times there
    files: Mapping[tuple[str, int, str], DeployFile] = field(default_factory=dict)


def subjects_from_files(
    paths: Sequence[str | Path], backends: Sequence[str] | None, batches: Sequence[int]
) -> list[BenchSubject]:
    """One subject per given file, timed on the requested backends that run it (default: its own) at the batch sizes
    it takes; an SB file's baseline is a given file of the baseline's architecture and precision (same target first).
    Subjects are labelled by file name, or by path where two names are alike (two run folders' files).
    """
    files = [describe_file(p) for p in paths]
    if len({f.path.resolve() for f in files}) != len(files):
        raise ConfigError(f"a file is given twice ({', '.join(map(str, paths))}); give each once")
    labels = {str(f.path): f.name for f in files}
    if len(set(labels.values())) != len(files):  # two names alike: labelled by path
        labels = {path: path for path in labels}
    macs: dict[str, int] = {}
    subjects = []
    for f in files:
        if f.arch is None or f.input_shape is None:
            build = " and build it with `sbdeploy build-engine`" if f.kind == "engine" else ""
            raise ConfigError(
                f"{f.name} carries no sbdeploy metadata (arch, input shape); export it with `sbdeploy export`{build}"
            )
        in_chans, h, w = f.input_shape
        key = repr((f.arch, sorted(f.options.items()), f.input_shape))
        if key not in macs:
            options = {k: v for k, v in f.options.items() if k in ("num_classes", "in_chans", *SB_OPTIONS)}
            macs[key] = count_macs(create_model(f.arch, **options).eval(), (h, w), in_chans)
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
        arch = model_info(f.arch).baseline
        candidates = [o for o in files if arch is not None and o.arch == arch and o.precision == f.precision]
        base = next((o for o in candidates if o.target == f.target), candidates[0] if candidates else None)
        label, base_label = labels[str(f.path)], labels[str(base.path)] if base else None
        subjects.append(BenchSubject(label, f.arch, macs[key], base_label, in_chans, (h, w), files=timed))
    return subjects


def subjects_from_made(
    models: Sequence[Model], made: Mapping[str, DeployFile], uses: Mapping[tuple[str, str, int, str], str]
) -> list[BenchSubject]:
    """One subject per model, its files the made artifacts each backend times."""
    subjects = []
    for m in models:
        files = {(b, n, p): made[name] for (label, b, n, p), name in uses.items() if label == m.label}
        subjects.append(BenchSubject(m.label, m.arch, m.macs, m.baseline, m.in_chans, m.input_size, m.module, files))
    return subjects


@dataclass(frozen=True)
class _Entry:
    """One callable of a group: a subject's file (None: its module, on torch) on a backend in a precision."""

    subject: BenchSubject
    backend: str
    precision: str
    file: DeployFile | None

    @property
    def key(self) -> str:
        """Its name in a backend's group: ``digits_resnet20_sb fp32``."""
        return f"{self.subject.label} {self.precision}"

    @property
    def fastest_key(self) -> str:
        """Its name among the fastest files, where backends mix: ``digits_resnet20_sb ov-cpu bf16``."""
        return f"{self.subject.label} {self.backend} {self.precision}"


@dataclass
class _GroupTimer:
    """Opens a group's runners (each backend's options, a precision's run-time setting), times them interleaved
    under :func:`fair_plan`, and keeps the runners' notes."""

    plan: TimingPlan
    threads: int | None
    cuda_graph: bool
    notes: list[str]
    on_progress: ProgressFn | None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __call__(
        self,
        stage: str,
        named: Mapping[str, _Entry],
        batch: int,
        pairs: Sequence[Pair],
        ratios: Sequence[tuple[str, str]],
    ) -> GroupResult:
        with contextlib.ExitStack() as stack:
            fns, runners = {}, []
            for key, e in named.items():
                opts: dict[str, object] = {"threads": self.threads} if e.backend in CPU_ENGINES and self.threads else {}
                if e.backend == "trt" and self.cuda_graph:
                    opts["cuda_graph"] = True
                opts |= run_options(e.backend, e.precision)  # bf16 on ov-cpu: the fp32 file with the bf16 hint
                artifact = e.subject.module if e.file is None else e.file.path
                runner = stack.enter_context(get_runner(e.backend, artifact, **opts))
                shape = (batch, e.subject.in_chans, *e.subject.input_size)
                feed = {runner.input_specs()[0].name: self.rng.standard_normal(shape, dtype=np.float32)}
                fns[key] = runner.timed_call(feed)
                runners.append((e.subject.label, runner))
            progress = round_progress(stage, self.on_progress)
            plan = fair_plan(self.plan, [r.idle_spin_s for _, r in runners])
            result = measure_group(fns, plan, pairs=pairs, ratios=ratios, on_round=progress)
            for label, runner in runners:  # after the runs: a CUDA graph's capture may have failed
                self.notes += [n for n in (f"{label}: {n}" for n in runner.notes) if n not in self.notes]
        return result


def _row(result: GroupResult, e: _Entry, batch: int, key: str | None = None, **fields: Any) -> BenchRow:
    file = {} if e.file is None else {"target": e.file.target, "file": e.file.name, "sha256": e.file.sha256}
    s = e.subject
    return measured_row(result, key or e.key, s.label, e.backend, batch, s.macs, s.baseline, **file, **fields)


T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def _fastest_by(items: Iterable[T], key: Callable[[T], K], ms: Callable[[T], float]) -> dict[K, T]:
    """Per ``key``, the item of least ``ms`` (the first among equals), in the order the keys first appear."""
    best: dict[K, T] = {}
    for item in items:
        k = key(item)
        if k not in best or ms(item) < ms(best[k]):
            best[k] = item
    return best


def fastest_entries(
    rows: Sequence[BenchRow], subjects: Sequence[BenchSubject], batch: int, passed: Collection[Proof] | None = None
) -> list[_Entry]:
    """The finalists for each subject's fastest file at ``batch`` among ``rows``: its fastest on each backend (torch's
    modules are no deploy file; with ``passed``, only the (sha256, backend, precision) that passed validation), where
    an SB subject and its baseline are both there and some subject had a choice of files or its baseline's fastest was
    timed in another group. Backends were timed in groups of their own, so which backend's is the fastest is for a
    group of the finalists together to say (:func:`fastest_of`)."""
    by_label = {s.label: s for s in subjects}
    timed = [
        r
        for r in rows
        if (passed is None or (r.sha256, r.backend, r.precision) in passed)
        and r.batch == batch
        and r.file is not None
        and r.model in by_label
    ]
    choices = Counter(r.model for r in timed)
    # (subject, backend) -> its fastest row there; then subject -> its fastest of those
    finalists = _fastest_by(timed, lambda r: (r.model, r.backend), lambda r: r.stats.median_ms)
    best = _fastest_by(finalists.values(), lambda r: r.model, lambda r: r.stats.median_ms)
    apart = any(
        (base := best.get(by_label[m].baseline or "")) is not None
        and (base.backend, base.precision) != (r.backend, r.precision)
        for m, r in best.items()
    )
    paired = any(by_label[m].baseline in best for m in best)
    if not paired or (not apart and all(n == 1 for n in choices.values())):
        return []
    return [
        _Entry(by_label[m], r.backend, r.precision, by_label[m].files[(r.backend, batch, r.precision)])
        for (m, _), r in finalists.items()
    ]


def fastest_of(entries: Sequence[_Entry], stats: Mapping[str, LatencyStats]) -> list[_Entry]:
    """Each subject's fastest among ``entries``, by ``stats`` (by :attr:`_Entry.fastest_key`) of one group that timed
    them together."""
    return list(_fastest_by(entries, lambda e: e.subject.label, lambda e: stats[e.fastest_key].median_ms).values())


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
    baseline: str | None = None,
    notes: Sequence[str] = (),
    on_progress: ProgressFn | None = None,
    passed: Collection[Proof] | None = None,
) -> BenchReport:
    """Time every subject's file (or module, on torch) per backend and batch, all files of a (backend, batch)
    interleaved, each SB file paired with its baseline's of the same precision, each fp16/int8 file with its fp32;
    ``baseline``: the label of the one subject every other one is paired with (the report says which got no pair);
    ``passed``: the (sha256, backend, precision) that passed validation, the only ones a fastest file is chosen from;
    then per batch the fastest-file groups (:func:`fastest_entries`, :func:`fastest_of`)."""
    if threads is not None:
        torch.set_num_threads(threads)
    rows: list[BenchRow] = []
    groups: list[BenchGroup] = []
    run_notes = list(notes)
    limits = Limits.of(plan)
    group = _GroupTimer(plan, threads, cuda_graph, run_notes, on_progress)
    for backend in backends:
        for batch in batches:
            entries: list[_Entry] = []
            for s in subjects:
                if backend.startswith("torch"):
                    entries += [_Entry(s, backend, "fp32", None)] if s.module is not None else []
                else:
                    entries += [
                        _Entry(s, backend, p, s.files[(backend, batch, p)])
                        for p in precisions
                        if (backend, batch, p) in s.files
                    ]
            if not entries:
                continue
            keys = {(e.subject.label, e.precision): e.key for e in entries}
            described = {e.key: (e.subject.macs, keys.get((e.subject.baseline or "", e.precision))) for e in entries}
            fp32 = {key: keys.get((label, "fp32"), "") for (label, _), key in keys.items()}
            reduced = [(fp32[key], key) for key in keys.values() if fp32[key] not in ("", key)]
            result = group(f"{backend} batch {batch}", {e.key: e for e in entries}, batch, pairs_of(described), reduced)
            groups.append(BenchGroup.of(backend, batch, result.record, limits))
            for e in entries:
                vs_fp32, vs_fp32_interval = result.ratios.get((fp32[e.key], e.key), (None, None))
                low, high = bounds(vs_fp32_interval)
                fields = {"precision": e.precision, "vs_fp32": vs_fp32, "vs_fp32_low": low, "vs_fp32_high": high}
                rows.append(_row(result, e, batch, **fields))
    rows = judged(rows, groups, limits)
    fastest, finalists = [], []
    for batch in batches:  # each network's fastest file, where it had a choice, against its baseline's
        entries = fastest_entries(rows, subjects, batch, passed)
        if len(entries) > len({e.subject.label for e in entries}):  # a network's finalists on several engines
            named = {e.fastest_key: e for e in entries}
            result = group(f"fastest-file finalists batch {batch}", named, batch, [], [])
            chosen_by = BenchGroup.of(FINALISTS, batch, result.record, limits)
            groups.append(chosen_by)
            finalists += [  # unpaired figures, flagged as their group is (its flags count against the picks too)
                dataclasses.replace(
                    _row(result, e, batch, key=e.fastest_key, precision=e.precision), flags=chosen_by.flags
                )
                for e in entries
            ]
            entries = fastest_of(entries, result.stats)
        if entries:
            keys = {e.subject.label: e.fastest_key for e in entries}
            described = {e.fastest_key: (e.subject.macs, keys.get(e.subject.baseline or "")) for e in entries}
            named = {e.fastest_key: e for e in entries}
            result = group(f"fastest files batch {batch}", named, batch, pairs_of(described), [])
            groups.append(BenchGroup.of(FASTEST, batch, result.record, limits))
            fastest += [_row(result, e, batch, key=e.fastest_key, precision=e.precision) for e in entries]
    if baseline is not None:
        compared = {r.model for r in rows if r.speedup is not None}
        run_notes += [
            f"{s.label}: no speedup over {baseline}: no backend, batch size and precision timed both"
            for s in subjects
            if s.label != baseline and s.label not in compared
        ]
    files = {f.path: f for s in subjects for f in s.files.values()}
    forms: dict[str, str] = {}  # what each backend timed: the deploy target of its files, or the training code
    for backend in backends:
        timed = {f.target or "foreign file" for s in subjects for (b, _, _), f in s.files.items() if b == backend}
        forms[backend] = "training code" if backend.startswith("torch") else ", ".join(sorted(timed)) or "-"
    settings = {
        "models": [s.label for s in subjects],
        "baseline": baseline,
        "backends": list(backends),
        "batches": list(batches),
        "precisions": list(precisions),
        **plan.settings(),
        "threads": threads,
        "target": target,
        "forms": forms,
        "fp16": "fp16" in precisions,
        "cuda_graph": cuda_graph,
        "engines": {
            f.name: {"profile": list(f.profile or ()), "precision": f.precision}
            for f in files.values()
            if f.kind == "engine"
        },
        "files": [f.to_dict() for f in files.values()],
        # how the fp32 files computed, as validate judges them
        "notes": run_notes + [TF32_NOTES[b] for b in backends if b in TF32_NOTES and "fp32" in precisions],
    }
    fastest = judged(fastest, groups, limits, fastest=True)
    return BenchReport(
        rows=rows,
        environment=collect_environment(),
        settings=settings,
        groups=groups,
        fastest=fastest,
        finalists=finalists,
    )
