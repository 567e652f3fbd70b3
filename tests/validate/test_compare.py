"""Output comparison statistics and verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from sbdeploy.validate.compare import DEFAULT_TOLERANCES, Tolerance, output_stats, verdict


def logits(n: int = 16, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, classes)).astype(np.float32) * 5


def test_identical_outputs_pass_every_precision() -> None:
    ref = logits()
    stats = output_stats(ref, ref.copy(), DEFAULT_TOLERANCES["fp32"])
    assert stats.max_abs == 0 and stats.top1_agreement == 1 and stats.top5_agreement == 1
    assert stats.min_cosine == pytest.approx(1.0)
    for tol in DEFAULT_TOLERANCES.values():
        assert verdict(output_stats(ref, ref, tol), tol) == (True, "")


def test_small_noise_passes_fp16_fails_fp32() -> None:
    ref = logits()
    noisy = ref + np.random.default_rng(1).normal(scale=5e-3, size=ref.shape).astype(np.float32)
    ok16, _ = verdict(output_stats(ref, noisy, DEFAULT_TOLERANCES["fp16"]), DEFAULT_TOLERANCES["fp16"])
    ok32, why = verdict(output_stats(ref, noisy, DEFAULT_TOLERANCES["fp32"]), DEFAULT_TOLERANCES["fp32"])
    assert ok16 and not ok32 and "beyond atol" in why


def test_nan_fails_whatever_the_tolerance() -> None:
    ref = logits()
    bad = ref.copy()
    bad[3, 2] = np.nan
    loose = Tolerance(atol=1e9, rtol=1e9)
    stats = output_stats(ref, bad, loose)
    ok, why = verdict(stats, loose)
    assert stats.nonfinite == 1 and not ok and "NaN/Inf" in why


def test_top1_and_cosine_criteria() -> None:
    ref = logits()
    flipped = ref.copy()
    flipped[:4] = -flipped[:4]  # 4 of 16 samples predict something else
    tol = DEFAULT_TOLERANCES["int8"]
    stats = output_stats(ref, flipped, tol)
    assert stats.top1_agreement == pytest.approx(12 / 16)
    assert stats.min_cosine == pytest.approx(-1.0)
    ok, why = verdict(stats, tol)
    assert not ok and "top-1" in why and "cosine" in why


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        output_stats(logits(4), logits(5))
