"""The deploy-target table: for each engine, the SB form its artifacts take and how they are made, run and judged.

One frozen :class:`Target` per deploy target (its fields are commented there), the backend -> target map
(:data:`BACKEND_TARGETS`) and artifact file names (:func:`artifact_filename`). Every command reads this table;
nothing else names a target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sbdeploy.errors import ConfigError, did_you_mean
from sbdeploy.int8_recipe import ORT_CPU_INT8, TRT_INT8, Int8Recipe
from sbdeploy.tolerance import DEFAULT_TOLERANCES, Tolerance

if TYPE_CHECKING:
    from torch import nn

FILE_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
"""The precisions a deploy file holds in its bytes (a target's default offer)."""

PRECISIONS: tuple[str, ...] = (*FILE_PRECISIONS, "bf16")
"""Every precision sbdeploy knows; each target offers a subset (:attr:`Target.precisions`)."""

FUSED_COMPUTES: tuple[str, ...] = ("fp32", "bf16", "int8")
"""What the fused SB operator's nodes compute in (its ``precision`` attribute; inputs, outputs, weights stay fp32)."""

FUSED_PRECISIONS: tuple[str, ...] = ("bf16",)
"""Precisions that only the fused SB kernel computes in (ONNX Runtime's CPU provider has no bf16 convolution): a
target offering one writes it as its fused form with those nodes in it, so a network without SB blocks has no such
file."""

RUN_PRECISIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({"ov-cpu": ("bf16",)})
"""Per backend, the precisions that are a run-time setting (OpenVINO's inference precision hint) on the fp32 file
rather than a file of their own: such a run is validated and timed as (file sha256, backend, precision)."""


def requested_precisions(fp16: bool, int8: bool, bf16: bool = False) -> tuple[str, ...]:
    """The precisions ``--fp16``/``--int8``/``--bf16`` ask for, fp32 first (the reference every other one is judged
    against)."""
    return ("fp32", *(["fp16"] if fp16 else []), *(["int8"] if int8 else []), *(["bf16"] if bf16 else []))


def file_precision(backend: str, precision: str) -> str:
    """The precision of the file ``backend`` runs for a ``precision`` run: fp32 for a run-time one (RUN_PRECISIONS)."""
    return "fp32" if precision in RUN_PRECISIONS.get(backend, ()) else precision


def run_options(backend: str, precision: str) -> dict[str, str]:
    """The runner options of a ``precision`` run on ``backend``: ``precision`` itself where it is a run-time setting."""
    return {"precision": precision} if precision in RUN_PRECISIONS.get(backend, ()) else {}


STRUCTURAL_PASSES: tuple[str, ...] = ("fold_constants", "eliminate", "fold_bn", "shape_inference")
"""The structural ONNX passes every export runs first (``sbdeploy.passes.DEFAULT_PASSES``)."""

DEPLOY_PASSES: tuple[str, ...] = ("fuse_pads", "affine_to_conv")
"""After the structural passes on the deploy forms: zero Pads into their Convs, unfoldable BN
affines (Mul + Add) as depthwise 1x1 Convs that ONNX Runtime's NCHWc kernels fuse."""

ORT_CPU_PASSES: tuple[str, ...] = (*STRUCTURAL_PASSES, "fuse_pads", "fuse_sb", "affine_to_conv")
"""ONNX Runtime CPU's: the deploy passes, and residual Adds and ReLUs into the fused SB nodes that feed them."""

STACKED_MAX_MACS = 1 << 18
"""Below this many MACs per tap conv (batch x phase pixels x C_in x C_out) a run of stackable blocks takes the stacked
layout (:mod:`sbdeploy.nn.stacked`), as measured on ONNX Runtime CPU (docs/speedup.md)."""

STACKED_ALWAYS = 1 << 62
"""A ``stacked_max_macs`` that every fixed batch is below: stackable runs always take the stacked layout."""

ONNX_BACKENDS: tuple[str, ...] = ("ort-cpu", "ort-cuda", "ort-trt", "ov-cpu")
"""Backends whose artifact is the ONNX file itself."""

ENGINE_BACKENDS: tuple[str, ...] = ("trt",)
"""Backends whose artifact is a TensorRT engine built from the target's ONNX."""


@dataclass(frozen=True)
class Layout:
    """How a target lays out runs of SB blocks: the arguments of :func:`sbdeploy.nn.deploy.deploy_form`."""

    phase_runs: bool = False  # consecutive SB blocks run on the four phases of their input
    stacked_max_macs: int | None = None  # with phase runs and a fixed batch: stacked below this (None: never)

    def describe(self) -> str:
        if not self.phase_runs:
            return "per SB"
        if self.stacked_max_macs is None:
            return "phase runs"
        return f"phase runs (stacked below {self.stacked_max_macs:,} MACs per tap conv, fixed batch)"


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def _by_name(*rows: Any) -> Mapping[str, Any]:
    return _frozen({row.name: row for row in rows})


VARIANT_SEPARATOR = ":"
"""``TARGET:VARIANT`` names a target in one of its variant forms (``ort-cpu:stacked``)."""


@dataclass(frozen=True)
class FormVariant:
    """Another exact form of a target, selected as ``TARGET:NAME``: its own lowering and layout, the rest kept."""

    name: str
    summary: str
    lowering: str
    layout: Layout = Layout()


@dataclass(frozen=True)
class Target:
    """One deploy target: how its artifacts are made, run and judged."""

    name: str
    summary: str
    lowering: str  # the SB form outside phase runs, a key of sbdeploy.nn.lowering.LOWERINGS
    passes: tuple[str, ...]  # every ONNX graph pass its export runs, in order
    backends: tuple[str, ...]  # the runners of its artifacts (trt: an engine built from its ONNX)
    layout: Layout = Layout()
    per_batch: bool = False  # one artifact per batch size (the layout depends on it), else one with a dynamic batch
    precisions: tuple[str, ...] = FILE_PRECISIONS
    int8: Int8Recipe = TRT_INT8
    engine_options: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _frozen({}))  # TensorRT's
    tolerances: Mapping[str, Tolerance] = field(default_factory=lambda: _frozen(DEFAULT_TOLERANCES))
    variants: Mapping[str, FormVariant] = field(default_factory=lambda: _frozen({}))  # other exact forms --tune times
    tunable: bool = False  # whether --tune times its forms (and, on ONNX Runtime, its session settings)
    fused: str | None = None  # the variant the rule takes for fp32 files where sbdeploy's kernel library is built
    variant: str | None = None  # which of variants this object is in (None: the row's own form)

    @property
    def form(self) -> str:
        """The name of the form (recorded as ``lowering`` in the metadata): equal names, equal graphs."""
        base = f"{self.lowering}+phase-runs" if self.layout.phase_runs else self.lowering
        return base if self.variant is None else f"{base}{VARIANT_SEPARATOR}{self.variant}"

    @property
    def spec(self) -> str:
        """The name :func:`get_target` takes for exactly this form (``ort-cpu`` or ``ort-cpu:stacked``)."""
        return self.name if self.variant is None else f"{self.name}{VARIANT_SEPARATOR}{self.variant}"

    def with_variant(self, variant: str | None) -> Target:
        """This target in the form ``variant`` (one of :attr:`variants`; None: the row's own form)."""
        row = TARGETS.get(self.name, self)
        if variant is None:
            return row
        if variant not in row.variants:
            choices = ", ".join(row.variants) or "none"
            raise ConfigError(
                f"target {self.name} has no form {variant!r}{did_you_mean(variant, row.variants)}; its variants: {choices}"
            )
        chosen = row.variants[variant]
        return dataclasses.replace(row, lowering=chosen.lowering, layout=chosen.layout, variant=variant)

    def candidates(self, kernels_built: bool = False) -> list[Target]:
        """The row's own form first, then each variant (a fused one where the kernel library is built): what tuning times."""
        row = self.with_variant(None)
        forms = [row, *(row.with_variant(name) for name in row.variants)]
        return [form for form in forms if kernels_built or form.lowering != "fused"]

    def by_rule(self, precision: str, kernels_built: bool) -> Target:
        """The form a ``precision`` file of this target takes untuned: the row's fused variant for what its nodes
        compute in (fp32, bf16, int8: :data:`FUSED_COMPUTES`) where the kernel library is built, the row's own form
        for fp16 (ONNX Runtime's fp16 kernels, through casts on a CPU). A fused variant asked for keeps its form but
        for fp16. An int8 fused file quantizes only its SB nodes, the rest stays fp32 (measured in docs/int8.md)."""
        if self.lowering == "fused":
            return self if precision in FUSED_COMPUTES else self.with_variant(None)
        if self.variant is None and self.fused is not None and kernels_built and precision in FUSED_COMPUTES:
            return self.with_variant(self.fused)
        if precision in FUSED_PRECISIONS and precision in self.precisions and self.fused is not None:
            if self.variant is not None:
                raise ConfigError(
                    f"{precision} files of {self.name} are its fused form: give --target {self.name} (or "
                    f"{self.name}:{self.fused}), not {self.spec}"
                )
            raise ConfigError(
                f"{precision} on {self.name} is computed by the fused SB kernel, and sbdeploy's kernel library is not "
                "built here: bash scripts/build_kernels.sh (sbdeploy doctor says why it is not)"
            )
        return self

    def deploy_form(self, model: nn.Module) -> nn.Module:
        """Eval-mode copy of ``model`` in this target's form (:func:`sbdeploy.nn.deploy.deploy_form`)."""
        from sbdeploy.nn.deploy import deploy_form

        return deploy_form(model, lowering=self.lowering, **dataclasses.asdict(self.layout))

    def check_precision(self, precision: str) -> None:
        """ConfigError unless this target offers ``precision``."""
        if precision not in self.precisions:
            known = "" if precision in PRECISIONS else f" (sbdeploy knows {', '.join(PRECISIONS)})"
            raise ConfigError(f"target {self.name} offers {', '.join(self.precisions)}, not {precision!r}{known}")

    def tolerance(self, precision: str) -> Tolerance:
        """The pass criteria of this target's ``precision`` artifacts."""
        if precision not in self.tolerances:
            raise ConfigError(f"target {self.name} has no tolerance for {precision!r} artifacts")
        return self.tolerances[precision]

    def build_options(self, precision: str) -> dict[str, Any]:
        """TensorRT ``BuildOptions`` fields for an engine of this precision built from this target's ONNX."""
        self.check_precision(precision)
        return {"precision": precision, **self.engine_options.get(precision, {})}


ORT_CPU_VARIANTS: Mapping[str, FormVariant] = _by_name(
    FormVariant(
        "taps",
        "phase runs of exact tap convs at every batch (never stacked)",
        lowering="subpixel",
        layout=Layout(phase_runs=True),
    ),
    FormVariant(
        "stacked",
        "stacked layout for every run of regular blocks at a fixed batch (merged tap convs)",
        lowering="subpixel",
        layout=Layout(phase_runs=True, stacked_max_macs=STACKED_ALWAYS),
    ),
    FormVariant(
        "masked",
        "as the rule, but SBs outside phase runs (odd stages, e.g. 7x7) as a dense masked Conv pair",
        lowering="masked",
        layout=Layout(phase_runs=True, stacked_max_macs=STACKED_MAX_MACS),
    ),
    FormVariant(
        "fused",
        "one SBConv node per SB, run by sbdeploy's kernel library (exact MACs; needs the library built)",
        lowering="fused",
    ),
    FormVariant(
        "per-sb",
        "no phase runs: every SB in the sub-pixel form (strided convs, tap convs, one interleave each)",
        lowering="subpixel",
    ),
    FormVariant(
        "gather",
        "no phase runs: every SB as row gathers at the sampled positions + MatMuls (exact MACs, few nodes)",
        lowering="gather",
    ),
)
"""The other exact forms of ``ort-cpu`` that ``export --tune`` times (see docs/speedup.md for when each wins)."""

OV_CPU_VARIANTS: Mapping[str, FormVariant] = _frozen({k: v for k, v in ORT_CPU_VARIANTS.items() if k != "fused"})
"""``ov-cpu``'s: ort-cpu's portable forms (OpenVINO cannot run the fused op), timed by ``export --tune`` on OpenVINO."""

_ENGINES = _frozen({"fp32": _frozen({"tf32": False})})  # fp32 engines are parity engines: no TF32 rounding
_EVERY_BACKEND = (*ONNX_BACKENDS, *ENGINE_BACKENDS)
_DEPLOY = (*STRUCTURAL_PASSES, *DEPLOY_PASSES)

TARGETS: Mapping[str, Target] = _by_name(
    Target(
        "grouped",
        "canonical interchange form: one grouped Conv/ConvTranspose pair per SB, dynamic batch",
        lowering="grouped",
        passes=STRUCTURAL_PASSES,
        backends=_EVERY_BACKEND,
        engine_options=_ENGINES,
    ),
    Target(
        "separate",
        "canonical form with one ungrouped Conv/ConvTranspose pair per subgroup (tools without grouped ConvTranspose)",
        lowering="separate",
        passes=STRUCTURAL_PASSES,
        backends=_EVERY_BACKEND,
        engine_options=_ENGINES,
    ),
    Target(
        "ort-cpu",
        "ONNX Runtime CPU: phase runs of exact tap convs (stacked at small fixed batches), sub-pixel SBs elsewhere, "
        "no ConvTranspose; one artifact per batch size",
        lowering="subpixel",
        layout=Layout(phase_runs=True, stacked_max_macs=STACKED_MAX_MACS),
        passes=ORT_CPU_PASSES,
        backends=("ort-cpu",),
        per_batch=True,
        int8=ORT_CPU_INT8,
        precisions=(*FILE_PRECISIONS, "bf16"),  # bf16: the fused SB nodes compute in it (FUSED_PRECISIONS)
        variants=ORT_CPU_VARIANTS,
        tunable=True,
        fused="fused",
    ),
    Target(
        "ort-cuda",
        "ONNX Runtime CUDA: strided Conv + ConvTranspose per subgroup (a native GPU kernel), BN folded",
        lowering="strided",
        passes=_DEPLOY,
        backends=("ort-cuda",),
    ),
    Target(
        "trt",
        "TensorRT: strided Conv + ConvTranspose per subgroup, BN folded; engines built from it (fp32 without TF32)",
        lowering="strided",
        passes=_DEPLOY,
        backends=("trt", "ort-trt"),
        engine_options=_ENGINES,
    ),
    Target(
        "ov-cpu",
        "OpenVINO CPU: ort-cpu's plain rule form (phase runs of exact tap convs, stacked at small fixed batches: the "
        "fastest fp32 form on OpenVINO too, docs/speedup.md), never the fused op (OpenVINO cannot run it); one "
        "artifact per batch size",
        lowering="subpixel",
        layout=Layout(phase_runs=True, stacked_max_macs=STACKED_MAX_MACS),
        passes=ORT_CPU_PASSES,
        backends=("ov-cpu",),
        per_batch=True,
        precisions=("fp32", "bf16", "int8"),  # bf16: the fp32 file run with OpenVINO's bf16 hint (RUN_PRECISIONS)
        int8=ORT_CPU_INT8,  # OpenVINO reads ONNX Runtime's QDQ files
        variants=OV_CPU_VARIANTS,
        tunable=True,
    ),
)
"""Every deploy target by name."""

CANONICAL = "grouped"
"""The target of the canonical interchange file (``export`` without ``--target``, the pipeline's ``model.onnx``)."""

BACKEND_TARGETS: Mapping[str, str] = _frozen(
    {"ort-cpu": "ort-cpu", "ort-cuda": "ort-cuda", "ort-trt": "trt", "trt": "trt", "ov-cpu": "ov-cpu"}
)
"""The target whose artifacts each backend times by default (bench, pipeline, validate)."""


def get_target(name: str) -> Target:
    """The target ``name`` (``TARGET`` or ``TARGET:VARIANT``, :attr:`Target.variants`); ConfigError naming the choices otherwise."""
    row, _, variant = name.partition(VARIANT_SEPARATOR)
    if row not in TARGETS:
        raise ConfigError(f"unknown target {row!r}{did_you_mean(row, TARGETS)}; choose one of {', '.join(TARGETS)}")
    return TARGETS[row].with_variant(variant or None) if variant else TARGETS[row]


def target_for(backend: str, override: str | None = None) -> Target:
    """The target ``backend`` runs: ``override`` when given (it must run there), else :data:`BACKEND_TARGETS`."""
    if override is None:
        if backend not in BACKEND_TARGETS:
            raise ConfigError(f"backend {backend} runs no deploy artifact; choose one of {', '.join(BACKEND_TARGETS)}")
        return TARGETS[BACKEND_TARGETS[backend]]
    target = get_target(override)
    if backend not in target.backends:
        raise ConfigError(f"target {target.name} is run by {', '.join(target.backends)}, not by {backend}")
    return target


def artifact_filename(stem: str, target: str, precision: str, *, batch: int | None = None, engine: bool = False) -> str:
    """The file name of one artifact: ``model.onnx`` for the canonical form (fp32, dynamic batch), else
    ``STEM.TARGET[.bN].PRECISION.onnx``, or ``STEM.TARGET.PRECISION.engine`` for a TensorRT engine."""
    get_target(target).check_precision(precision)
    if engine:
        return f"{stem}.{target}.{precision}.engine"
    if target == CANONICAL and precision == "fp32" and batch is None:
        return f"{stem}.onnx"
    return f"{stem}.{target}{'' if batch is None else f'.b{batch}'}.{precision}.onnx"


def target_option(target: str | None, lowering: str | None = None) -> str | None:
    """The target of a command's ``--target`` and the old ``--lowering`` (only ``grouped``/``separate`` still work)."""
    if target is not None:
        get_target(target)
    if lowering is None:
        return target
    if lowering not in ("grouped", "separate"):
        raise ConfigError(
            f"--lowering {lowering} no longer exists: SB forms are chosen by deploy target, --target {' | '.join(TARGETS)}"
        )
    if target not in (None, lowering):
        raise ConfigError(f"--lowering {lowering} is the old spelling of --target {lowering}; give --target only")
    return lowering
