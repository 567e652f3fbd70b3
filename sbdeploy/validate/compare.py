"""Comparing outputs: pure functions from two arrays to statistics and a verdict.

Running the backends is separate (see :mod:`sbdeploy.validate.run`); this module only
compares, in the manner of Polygraphy's ``compare_accuracy``: element-wise
``|out - ref| <= atol + rtol * |ref|``, plus cosine similarity and top-k agreement of the
class predictions. Any NaN or Inf in an output fails the check outright.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sbdeploy.tolerance import DEFAULT_TOLERANCES, TOLERANCE_REASONS, Tolerance

__all__ = ["DEFAULT_TOLERANCES", "TOLERANCE_REASONS", "OutputStats", "Tolerance", "output_stats", "verdict"]


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
