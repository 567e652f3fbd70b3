"""Comparing what was run (Polygraphy's compare step): outputs -> statistics, verdicts, the validation report.

Element-wise ``|out - ref| <= atol + rtol * |ref|``, cosine similarity and top-k agreement;
any NaN or Inf fails. :func:`judge` applies each file's target tolerance (or overrides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sbdeploy.backends.ort import TF32_NOTES
from sbdeploy.environment import Environment
from sbdeploy.errors import ConfigError
from sbdeploy.targets import get_target
from sbdeploy.tolerance import DEFAULT_TOLERANCES, Tolerance

if TYPE_CHECKING:
    from sbdeploy.validate.run import Artifact, RunResults

INT8_RANDOM_NOTE = "int8 is judged on real images: noise lies outside its calibrated ranges"
"""Why an int8 artifact's checks on random batches are reported but not judged."""


@dataclass(frozen=True)
class OutputStats:
    """Error statistics of one output against its reference."""

    max_abs: float
    mean_abs: float
    max_rel: float
    min_cosine: float
    mean_cosine: float
    top1_agreement: float
    top5_agreement: float | None  # None when the output has fewer than 6 classes
    nonfinite: int  # NaN/Inf count in the output under test
    elementwise_fail: int  # elements outside atol + rtol*|ref| (0 when disabled)
    samples: int

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _topk(logits: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def output_stats(reference: np.ndarray, output: np.ndarray, tolerance: Tolerance | None = None) -> OutputStats:
    """Statistics of ``output`` against ``reference`` (first axis is the batch)."""
    if reference.shape != output.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs output {output.shape}")
    ref = reference.astype(np.float64).reshape(reference.shape[0], -1)
    out = output.astype(np.float64).reshape(output.shape[0], -1)
    nonfinite = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
    diff = np.abs(out - ref)
    rel = diff / np.maximum(np.abs(ref), 1e-12)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = np.where(norms > 0, np.sum(ref * out, axis=1) / np.maximum(norms, 1e-300), 1.0)
    fails = 0
    if tolerance is not None and tolerance.atol is not None:
        fails = int(np.count_nonzero(~(diff <= tolerance.atol + (tolerance.rtol or 0.0) * np.abs(ref))))
    classes = ref.shape[1]
    top1 = float(np.mean(np.argmax(ref, axis=1) == np.argmax(out, axis=1)))
    top5 = None
    if classes > 5:
        top5 = float(np.mean([set(a) == set(b) for a, b in zip(_topk(ref, 5), _topk(out, 5))]))
    with np.errstate(invalid="ignore"):
        return OutputStats(
            max_abs=float(np.max(diff)) if diff.size else 0.0,
            mean_abs=float(np.mean(diff)) if diff.size else 0.0,
            max_rel=float(np.max(rel)) if rel.size else 0.0,
            min_cosine=float(np.min(cosine)),
            mean_cosine=float(np.mean(cosine)),
            top1_agreement=top1,
            top5_agreement=top5,
            nonfinite=nonfinite,
            elementwise_fail=fails,
            samples=int(ref.shape[0]),
        )


def verdict(stats: OutputStats, tolerance: Tolerance) -> tuple[bool, str]:
    """Whether ``stats`` meet ``tolerance``, and why not (empty when passed)."""
    reasons = []
    if stats.nonfinite:
        reasons.append(f"{stats.nonfinite} NaN/Inf values")
    if tolerance.atol is not None and stats.elementwise_fail:
        reasons.append(
            f"{stats.elementwise_fail} elements beyond atol={tolerance.atol:g}/rtol={tolerance.rtol or 0:g} (max |diff| {stats.max_abs:.3g})"
        )
    if tolerance.min_cosine is not None and not stats.min_cosine >= tolerance.min_cosine:
        reasons.append(f"cosine {stats.min_cosine:.6f} < {tolerance.min_cosine:g}")
    if tolerance.min_top1 is not None and not stats.top1_agreement >= tolerance.min_top1:
        reasons.append(f"top-1 agreement {stats.top1_agreement:.1%} < {tolerance.min_top1:.0%}")
    return not reasons, "; ".join(reasons)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float | None]:
    """Top-1 and top-5 accuracy (top-5 None with 5 classes or fewer)."""
    top1 = float(np.mean(np.argmax(logits, axis=1) == labels))
    if logits.shape[1] <= 5:
        return top1, None
    return top1, float(np.mean([label in row for label, row in zip(labels, _topk(logits, 5))]))


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
        return {**asdict(self), "tolerance": self.tolerance.describe()}


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


def tolerance_for(artifact: Artifact, overrides: dict[str, Tolerance] | None = None) -> Tolerance:
    """The pass criteria of ``artifact``: an override for its precision, else its target's policy (else the defaults)."""
    if overrides and artifact.precision in overrides:
        return overrides[artifact.precision]
    if artifact.target is not None:
        return get_target(artifact.target).tolerance(artifact.precision)
    if artifact.precision not in DEFAULT_TOLERANCES:
        raise ConfigError(f"no tolerance for {artifact.precision!r} artifacts; give one with --atol/--rtol")
    return DEFAULT_TOLERANCES[artifact.precision]


def judge(results: RunResults, tolerances: dict[str, Tolerance] | None = None) -> ValidationReport:
    """Every artifact's outputs against PyTorch's on each input case, by its tolerance (``tolerances`` override).

    int8 checks on random batches are reported, not judged (:data:`INT8_RANDOM_NOTE`).
    """
    checks: list[CheckResult] = []
    accuracies: list[AccuracyResult] = []
    used: dict[str, Tolerance] = {}
    name = results.checkpoint
    dataset = results.dataset
    if dataset is not None and results.labels is not None:
        top1, top5 = accuracy(results.reference[dataset], results.labels)
        accuracies.append(AccuracyResult("torch", dataset, len(results.labels), top1, top5, 0.0, reference=name))
    for artifact, outputs in zip(results.artifacts, results.outputs, strict=True):
        tolerance = tolerance_for(artifact, tolerances)
        used[f"{artifact.target} {artifact.precision}" if artifact.target else artifact.precision] = tolerance
        for case, out in outputs.items():
            stats = output_stats(results.reference[case], out, tolerance)
            passed, reason = verdict(stats, tolerance)
            judged = artifact.precision != "int8" or case == dataset
            who = {"file": artifact.file, "sha256": artifact.sha256, "target": artifact.target, "reference": name}
            checks.append(
                CheckResult(
                    artifact.backend, artifact.precision, case, stats, tolerance, passed, reason, **who, judged=judged
                )
            )
            if case == dataset and results.labels is not None:
                top1, top5 = accuracy(out, results.labels)
                delta = (top1 - (accuracies[0].top1 if accuracies else top1)) * 100
                label = f"{artifact.backend} {artifact.precision}"
                accuracies.append(
                    AccuracyResult(label, case, len(results.labels), top1, top5, delta, artifact.file, reference=name)
                )
    return ValidationReport(name, list(results.artifacts), checks, accuracies, results.environment, used)


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
    backends = sorted({a.backend for a in artifacts if a.tf32 is not None and a.backend in TF32_NOTES})
    return notes + [TF32_NOTES[b] for b in backends]
