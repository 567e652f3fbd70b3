"""Export a checkpoint or zoo network to ONNX with a chosen SB lowering, then run the graph passes.

With a deploy ``target`` (:data:`EXPORT_TARGETS`: ``ort-cpu``, ``ort-cuda``, ``trt``) the
network is first replaced by its exact deploy form for that engine
(:func:`sbdeploy.nn.phase.deploy_form`: no ConvTranspose on the CPU, phase-layout
runs) and the Pad folding pass runs after the structural ones; without one the
canonical interchange form (SB lowered as ``grouped`` or ``separate`` pairs) is written.

The network is traced by ``torch.onnx.export(dynamo=True)`` (the maintained exporter:
batch stays a symbolic dimension, no shape arithmetic is baked in) while every
:class:`~sbdeploy.nn.SpatialBottleneck` runs the forward of the requested lowering
(:data:`sbdeploy.nn.sb.LOWERINGS`, swapped in by :func:`~sbdeploy.nn.sb.lowering_mode`).
The torch exporter writes opset 18 and newer; the structural passes run (constant folding, dead-node
and identity elimination, BN folding, shape inference), metadata is written, the model is
converted to an older target opset where asked (:mod:`.opset`), checked with
``onnx.checker`` (full check) and against TensorRT's parser support list,
and the file is written atomically. The same source gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from sbdeploy.checkpoint import CheckpointConfig, atomic_write_bytes, load_checkpoint, require_folder
from sbdeploy.errors import CheckpointError, ConfigError, OnnxModelError, UnknownModelError
from sbdeploy.export.metadata import write_metadata
from sbdeploy.export.opset import downgrade_opset
from sbdeploy.models import create_model, model_info
from sbdeploy.nn.phase import TARGETS, deploy_form, target_lowering
from sbdeploy.nn.sb import SpatialBottleneck, lowering_mode
from sbdeploy.passes import DEFAULT_PASSES, TARGET_PASSES, PassReport, op_counts, run_passes
from sbdeploy.passes.trt_check import TrtCheckReport, check_trt_compat

EXPORT_LOWERINGS: tuple[str, ...] = ("grouped", "separate")
"""SB lowerings ``export`` offers: one grouped Conv/ConvTranspose pair per SB (default),
or one stride-2 pair per subgroup. Both match the dense reference."""

EXPORT_TARGETS: tuple[str, ...] = tuple(TARGETS)
"""Deploy targets ``export`` offers (:data:`sbdeploy.nn.phase.TARGETS`); None: the canonical form."""

MIN_OPSET = 13
TORCH_MIN_OPSET = 18  # the dynamo exporter's own minimum
INPUT_NAME, OUTPUT_NAME = "input", "logits"

_ZOO_NORMALIZATION = {
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


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


@dataclass(frozen=True)
class _Source:
    model: nn.Module
    config: CheckpointConfig
    weights_sha256: str
    kind: str  # "checkpoint" or "zoo"


def _zoo_source(name: str, options: dict[str, Any]) -> _Source:
    """A registered network with fixed-seed random weights (deterministic)."""
    from safetensors.torch import save as save_safetensors_bytes

    info = model_info(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(name, **options).eval()
    in_chans = int(options.get("in_chans", 3))
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mean, std = _ZOO_NORMALIZATION[info.family]
    if in_chans != 3:
        mean, std = (0.5,) * in_chans, (0.5,) * in_chans
    num_classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    sampling = options.get("sampling", "chessboard") if info.is_sb else None
    full_options = {**options, "num_classes": num_classes, "in_chans": in_chans}
    if sampling is not None:
        full_options["sampling"] = sampling
    config = CheckpointConfig(
        arch=name,
        options=full_options,
        input_size=info.input_size,
        mean=mean,
        std=std,
        class_names=tuple(str(i) for i in range(num_classes)),
        dataset="",
    )
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return _Source(model, config, sha256(save_safetensors_bytes(state)).hexdigest(), "zoo")


def resolve_source(source: str | Path, *, options: dict[str, Any] | None = None) -> _Source:
    """A checkpoint folder, or a zoo name (random weights). ``options`` only apply to zoo names."""
    path = Path(source)
    if path.is_file():
        require_folder(path)  # says what to do with a file
    if path.is_dir():
        if options:
            raise ConfigError(f"model options {sorted(options)} only apply to zoo names; {path} is a checkpoint")
        ckpt = load_checkpoint(path)
        return _Source(ckpt.model, ckpt.config, ckpt.weights_sha256, "checkpoint")
    try:
        return _zoo_source(str(source), dict(options or {}))
    except UnknownModelError as error:
        if path.exists() or "/" in str(source) or "\\" in str(source):
            raise CheckpointError(f"{source} is not a checkpoint folder (a folder with model.safetensors and config.json)") from None
        raise ConfigError(f"{source!r} is neither a checkpoint folder nor a zoo name: {error}") from None


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


def _check_options(opset: int, batch: str | int, input_size: tuple[int, int], lowering: str, target: str | None = None) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(f"opset must be {MIN_OPSET}..{newest}, got {opset}")
    if batch != "dynamic" and not (isinstance(batch, int) and batch >= 1):
        raise ConfigError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    if len(input_size) != 2 or min(input_size) < 1:
        raise ConfigError(f"input size must be two positive integers H, W, got {input_size}")
    if lowering not in EXPORT_LOWERINGS:
        raise ConfigError(f"unknown lowering {lowering!r}; choose one of {', '.join(EXPORT_LOWERINGS)}")
    if target is not None and target not in EXPORT_TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(EXPORT_TARGETS)}")


def export_module(
    model: nn.Module,
    *,
    in_chans: int,
    input_size: tuple[int, int],
    batch: str | int = "dynamic",
    opset: int = 17,
    lowering: str = "grouped",
    passes: Sequence[str] = DEFAULT_PASSES,
    target: str | None = None,
) -> tuple[onnx.ModelProto, list[PassReport]]:
    """Trace ``model`` (eval mode) to ONNX with the SB lowering, then run ``passes``.

    With ``target`` the model is traced in its deploy form for that engine (``lowering``
    does not apply) and :data:`~sbdeploy.passes.TARGET_PASSES` run after ``passes``.
    Input ``input`` ``[batch, in_chans, H, W]`` float32 (batch symbolic when ``"dynamic"``),
    output ``logits``. No metadata, nothing written.
    """
    _check_options(opset, batch, input_size, lowering, target)
    if model.training:
        raise ConfigError("export needs the model in eval mode (model.eval())")
    if target is not None:
        model = deploy_form(model, target)
        passes = (*passes, *(p for p in TARGET_PASSES if p not in passes))
    example = torch.zeros(2 if batch == "dynamic" else int(batch), in_chans, *input_size)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},) if batch == "dynamic" else None
    with lowering_mode(model, lowering), _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
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
    proto, reports = run_passes(proto, passes)
    if opset < TORCH_MIN_OPSET:
        proto = downgrade_opset(proto, opset)
    return proto, reports


def export_onnx(
    source: str | Path,
    out_path: str | Path,
    *,
    opset: int = 17,
    batch: str | int = "dynamic",
    input_size: tuple[int, int] | None = None,
    lowering: str = "grouped",
    passes: Sequence[str] = DEFAULT_PASSES,
    options: dict[str, Any] | None = None,
    target: str | None = None,
) -> ExportResult:
    """Export a checkpoint folder or a zoo name to ``out_path`` (ONNX).

    Args:
        source: checkpoint folder, or a registered model name (random weights, with a warning).
        out_path: the ``.onnx`` file to write (atomically).
        opset: target ONNX opset, 13 or newer.
        batch: ``"dynamic"`` or a fixed batch size.
        input_size: ``(H, W)``; default: the checkpoint's (the zoo default for a name).
        lowering: SB lowering of the canonical form, one of :data:`EXPORT_LOWERINGS`.
        passes: structural passes to run, by name (:data:`sbdeploy.passes.PASSES`).
        options: builder options (``sampling``, ``num_classes``, ``in_chans``) for a zoo name.
        target: deploy target (:data:`EXPORT_TARGETS`), or None for the canonical form.
    """
    from sbdeploy import __version__

    src = resolve_source(source, options=options)
    config = src.config
    size = (int(input_size[0]), int(input_size[1])) if input_size is not None else config.input_size
    notes = []
    if src.kind == "zoo":
        notes.append(f"{config.arch} has random weights (a zoo name, not a checkpoint): fine for speed, not for accuracy")
    proto, reports = export_module(
        src.model, in_chans=config.in_chans, input_size=size, batch=batch, opset=opset, lowering=lowering, passes=passes,
        target=target,
    )
    ran = [r.name for r in reports]
    has_sb = any(isinstance(m, SpatialBottleneck) for m in src.model.modules())
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
        "lowering": ("none" if not has_sb else target_lowering(target) if target else lowering),
        "target": target or "none",
        "passes": ran,
        "opset": opset,
    }
    proto.producer_name, proto.producer_version = "sbdeploy", __version__
    write_metadata(proto, metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise OnnxModelError(f"the exported graph fails onnx.checker ({error}); please report this as a bug") from None
    trt = check_trt_compat(proto)
    data = proto.SerializeToString(deterministic=True)
    path = Path(out_path)
    atomic_write_bytes(path, data)
    return ExportResult(
        path=path,
        metadata=metadata,
        pass_reports=reports,
        trt_check=trt,
        ops=op_counts(proto),
        sha256=sha256(data).hexdigest(),
        warnings=tuple(notes),
    )
