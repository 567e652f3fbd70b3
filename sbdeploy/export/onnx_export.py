"""Export a checkpoint or zoo network to ONNX in a deploy target's form, then run that target's graph passes.

The target's deploy copy is traced by ``torch.onnx.export(dynamo=True)``, its passes run, then the precision
conversion, the metadata, an older opset where asked, ``onnx.checker`` and the TensorRT check; the same source gives
byte-identical files (docs/export.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from sbdeploy import kernels
from sbdeploy._io import atomic_write_bytes
from sbdeploy._version import __version__
from sbdeploy.calibration import Calibration
from sbdeploy.checkpoint import Checkpoint
from sbdeploy.errors import ConfigError, OnnxModelError
from sbdeploy.export.metadata import write_metadata
from sbdeploy.export.opset import downgrade_opset
from sbdeploy.export.sbconv import TRANSLATIONS
from sbdeploy.int8_recipe import Int8Recipe
from sbdeploy.nn.sb import has_sb
from sbdeploy.passes import PassReport, op_counts, quantize_int8, run_passes, to_fp16
from sbdeploy.passes.sb_precision import sbconv_precision
from sbdeploy.passes.trt_check import TrtCheckReport, check_trt_compat
from sbdeploy.sources import resolve_source
from sbdeploy.targets import CANONICAL, FUSED_PRECISIONS, get_target

MIN_OPSET = 13
TORCH_MIN_OPSET = 18  # the dynamo exporter's own minimum
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and found."""

    path: Path
    metadata: dict[str, Any]
    pass_reports: list[PassReport]
    trt_check: TrtCheckReport
    ops: dict[str, int]  # final op census
    sha256: str  # of the written file
    warnings: tuple[str, ...] = field(default_factory=tuple)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the torch exporter's progress prints and log warnings (a library prints nothing)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "torch.fx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _check_options(opset: int, batch: str | int, input_size: tuple[int, int]) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(f"opset must be {MIN_OPSET}..{newest}, got {opset}")
    if batch != "dynamic" and not (isinstance(batch, int) and batch >= 1):
        raise ConfigError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    if len(input_size) != 2 or min(input_size) < 1:
        raise ConfigError(f"input size must be two positive integers H, W, got {input_size}")


def export_module(
    model: nn.Module,
    *,
    in_chans: int,
    input_size: tuple[int, int],
    batch: str | int = "dynamic",
    opset: int = 17,
    target: str = CANONICAL,
    passes: Sequence[str] | None = None,
) -> tuple[onnx.ModelProto, list[PassReport]]:
    """Trace ``model`` (eval mode) to fp32 ONNX in ``target``'s deploy form, then run ``passes`` (default: the
    target's); no metadata, nothing written."""
    deploy = get_target(target)
    _check_options(opset, batch, input_size)
    if model.training:
        raise ConfigError("export needs the model in eval mode (model.eval())")
    example = torch.zeros(2 if batch == "dynamic" else int(batch), in_chans, *input_size)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},) if batch == "dynamic" else None
    deployed = deploy.deploy_form(model)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            deployed,
            (example,),
            dynamo=True,
            custom_translation_table=TRANSLATIONS,
            opset_version=max(opset, TORCH_MIN_OPSET),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes,
            optimize=False,
            verify=False,
            report=False,
        )
    if program is None:  # only when exporting to a file path with dynamo=False
        raise OnnxModelError("torch.onnx.export returned no program")
    proto = program.model_proto
    if batch == "dynamic":
        for value in (*proto.graph.input, *proto.graph.output):
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    proto, reports = run_passes(proto, deploy.passes if passes is None else passes)
    if opset < TORCH_MIN_OPSET:
        proto = downgrade_opset(proto, opset)
    return proto, reports


def to_precision(
    proto: onnx.ModelProto, precision: str, *, int8: Int8Recipe | None = None, calibration: Calibration | None = None
) -> onnx.ModelProto:
    """The fp32 export converted to ``precision`` (fp32 inputs and outputs kept); int8 by the ``int8`` recipe."""
    if precision == "fp32":
        return proto
    if precision == "fp16":
        return to_fp16(proto)
    if precision == "int8":
        if calibration is None or int8 is None:
            raise ConfigError(
                "an int8 artifact needs calibration data (--calibration SRC: a data source or a .npy of inputs)"
            )
        return quantize_int8(proto, calibration.images, recipe=int8)
    raise ConfigError(f"unknown precision {precision!r}; sbdeploy makes fp32, fp16 and int8 artifacts")


FUSED_INT8 = (
    "fused SB nodes in int8: u8 activations (MinMax per node, on the fused graph), s8 per-channel weights, s32 "
    "accumulation, fp32 rescale and epilogue; the rest of the graph fp32"
)
"""What an int8 file of the fused form computes, as its metadata says (sbdeploy.passes.sb_precision)."""


def export_source(
    src: Checkpoint,
    outputs: Mapping[str, str | Path],
    *,
    opset: int = 17,
    batch: str | int = "dynamic",
    input_size: tuple[int, int] | None = None,
    target: str = CANONICAL,
    passes: Sequence[str] | None = None,
    calibration: Calibration | None = None,
    rule: bool = True,
) -> dict[str, ExportResult]:
    """Export ``src`` in ``target``'s form and write it in each precision of ``outputs`` (precision -> path); int8 is
    quantized by the target's recipe on ``calibration``. ``rule``: each precision takes :meth:`Target.by_rule`'s form
    (fused where the kernel library is built), else exactly ``target``'s."""
    deploy = get_target(target)
    for precision in outputs:
        deploy.check_precision(precision)
    config = src.config
    size = (int(input_size[0]), int(input_size[1])) if input_size is not None else config.input_size
    notes: tuple[str, ...] = ()
    if src.kind == "zoo":
        notes = (f"{config.arch} has random weights (a zoo name, not a checkpoint): fine for speed, not for accuracy",)
    sb = has_sb(src.model)
    plain = [p for p in outputs if p in FUSED_PRECISIONS and not sb and deploy.fused is not None]
    if plain:
        raise ConfigError(
            f"{plain[0]} on {deploy.name} is computed by the fused SB kernel, and {config.arch} has no SB block: "
            "its fp32 file is what this target runs"
        )
    built = kernels.is_built()
    fallback = (f"the fused SB operator has no fp16: fp16 files take {deploy.name}'s own form",)
    # without the rule a form stays what it is, a fused one where its nodes compute in the precision
    forms = {p: deploy.by_rule(p, built and rule) if sb else deploy for p in outputs}
    exported = {
        form.spec: export_module(
            src.model,
            in_chans=config.in_chans,
            input_size=size,
            batch=batch,
            opset=opset,
            target=form.spec,
            passes=passes,
        )
        for form in forms.values()
    }
    results = {}
    for precision, out_path in outputs.items():
        form = forms[precision]
        fp32, reports = exported[form.spec]
        ran = [r.name for r in reports]
        if form.lowering == "fused" and precision != "fp32":  # the fused SB nodes compute in it, the rest stays fp32
            proto = sbconv_precision(fp32, precision, None if calibration is None else calibration.images)
        else:
            proto = to_precision(fp32, precision, int8=deploy.int8, calibration=calibration)
        metadata = {
            "version": __version__,
            "arch": config.arch,
            "options": config.options,
            "sampling": config.sampling,
            "source": src.kind,
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "input_shape": ["batch" if batch == "dynamic" else int(batch), config.in_chans, size[0], size[1]],
            "layout": "NCHW",
            "input_dtype": "float32",
            "normalization": {"mean": list(config.mean), "std": list(config.std), "input_range": [0.0, 1.0]},
            "class_names": list(config.class_names),
            "weights_sha256": src.weights_sha256,
            "target": deploy.name,
            "lowering": form.form if sb else "none",
            "precision": precision,
            "passes": ran,
            "opset": opset,
        }
        if deploy.tunable:  # the report says the form was chosen by the rule, not timed
            rule_text = form.layout.describe() if form.variant is None else f"variant {form.variant}"
            if deploy.variant is None and form.lowering == "fused":
                rule_text = "fused SB operator: sbdeploy's kernel library is built"
            metadata["tuning"] = {
                "tuned": False,
                "rule": rule_text,
                "note": "form chosen without timing; `sbdeploy export --tune` times the candidates on this machine",
            }
        if precision == "int8":
            assert calibration is not None  # to_precision refused int8 without it
            fused = form.lowering == "fused"
            metadata["int8"] = {
                "recipe": "fused" if fused else deploy.int8.name,
                "form": FUSED_INT8 if fused else deploy.int8.describe(),
                "calibration": calibration.to_dict(),
            }
        if kernels.uses_kernels(proto):  # runners register the package's own library for it, never a path from here
            metadata["kernels"] = {
                "domain": kernels.DOMAIN,
                "ops": [kernels.OP_TYPE],
                "needs": "sbdeploy's kernel library (sbdeploy.kernels.library_path()), onnxruntime >= "
                + kernels.MIN_ONNXRUNTIME,
            }
        proto.producer_name, proto.producer_version = "sbdeploy", __version__
        write_metadata(proto, metadata)
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as error:
            raise OnnxModelError(
                f"the exported graph fails onnx.checker ({error}); please report this as a bug"
            ) from None
        trt = check_trt_compat(proto)
        data = proto.SerializeToString(deterministic=True)
        path = Path(out_path)
        atomic_write_bytes(path, data)
        results[precision] = ExportResult(
            path=path,
            metadata=metadata,
            pass_reports=reports,
            trt_check=trt,
            ops=op_counts(proto),
            sha256=sha256(data).hexdigest(),
            warnings=notes + fallback if form.spec != deploy.spec and deploy.lowering == "fused" else notes,
        )
    return results


def export_onnx(
    source: str | Path,
    out_path: str | Path,
    *,
    opset: int = 17,
    batch: str | int = "dynamic",
    input_size: tuple[int, int] | None = None,
    target: str = CANONICAL,
    precision: str = "fp32",
    passes: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    calibration: Calibration | None = None,
) -> ExportResult:
    """Export a checkpoint folder or a zoo name (random weights, with a warning; ``options``: its builder options) to
    ``out_path`` (ONNX); ``input_size`` (H, W) defaults to the checkpoint's."""
    src = resolve_source(source, options=options)
    return export_source(
        src,
        {precision: out_path},
        opset=opset,
        batch=batch,
        input_size=input_size,
        target=target,
        passes=passes,
        calibration=calibration,
    )[precision]
