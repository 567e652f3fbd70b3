"""``sbdeploy validate``: run the training code and every artifact on the same inputs, compare.

Running and comparing are separate steps (as in Polygraphy): the inputs are random
batches at the sizes the artifact takes and real images from a data source;
:func:`validate` runs PyTorch and every artifact on them and turns each pair into a
:class:`CheckResult` with :mod:`sbdeploy.validate.compare`, plus dataset accuracy per
artifact. Every check names the file it judges (and its sha256) and the reference it
is judged against, and uses the tolerance of that file's target and precision
(:meth:`sbdeploy.targets.Target.tolerance`). ``bool(report)`` is the verdict;
:func:`merge_reports` joins the reports of several references (the pipeline's SB
model and its baseline) into one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from sbdeploy.backends.base import Runner
from sbdeploy.backends.ort import FP32_TF32, TF32_NOTES
from sbdeploy.calibration import normalize
from sbdeploy.checkpoint import Checkpoint, load_checkpoint
from sbdeploy.environment import Environment, collect_environment
from sbdeploy.errors import ArtifactError, ConfigError
from sbdeploy.files import DeployFile, describe_file
from sbdeploy.targets import get_target
from sbdeploy.validate.compare import (
    DEFAULT_TOLERANCES,
    TOLERANCE_REASONS,
    OutputStats,
    Tolerance,
    output_stats,
    verdict,
)


@dataclass(frozen=True)
class Artifact:
    """One thing to validate: a file and the backend that runs it."""

    backend: str  # ort-cpu, ort-cuda, ort-trt, trt
    path: Path
    precision: str  # fp32, tf32 (an fp32 file run with TF32: an engine built with it, or on ort-trt), fp16, int8
    batch_sizes: tuple[int, ...]  # random-batch sizes to try (engine profiles: min, opt, max)
    max_batch: int  # largest batch one call may take
    sha256: str = ""  # of the file
    target: str | None = None  # the deploy target of its form (None: not written by sbdeploy)
    tf32: bool | None = None  # an fp32 run on a GPU: whether it may use TF32 tensor cores (None: not such a run)
    file_info: DeployFile | None = field(default=None, compare=False, repr=False)  # what its metadata says it is

    @property
    def file(self) -> str:
        return self.path.name

    def to_dict(self) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "file_info"}
        return {**data, "path": str(self.path), "file": self.file}


@dataclass(frozen=True)
class InputCase:
    """A named input batch, with labels when it comes from a dataset."""

    name: str
    images: np.ndarray  # [N, C, H, W] float32, normalized as the model expects
    labels: np.ndarray | None = None


INT8_RANDOM_NOTE = "int8 is judged on real images: noise lies outside its calibrated ranges"
"""Why an int8 artifact's checks on random batches are reported but not judged."""


@dataclass(frozen=True)
class CheckResult:
    """One artifact against PyTorch on one input case."""

    backend: str
    precision: str
    case: str
    stats: OutputStats
    tolerance: Tolerance
    passed: bool
    reason: str
    file: str = ""  # the file judged
    sha256: str = ""  # its sha256
    target: str | None = None  # its deploy target
    reference: str = ""  # the checkpoint (or zoo name) it is judged against
    judged: bool = True  # False: reported for information, not part of the verdict (int8 on random inputs)

    @property
    def verdict_text(self) -> str:
        """``pass``, ``FAIL: reason``, or ``info: ...`` for a check outside the verdict."""
        if not self.judged:
            return f"info ({INT8_RANDOM_NOTE}){'' if self.passed else f': {self.reason}'}"
        return "pass" if self.passed else f"FAIL: {self.reason}"

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["tolerance"] = self.tolerance.describe()
        return data


@dataclass(frozen=True)
class AccuracyResult:
    """Top-1/top-5 accuracy of PyTorch or one artifact on a labelled dataset."""

    backend: str  # "torch", or "BACKEND PRECISION" of the artifact
    dataset: str
    samples: int
    top1: float
    top5: float | None
    delta_top1: float  # artifact top-1 minus PyTorch top-1, in points of percent
    file: str | None = None  # the artifact's file (None: PyTorch itself)
    reference: str = ""


@dataclass
class ValidationReport:
    """Every check and accuracy of one validate run; ``bool()`` is the verdict."""

    checkpoint: str
    artifacts: list[Artifact]
    checks: list[CheckResult]
    accuracy: list[AccuracyResult]
    environment: Environment
    tolerances: dict[str, Tolerance] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(c.judged for c in self.checks) and all(c.passed for c in self.checks if c.judged)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.judged and not c.passed]

    def file_verdicts(self) -> dict[str, bool]:
        """Per file judged: whether every check of it that counts passed."""
        verdicts: dict[str, bool] = {}
        for c in self.checks:
            verdicts[c.file] = verdicts.get(c.file, True) and (c.passed or not c.judged)
        return verdicts

    def to_dict(self) -> dict[str, object]:
        return {
            "passed": bool(self),
            "checkpoint": self.checkpoint,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "tolerances": {k: t.describe() for k, t in self.tolerances.items()},
            "checks": [c.to_dict() for c in self.checks],
            "accuracy": [asdict(a) for a in self.accuracy],
            "environment": self.environment.to_dict(),
        }


def random_cases(batch_sizes: Sequence[int], shape: tuple[int, int, int], seed: int = 0) -> list[InputCase]:
    """Standard-normal batches (the model's normalized input space) of each size."""
    rng = np.random.default_rng(seed)
    return [
        InputCase(f"random b{b}", rng.standard_normal((b, *shape), dtype=np.float32)) for b in sorted(set(batch_sizes))
    ]


def run_batched(runner: Runner, images: np.ndarray, max_batch: int, fixed_batch: int | None = None) -> np.ndarray:
    """Run ``images`` through ``runner`` in chunks; pad the last chunk for fixed-batch models."""
    name = runner.input_specs()[0].name
    outputs = []
    step = fixed_batch or max_batch
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        n = len(chunk)
        if fixed_batch and n < fixed_batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed_batch - n, axis=0)])
        out = next(iter(runner.infer({name: np.ascontiguousarray(chunk)}).values()))
        outputs.append(np.asarray(out)[:n])
    return np.concatenate(outputs)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float | None]:
    """Top-1 and top-5 accuracy (top-5 None with 5 classes or fewer)."""
    top1 = float(np.mean(np.argmax(logits, axis=1) == labels))
    if logits.shape[1] <= 5:
        return top1, None
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return top1, float(np.mean([label in row for label, row in zip(labels, top5)]))


RunnerFactory = Callable[[Artifact], Runner]

DYNAMIC_BATCHES = (1, 2, 8)
"""Random-batch sizes tried on an ONNX model with a dynamic batch."""


def artifact_of(file: DeployFile, backend: str | None = None) -> Artifact:
    """An artifact to validate: ``file`` on ``backend`` (default: the file's own), with the batch sizes it takes.

    A fixed batch is tried at that batch; a dynamic ONNX batch at :data:`DYNAMIC_BATCHES`
    (one call takes up to 32); an engine at its profile's min, opt and max.

    An fp32 file run with TF32 is judged as ``tf32``, by the TF32 tolerance: an engine built
    with TF32 (its sidecar says so), or any fp32 ONNX on ``ort-trt`` (ONNX Runtime's TensorRT
    provider cannot clear TF32); on ``ort-cuda`` it runs without TF32 and is judged as fp32
    (:data:`sbdeploy.backends.ort.FP32_TF32`). ``tf32`` records which.
    """
    backend = backend or file.default_backend()
    if not file.runs_on(backend):
        raise ConfigError(
            f"{file.name} is an {'engine' if file.kind == 'engine' else 'ONNX file'}; {backend} does not run it"
        )
    sizes: tuple[int, ...]
    if file.batch is not None:
        sizes, max_batch = (file.batch,), file.batch
    elif file.profile is not None:
        sizes = tuple(sorted(set(file.profile)))
        max_batch = sizes[-1]
    else:
        sizes, max_batch = DYNAMIC_BATCHES, 32
    precision, tf32 = file.precision, None
    if file.kind == "engine" and precision in ("fp32", "tf32"):
        tf32 = precision == "tf32"  # from the sidecar (describe_file)
    elif precision == "fp32" and backend in FP32_TF32:
        tf32 = FP32_TF32[backend]
        precision = "tf32" if tf32 else precision
    return Artifact(backend=backend, path=file.path, precision=precision, batch_sizes=sizes, max_batch=max_batch,
                    sha256=file.sha256, target=file.target, tf32=tf32, file_info=file)  # fmt: skip


def check_same_model(file: DeployFile, checkpoint: Checkpoint) -> None:
    """ArtifactError, in one line naming both models, when ``file`` was made from another model than ``checkpoint``.

    Compared from the file's metadata (an engine: its sidecar's copy): architecture,
    options, input shape and the sha256 of the weights it was exported from. A file
    without sbdeploy metadata passes (there is nothing to compare; the run itself judges it).
    """
    differences = file.differences_from(checkpoint.config, checkpoint.weights_sha256)
    if not differences:
        return
    where = f"the checkpoint {checkpoint.path}"
    if file.arch != checkpoint.config.arch:
        what = f"{file.name} holds a {file.arch} network, {where} a {checkpoint.config.arch}"
    else:
        what = f"{file.name} and {where} are both {file.arch} but not the same model ({'; '.join(differences)})"
    raise ArtifactError(f"{what}: validate judges a file against the checkpoint it was exported from; give that checkpoint, "
                        f"or export this one (`sbdeploy export {checkpoint.path} -o FILE`)")  # fmt: skip


def engine_artifact(path: str | Path) -> Artifact:
    """Describe a TensorRT engine from its sidecar: precision, target and the profile's min/opt/max batch.

    An fp32 engine built with TF32 (the sidecar's ``tf32``, TensorRT's default) is judged as
    ``tf32``, by the TF32 tolerance; one built with ``--no-tf32`` as ``fp32``
    (:func:`sbdeploy.artifacts.describe_file`).
    """
    return artifact_of(describe_file(path), "trt")


def tolerance_for(artifact: Artifact, overrides: dict[str, Tolerance] | None = None) -> Tolerance:
    """The pass criteria of ``artifact``: an override for its precision, else its target's policy (else the defaults)."""
    if overrides and artifact.precision in overrides:
        return overrides[artifact.precision]
    if artifact.target is not None:
        return get_target(artifact.target).tolerance(artifact.precision)
    if artifact.precision not in DEFAULT_TOLERANCES:
        raise ConfigError(f"no tolerance for {artifact.precision!r} artifacts; give one with --atol/--rtol")
    return DEFAULT_TOLERANCES[artifact.precision]


def dataset_case(source: str, config: object, *, limit: int | None = None) -> InputCase:
    """The test split of a data source, resized and normalized as the checkpoint expects."""
    from sbdeploy.checkpoint import CheckpointConfig
    from sbdeploy.data import open_source, to_float

    assert isinstance(config, CheckpointConfig)
    data = open_source(source, size=config.input_size[0])
    images = to_float(data.test_images).numpy()
    labels = data.test_labels.numpy()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if images.shape[1] != config.in_chans:
        raise ConfigError(
            f"data source {source!r} has {images.shape[1]} channels but the model takes {config.in_chans}"
        )
    return InputCase(f"{data.source} test", normalize(images, config.mean, config.std), labels.astype(np.int64))


def validate(
    checkpoint: str | Path | Checkpoint,
    artifacts: Sequence[Artifact],
    *,
    runner_factory: RunnerFactory,
    dataset: InputCase | None = None,
    tolerances: dict[str, Tolerance] | None = None,
    input_size: tuple[int, int] | None = None,
    seed: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> ValidationReport:
    """Run PyTorch and each artifact on the same inputs and compare every output.

    Args:
        checkpoint: checkpoint folder (or a loaded one); its model is the reference.
        artifacts: what to check, each with its backend and precision.
        runner_factory: builds the runner of an artifact (see ``sbdeploy.backends``).
        dataset: labelled real images (normalized) for the accuracy rows and one more check.
        tolerances: pass criteria per precision that override each artifact's target policy.
        input_size: H, W of the random batches; defaults to the checkpoint's.
        seed: seed of the random batches.
        on_progress: called as ``(what runs now, steps done, steps in all)`` before each run on an input case.

    Raises:
        ArtifactError: an artifact's metadata names another model than the checkpoint
            (:func:`check_same_model`); checked for every artifact before anything runs.
    """
    from sbdeploy.backends.torch_runner import TorchRunner

    if not artifacts:
        raise ConfigError("nothing to validate: give an ONNX file or an engine (or let validate export one)")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    reference_name = str(ckpt.path)
    used: dict[str, Tolerance] = {}
    h, w = input_size or ckpt.config.input_size
    shape = (ckpt.config.in_chans, h, w)
    for artifact in artifacts:
        if artifact.file_info is not None:
            check_same_model(artifact.file_info, ckpt)
    cases_per_artifact = [len(set(a.batch_sizes)) + (dataset is not None) for a in artifacts]
    total = sum(cases_per_artifact) + (dataset is not None and dataset.labels is not None)
    done = 0

    def step(text: str) -> None:
        nonlocal done
        if on_progress is not None:
            on_progress(text, done, total)
        done += 1

    checks: list[CheckResult] = []
    accuracies: list[AccuracyResult] = []
    reference_cache: dict[str, np.ndarray] = {}  # by case name: one name, one set of images (drawn once, below)
    sizes = sorted({b for a in artifacts for b in a.batch_sizes})
    random = {int(case.images.shape[0]): case for case in random_cases(sizes, shape, seed)}
    with TorchRunner(ckpt.model) as torch_runner:

        def reference(case: InputCase) -> np.ndarray:
            if case.name not in reference_cache:
                reference_cache[case.name] = run_batched(torch_runner, case.images, max_batch=64)
            return reference_cache[case.name]

        if dataset is not None and dataset.labels is not None:
            step(f"torch on {dataset.name}")
            top1, top5 = accuracy(reference(dataset), dataset.labels)
            accuracies.append(
                AccuracyResult("torch", dataset.name, len(dataset.labels), top1, top5, 0.0, reference=reference_name)
            )
        for artifact in artifacts:
            if artifact.precision == "int8" and dataset is None:
                raise ConfigError(f"{artifact.file} is int8: its scales are calibrated on real images, so it is judged on real "
                                  "images; give --data SOURCE (the checkpoint names no dataset)")  # fmt: skip
            cases = [random[b] for b in sorted(set(artifact.batch_sizes))] + ([dataset] if dataset is not None else [])
            tolerance = tolerance_for(artifact, tolerances)
            used[f"{artifact.target} {artifact.precision}" if artifact.target else artifact.precision] = tolerance
            with runner_factory(artifact) as runner:
                fixed = runner.input_specs()[0].shape[0]
                for case in cases:
                    step(f"{artifact.file} on {artifact.backend}: {case.name}")
                    out = run_batched(runner, case.images, artifact.max_batch, fixed_batch=fixed)
                    stats = output_stats(reference(case), out, tolerance)
                    passed, reason = verdict(stats, tolerance)
                    judged = artifact.precision != "int8" or case is dataset
                    checks.append(CheckResult(artifact.backend, artifact.precision, case.name, stats, tolerance, passed, reason,
                                              artifact.file, artifact.sha256, artifact.target, reference_name, judged))  # fmt: skip
                    if case.labels is not None:
                        top1, top5 = accuracy(out, case.labels)
                        base = accuracies[0].top1 if accuracies else top1
                        accuracies.append(AccuracyResult(
                            f"{artifact.backend} {artifact.precision}", case.name, len(case.labels), top1, top5, (top1 - base) * 100,
                            file=artifact.file, reference=reference_name,
                        ))  # fmt: skip
    return ValidationReport(
        checkpoint=reference_name,
        artifacts=list(artifacts),
        checks=checks,
        accuracy=accuracies,
        environment=collect_environment(),
        tolerances=used,
    )


def merge_reports(reports: Sequence[ValidationReport]) -> ValidationReport:
    """One report of several references' checks (each check keeps the reference it was judged against)."""
    if not reports:
        raise ConfigError("no validation reports to merge")
    return ValidationReport(
        checkpoint=", ".join(r.checkpoint for r in reports),
        artifacts=[a for r in reports for a in r.artifacts],
        checks=[c for r in reports for c in r.checks],
        accuracy=[a for r in reports for a in r.accuracy],
        environment=reports[0].environment,
        tolerances={k: t for r in reports for k, t in r.tolerances.items()},
    )


def tf32_notes(artifacts: Sequence[Artifact]) -> list[str]:
    """One sentence per kind of fp32 GPU run among ``artifacts``: whether it used TF32, hence which tolerance judged it."""
    notes = []
    engines = {a.tf32 for a in artifacts if a.backend == "trt" and a.tf32 is not None}
    if False in engines:
        notes.append(
            "fp32 engines built without TF32 (--no-tf32; the trt target's parity engine) are judged by the fp32 tolerance"
        )
    if True in engines:
        notes.append("fp32 engines built with TF32 (TensorRT's default) are judged by the TF32 tolerance")
    notes += [
        TF32_NOTES[b] for b in sorted({a.backend for a in artifacts if a.tf32 is not None and a.backend in TF32_NOTES})
    ]
    return notes


def to_markdown(report: ValidationReport) -> str:
    """The report as Markdown: verdict, the files judged, checks table, accuracy table, tolerances."""
    lines = [
        f"# sbdeploy validate: {'PASSED' if report else 'FAILED'}",
        "",
        f"Reference (PyTorch training code): `{report.checkpoint}`",
        "",
    ]
    verdicts = report.file_verdicts()
    lines += [
        "| file | sha256 | target | backend | precision | TF32 | reference | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    references = {c.file: c.reference for c in report.checks}
    for artifact in report.artifacts:
        verdict_text = "pass" if verdicts.get(artifact.file) else "**FAIL**" if artifact.file in verdicts else "-"
        tf32 = "-" if artifact.tf32 is None else "on" if artifact.tf32 else "off"
        lines.append(f"| `{artifact.file}` | `{artifact.sha256[:16]}` | {artifact.target or '-'} | {artifact.backend} | "
                     f"{artifact.precision} | {tf32} | `{references.get(artifact.file, '')}` | {verdict_text} |")  # fmt: skip
    notes = tf32_notes(report.artifacts)
    lines += ["", *(f"- TF32: {note}." for note in notes)] if notes else []
    lines += [
        "",
        "| file | backend | precision | input | max abs | mean abs | max rel | min cosine | top-1 agree | top-5 agree | verdict |",
    ]
    lines += ["|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in report.checks:
        s = c.stats
        top5 = "-" if s.top5_agreement is None else f"{s.top5_agreement:.1%}"
        result = c.verdict_text.replace("FAIL", "**FAIL**", 1) if c.judged else c.verdict_text
        lines.append(
            f"| `{c.file}` | {c.backend} | {c.precision} | {c.case} | {s.max_abs:.3g} | {s.mean_abs:.3g} | {s.max_rel:.3g} | "
            f"{s.min_cosine:.6f} | {s.top1_agreement:.1%} | {top5} | {result} |"
        )
    if report.accuracy:
        lines += ["", "| reference | file | backend | dataset | images | top-1 | top-5 | change vs PyTorch |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for a in report.accuracy:
            top5 = "-" if a.top5 is None else f"{a.top5:.2%}"
            file = "PyTorch" if a.file is None else f"`{a.file}`"
            lines.append(f"| `{a.reference}` | {file} | {a.backend} | {a.dataset} | {a.samples} | {a.top1:.2%} | {top5} | "
                         f"{a.delta_top1:+.2f} pt |")  # fmt: skip
    lines += ["", "Tolerances (per target and precision):"]
    for key, t in report.tolerances.items():
        precision = key.rsplit(" ", 1)[-1]
        lines.append(
            f"- {key}: {t.describe()}"
            + (f" ({TOLERANCE_REASONS[precision]})" if precision in TOLERANCE_REASONS else "")
        )
    return "\n".join(lines) + "\n"
