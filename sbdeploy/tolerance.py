"""Pass criteria of a parity check (:class:`Tolerance`) and the defaults per precision, applied by
:mod:`sbdeploy.validate.compare`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria of one check: ``|diff| <= atol + rtol * |ref|``, per-sample cosine and top-1 agreement; ``None``
    disables a criterion."""

    atol: float | None
    rtol: float | None
    min_cosine: float | None = None
    min_top1: float | None = None

    def describe(self) -> str:
        parts = []
        if self.atol is not None:
            parts.append(f"|diff| <= {self.atol:g} + {self.rtol or 0:g}*|ref|")
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        if self.min_top1 is not None:
            parts.append(f"top-1 agreement >= {self.min_top1:.0%}")
        return ", ".join(parts) or "none"


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    # fp32 engines differ from PyTorch by summation order only.
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999, min_top1=1.0),
    # fp16 keeps ~3 decimal digits: logits of magnitude ~10 move by ~1e-2.
    "fp16": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999, min_top1=0.98),
    # int8 changes values by design: judge the direction of the output and the predictions.
    "int8": Tolerance(atol=None, rtol=None, min_cosine=0.98, min_top1=0.9),
    # An fp32 file run with TF32: a TensorRT engine built with it (TensorRT's and trtexec's default on Ampere
    # and newer), or an fp32 ONNX on ONNX Runtime's TensorRT provider.
    "tf32": Tolerance(atol=2e-2, rtol=2e-2, min_cosine=0.9999, min_top1=0.99),
    # bf16 compute (OpenVINO's CPU hint on an fp32 file; the fused SB nodes of an ort-cpu bf16 file): 8-bit
    # mantissas, fp32 accumulation.
    "bf16": Tolerance(atol=1e-1, rtol=1e-1, min_cosine=0.998, min_top1=0.95),
}
"""Default pass criteria per precision of the artifact under test (overridable)."""

TOLERANCE_REASONS: dict[str, str] = {
    "int8": (
        "int8 rounds every quantized tensor to 256 levels whose scales were calibrated on real images, so it is judged "
        "on the real test split (cosine of each sample's logits, top-1 agreement with PyTorch); its runs on random "
        "batches are shown for information only: standard-normal noise lies outside the calibrated ranges"
    ),
    "tf32": (
        "fp32 run with TF32 (TensorRT's default: an engine built without --no-tf32, or any fp32 file on ONNX Runtime's "
        "TensorRT provider, which cannot clear it): convolutions and matrix products round their inputs "
        "to a 10-bit mantissa, as fp16 does, but accumulate in fp32; on the shipped digits ResNet-20 emulated "
        "TF32 moves logits by up to 6.4e-3, so this is about 3x that, tighter than fp16's. "
        "Build the engine with --no-tf32 to be judged by the fp32 tolerance"
    ),
    "bf16": (
        "bf16 compute (an fp32 file run with OpenVINO's bf16 inference precision hint, or an ort-cpu file whose fused SB "
        "nodes compute in bf16): activations and weights rounded to bf16's 8-bit mantissa (3 bits fewer than fp16's), products accumulated in fp32; so twice fp16's atol and rtol and "
        "a looser cosine, and top-1 >= 95%: bf16 flips near-tied samples (the digits SB model: 1 of 32 test images, cosine "
        "0.99996), which at small limits would fail a stricter bound. The proof keys on the file's sha256, the backend and this precision"
    ),
}
"""Why a precision's tolerance is what it is, where the report should say so (validate.md)."""
