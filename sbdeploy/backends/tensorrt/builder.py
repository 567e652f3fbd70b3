"""ONNX -> TensorRT engine: model preparation, optimization profiles, the build, the sidecar.

What needs no TensorRT is a plain function tested on the CPU; :func:`build_engine` strings them
together around TensorRT and writes the plan and ``NAME.engine.json`` atomically.
"""

from __future__ import annotations

import datetime
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, SupportsInt

import numpy as np

from sbdeploy._io import atomic_write_bytes, sha256_file
from sbdeploy._version import __version__
from sbdeploy.backends.tensorrt import _compat
from sbdeploy.backends.tensorrt.sidecar import EngineSidecar, current_machine, sidecar_path, write_sidecar
from sbdeploy.errors import ConfigError, EngineBuildError, OnnxModelError
from sbdeploy.targets import FILE_PRECISIONS

if TYPE_CHECKING:
    import onnx
    import tensorrt as trt

Precision = Literal["fp32", "fp16", "int8"]
# Called as progress(phase, step, num_steps); step == num_steps when a phase ends.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildOptions:
    """How to build one engine (the flags of ``sbdeploy build-engine``)."""

    precision: Precision = "fp32"  # fp16: the fp16 ONNX pass first; int8: the QDQ model of the int8 pass
    min_batch: int = 1  # the optimization profile's batch range
    opt_batch: int = 8
    max_batch: int = 32
    timing_cache: Path | None = None  # loaded before the build, saved back after it
    opt_level: int = 3  # builder_optimization_level, 0 (fast build) .. 5 (slow build, maybe faster engine)
    workspace_mib: int | None = None  # memory pool limit for tactics; None: TensorRT's default (all GPU memory)
    tf32: bool = True  # TensorRT's and trtexec's default (fp32 on TF32 tensor cores); --no-tf32 for strict fp32
    version_compatible: bool = False  # runs on later TensorRT versions of the same major, a little slower
    fp16_flag: bool = False  # TensorRT 10.x only: weakly typed network + BuilderFlag.FP16 instead of an fp16 ONNX

    def __post_init__(self) -> None:
        if self.precision not in FILE_PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(FILE_PRECISIONS)}, got {self.precision!r}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(
                f"batch sizes must satisfy 1 <= min <= opt <= max, got min {self.min_batch}, opt {self.opt_batch}, max {self.max_batch}"
            )
        if not 0 <= self.opt_level <= 5:
            raise ConfigError(f"--opt-level must be 0..5, got {self.opt_level}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ConfigError(f"--workspace must be a positive number of MiB, got {self.workspace_mib}")
        if self.fp16_flag and self.precision != "fp16":
            raise ConfigError("--fp16-flag only makes sense with --fp16")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["timing_cache"] = str(self.timing_cache) if self.timing_cache else None
        return data


@dataclass(frozen=True)
class ProfileShape:
    """One input's min/opt/max shape in an optimization profile."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class PreparedModel:
    """The ONNX model handed to TensorRT, and how it got there."""

    model: onnx.ModelProto
    route: str  # "strongly-typed" or "fp16-flag" (10.x only)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_engine` wrote."""

    engine_path: Path
    sidecar_path: Path
    sidecar: EngineSidecar
    warnings: tuple[str, ...] = ()


def onnx_input_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Graph inputs (initializers excluded) -> shape, ``None`` for a symbolic or unknown dimension."""
    initializers = {i.name for i in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
    return shapes


def compute_profiles(model: onnx.ModelProto, options: BuildOptions) -> tuple[list[ProfileShape], list[str]]:
    """One optimization profile (the batch dimension spans min/opt/max; the others must be fixed), and notes."""
    profiles, notes = [], []
    for name, shape in onnx_input_shapes(model).items():
        if not shape:
            raise ConfigError(f"input {name!r} is a scalar or has no shape; sbdeploy builds engines for image batches")
        rest = shape[1:]
        if any(d is None for d in rest):
            dims = "x".join("?" if d is None else str(d) for d in shape)
            raise ConfigError(
                f"input {name!r} has shape {dims}: only the batch dimension may be dynamic; "
                "export the ONNX with a fixed input size (sbdeploy export --input-size H W)"
            )
        fixed = tuple(int(d) for d in rest if d is not None)
        batch = shape[0]
        if batch is None:
            lo, mid, hi = options.min_batch, options.opt_batch, options.max_batch
        else:
            lo = mid = hi = batch
            if (options.min_batch, options.opt_batch, options.max_batch) != (batch, batch, batch):
                notes.append(f"input {name!r} has a fixed batch of {batch}; the engine takes exactly that batch")
        profiles.append(ProfileShape(name, (lo, *fixed), (mid, *fixed), (hi, *fixed)))
    if not profiles:
        raise OnnxModelError("the ONNX graph has no inputs")
    return profiles, notes


def has_qdq(model: onnx.ModelProto) -> bool:
    """True when the graph already holds QuantizeLinear/DequantizeLinear pairs (an int8 QDQ model)."""
    return {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}


def prepare_model(
    model: onnx.ModelProto, options: BuildOptions, calibration: np.ndarray | None = None
) -> PreparedModel:
    """The ONNX model TensorRT should parse for ``options.precision`` (its types: fp16 from ``to_fp16``, int8 a QDQ
    model, given or made from ``calibration``), the weights the graph computes folded into initializers first."""
    from sbdeploy.passes.constant_folding import materialize_weights

    model = materialize_weights(model)
    if options.precision == "fp32":
        return PreparedModel(model, "strongly-typed")
    if options.precision == "fp16":
        if options.fp16_flag:
            return PreparedModel(
                model, "fp16-flag", ("TensorRT 10.x BuilderFlag.FP16: TensorRT picks fp16 kernels per layer",)
            )
        from sbdeploy.passes import to_fp16

        return PreparedModel(to_fp16(model), "strongly-typed", ("ONNX converted to fp16 by sbdeploy.passes.to_fp16",))
    if has_qdq(model):
        return PreparedModel(model, "strongly-typed", ("the ONNX model already holds QDQ nodes; used as is",))
    if calibration is None:
        raise ConfigError(
            "--int8 needs calibration data (--calibration FILE.npy, a float32 array N x C x H x W of real inputs) "
            "or an ONNX model that already holds QuantizeLinear/DequantizeLinear nodes"
        )
    from sbdeploy.passes.int8 import TRT_INT8, quantize_int8

    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    return PreparedModel(
        quantize_int8(model, calibration, recipe=TRT_INT8),
        "strongly-typed",
        (
            f"QDQ model made by sbdeploy.passes.quantize_int8 ({TRT_INT8.describe()}) from {len(calibration)} calibration inputs",
        ),
    )


_PRECISION_WORDS = ("int8", "fp8", "bf16", "bfloat16", "fp16", "half", "fp32", "float", "int32", "int64", "bool")
_PRECISION_ALIASES = {"bfloat16": "bf16", "half": "fp16", "float": "fp32"}


def _precision_of(datatype: str) -> str:
    """An inspector data type or format text -> fp32/fp16/bf16/fp8/int8/..., "unknown" when it names none."""
    word = next((w for w in _PRECISION_WORDS if w in datatype.lower()), None)
    return "unknown" if word is None else _PRECISION_ALIASES.get(word, word)


def _tensor_precision(tensor: dict[str, Any]) -> str:
    """A layer tensor's precision: 11.x's data-type field ("Half"), else 10.x's ``Format/Datatype`` text."""
    for key, value in tensor.items():
        if key.lower() == "datatype" and value is not None:
            return _precision_of(str(value))
    return _precision_of(str(tensor.get("Format/Datatype", tensor.get("Format", ""))))


def precisions_from_layer_info(info: dict[str, Any] | str) -> dict[str, int]:
    """Layers per output precision, from ``EngineInspector.get_engine_information(JSON)`` of TensorRT 10.x or 11.x."""
    data = json.loads(info) if isinstance(info, str) else info
    counts: Counter[str] = Counter()
    for layer in data.get("Layers", []) if isinstance(data, dict) else []:
        if not isinstance(layer, dict):  # LAYER_NAMES_ONLY verbosity: a list of names
            counts["unknown"] += 1
            continue
        tensors = layer.get("Outputs") or layer.get("Inputs") or [{}]
        counts[_tensor_precision(tensors[0] if isinstance(tensors[0], dict) else {})] += 1
    return dict(sorted(counts.items()))


def format_parser_errors(errors: list[tuple[int, str, str, str]], path: Path) -> str:
    """One line per parser error: node index, name, operator, description."""
    lines = [f"TensorRT's ONNX parser rejected {path} ({len(errors)} error{'s' if len(errors) != 1 else ''}):"]
    for node, name, op, desc in errors:
        where = f"node {node} ({name or '?'}, {op or '?'})" if node >= 0 else "model"
        lines.append(f"  {where}: {desc}")
    lines.append("Check the op against onnx-tensorrt's operators.md, or re-export with another opset.")
    return "\n".join(lines)


def _errors(messages: list[str]) -> str:
    return "; ".join(m for m in messages if m.startswith(("[ERROR]", "[INTERNAL_ERROR]"))) or "no details logged"


def _make_progress_monitor(progress: ProgressCallback) -> trt.IProgressMonitor:
    import tensorrt as trt

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        # TensorRT 11.4 declares the counts SupportsInt (10.13: int); TensorRT passes ints.
        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: SupportsInt) -> None:
            self.steps[phase_name] = int(num_steps)
            progress(phase_name, 0, int(num_steps))

        def step_complete(self, phase_name: str, step: SupportsInt) -> bool:
            progress(phase_name, int(step) + 1, self.steps.get(phase_name, int(step) + 1))
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            total = self.steps.pop(phase_name, 1)
            progress(phase_name, total, total)

    return _Monitor()


def _read_back_precisions(
    serialized: bytes, profiles: list[ProfileShape], logger: trt.ILogger, messages: list[str], *, host_code: bool
) -> dict[str, int]:
    """The fresh engine's layers per precision at the opt shapes; EngineBuildError (nothing written) if it won't load."""
    import tensorrt as trt

    runtime, engine = _compat.deserialize_engine(serialized, logger, host_code=host_code)
    if engine is None:
        raise EngineBuildError(
            f"TensorRT cannot load the engine it just built ({_errors(messages)}); nothing was written"
        )
    context = engine.create_execution_context()
    for shape in profiles:
        context.set_input_shape(shape.name, _compat.to_dims(shape.opt))
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    del inspector, context, engine, runtime  # in this order: the engine goes before the runtime that made it
    return precisions_from_layer_info(info)


def _describe(tensor: trt.ITensor) -> dict[str, Any]:
    """Name, shape (-1: dynamic) and numpy dtype name of a network input or output."""
    import tensorrt as trt

    return {
        "name": tensor.name,
        "shape": list(_compat.dims(tensor.shape)),
        "dtype": np.dtype(trt.nptype(tensor.dtype)).name,
    }


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    options: BuildOptions,
    *,
    calibration: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
) -> BuildResult:
    """Build a TensorRT engine from an ONNX file and write it with its sidecar ``NAME.engine.json``;
    ``calibration``: float32 inputs for the int8 pass (on a model without QDQ)."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    from sbdeploy.export.metadata import load_onnx, read_metadata  # lazily: importing the builder needs no onnx

    model = load_onnx(onnx_path)  # the user's input is checked first, on any machine
    profiles, notes = compute_profiles(model, options)
    if options.precision == "int8" and calibration is None and not has_qdq(model):
        prepare_model(model, options)  # raises the ConfigError about calibration data
    _compat.require_tensorrt()
    import tensorrt as trt

    machine = current_machine()
    prepared = prepare_model(model, options, calibration)
    report = progress or (lambda phase, step, total: None)

    messages: list[str] = []
    logger = _compat.make_logger(messages)
    builder = trt.Builder(logger)
    network = builder.create_network(_compat.network_flags(strongly_typed=prepared.route != "fp16-flag"))
    parser = trt.OnnxParser(network, logger)
    report("parse ONNX", 0, 1)
    # `path` is the model file's path (for external weights), as TensorRT's OnnxParser.parse documents.
    if not parser.parse(prepared.model.SerializeToString(), str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        details = [(int(e.node()), str(e.node_name()), str(e.node_operator()), str(e.desc())) for e in errors]
        raise OnnxModelError(format_parser_errors(details, onnx_path))
    report("parse ONNX", 1, 1)

    config = builder.create_builder_config()
    config.builder_optimization_level = options.opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if prepared.route == "fp16-flag":
        _compat.enable_fp16_flag(config)
    profile = builder.create_optimization_profile()
    for shape in profiles:
        profile.set_shape(
            shape.name, _compat.to_dims(shape.min), _compat.to_dims(shape.opt), _compat.to_dims(shape.max)
        )
    config.add_optimization_profile(profile)

    cache_bytes = options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.is_file() else b""
    try:
        cache = config.create_timing_cache(cache_bytes)
        loaded = cache is not None and config.set_timing_cache(cache, False)
    except (RuntimeError, TypeError, ValueError):  # a truncated or foreign file
        loaded = False
    if not loaded:
        notes.append(
            f"timing cache {options.timing_cache} is unreadable or from another TensorRT/GPU; started a fresh one"
        )
        config.set_timing_cache(config.create_timing_cache(b""), False)
    monitor = _make_progress_monitor(report)  # held here: TensorRT calls it during the build
    config.progress_monitor = monitor

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_time = time.perf_counter() - start
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build {onnx_path} ({options.precision}): {_errors(messages)}")
    plan = bytes(memoryview(serialized))

    if options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    report("read back precisions", 0, 1)
    actual = _read_back_precisions(plan, profiles, logger, messages, host_code=options.version_compatible)
    report("read back precisions", 1, 1)

    atomic_write_bytes(engine_path, plan)
    sidecar = EngineSidecar(
        built_on=machine,
        requested_precision=options.precision,
        actual_precisions=actual,
        profiles=[{p.name: p.to_json() for p in profiles}],
        builder_options={**options.to_json(), "route": prepared.route, "notes": [*prepared.notes, *notes]},
        onnx_sha256=sha256_file(onnx_path),
        engine_sha256=sha256_file(engine_path),
        build_time_s=round(build_time, 3),
        inputs=[_describe(network.get_input(i)) for i in range(network.num_inputs)],
        outputs=[_describe(network.get_output(i)) for i in range(network.num_outputs)],
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        sbdeploy_version=__version__,
        onnx_metadata=read_metadata(model),  # what bench and validate read from the engine: arch, target, input shape
    )
    write_sidecar(engine_path, sidecar)
    warnings = tuple(notes) + tuple(m for m in messages if m.startswith("[WARNING]"))[:5]
    return BuildResult(engine_path, sidecar_path(engine_path), sidecar, warnings)
