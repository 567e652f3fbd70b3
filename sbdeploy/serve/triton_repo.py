"""Triton model repositories from sbdeploy artifacts, correct by construction.

Each artifact becomes one model folder ``REPO/NAME/`` holding ``config.pbtxt``, the
artifact as version ``1/`` and a ``README.md`` that says where it came from. A
TensorRT engine (``.engine``/``.plan``, with its ``.engine.json`` sidecar) becomes
platform ``tensorrt_plan``; an ONNX file becomes ``onnxruntime_onnx``. Names,
dtypes and dims come from the artifact (the ONNX graph, or the engine's sidecar),
never from the user, and ``max_batch_size`` is checked against what the artifact
accepts: for an engine, every batch size 1..max_batch_size must lie inside one of
its optimization profiles (Triton's dynamic batcher sends any of them; the mismatch
of server#4445 and mmdeploy#472 is refused here, not at load time).

Every ``config.pbtxt`` is parsed back with Triton's own ``ModelConfig`` protobuf
(shipped by ``tritonclient``) and checked against the rules Triton applies when it
loads a model (:func:`check_model_config`). Nothing is written until every model
passes, and each model folder appears by one rename.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sbdeploy._io import sha256_file
from sbdeploy.backends.tensorrt.sidecar import sidecar_path
from sbdeploy.errors import ArtifactError, ConfigError

PLATFORMS = {"onnx": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_FILES = {"onnx": "model.onnx", "tensorrt": "model.plan"}
ENGINE_SUFFIXES = (".engine", ".plan")
DEFAULT_MAX_BATCH = 32  # for artifacts with an unbounded batch dimension (dynamic ONNX)

# numpy dtype -> Triton's DataType enum (model_config.proto).
TRITON_DTYPES = {
    np.dtype(np.bool_): "TYPE_BOOL",
    np.dtype(np.uint8): "TYPE_UINT8",
    np.dtype(np.int8): "TYPE_INT8",
    np.dtype(np.int16): "TYPE_INT16",
    np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.float16): "TYPE_FP16",
    np.dtype(np.float32): "TYPE_FP32",
    np.dtype(np.float64): "TYPE_FP64",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class IOTensor:
    """One input or output of an artifact, with its full shape (batch first); ``None`` is a dynamic dim."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class ArtifactSpec:
    """What a Triton config needs to know about one artifact."""

    path: Path
    kind: Literal["onnx", "tensorrt"]
    inputs: tuple[IOTensor, ...]
    outputs: tuple[IOTensor, ...]
    # Largest N such that every batch size 1..N is accepted; 0: batch 1 is not accepted
    # (fixed batch > 1, or an engine profile that starts above 1); None: unbounded.
    max_batch: int | None
    fixed_batch: int | None = None  # the batch dim is fixed to this value (no dynamic batch)
    opt_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # engine profile 0 opt shapes
    tensorrt_version: str | None = None
    gpu: str | None = None
    fp16_weights: bool = False  # an ONNX whose initializers include float16 (sbdeploy.passes.to_fp16's output)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TritonOptions:
    """Options of the generated configs (one set for every model of a repository)."""

    max_batch: int | None = None  # None: the largest the artifact allows (capped at DEFAULT_MAX_BATCH)
    instances: int = 1  # instance_group count
    preferred_batch: tuple[int, ...] = ()  # dynamic_batching preferred_batch_size
    queue_delay_us: int = 100  # dynamic_batching max_queue_delay_microseconds
    onnx_device: Literal["cpu", "gpu"] = "cpu"  # instance kind of ONNX models (engines always run on GPU)
    onnx_trt_fp16: bool = (
        False  # fp16 ONNX models: TensorRT accelerator, precision_mode FP16 (implies onnx_device="gpu")
    )


@dataclass(frozen=True)
class TritonModel:
    """One generated model folder."""

    name: str
    platform: str
    folder: Path
    max_batch_size: int
    config_text: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class TritonRepo:
    """The result of :func:`write_triton_repo`."""

    root: Path
    models: tuple[TritonModel, ...]
    validated_with: str | None  # "tritonclient X model_config.proto", or None when the configs could not be checked
    not_validated: str | None = None  # why not, and what to install (None when checked)


# --------------------------------------------------------------------------- reading artifacts


def read_artifact(path: str | Path) -> ArtifactSpec:
    """Read an ``.onnx`` file or a TensorRT engine (``.engine``/``.plan`` with its ``.json`` sidecar)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"{path} is a folder; give .onnx files and .engine/.plan files"
            if path.is_dir()
            else f"{path} does not exist"
        )
    if path.suffix == ".onnx":
        return read_onnx_artifact(path)
    if path.suffix in ENGINE_SUFFIXES:
        return read_engine_artifact(path)
    raise ArtifactError(f"{path}: unknown artifact type; expected an .onnx file or a TensorRT .engine/.plan")


def _batch_of(inputs: Sequence[IOTensor], outputs: Sequence[IOTensor], where: str) -> tuple[int | None, bool]:
    """(fixed batch or None, dynamic?) of the first dimension, shared by all inputs.

    Outputs must agree, or leave their first dimension unknown (shape inference often does).
    """
    if any(not t.shape for t in (*inputs, *outputs)):
        raise ArtifactError(f"{where}: a scalar input/output has no batch dimension; Triton cannot batch it")
    firsts = {t.shape[0] for t in inputs}
    if len(firsts) != 1:
        raise ArtifactError(f"{where}: the inputs disagree on the batch dimension ({sorted(map(str, firsts))})")
    first = firsts.pop()
    clash = [t.name for t in outputs if t.shape[0] is not None and t.shape[0] != first]
    if clash:
        raise ArtifactError(
            f"{where}: output(s) {clash} do not share the inputs' batch dimension ({first or 'dynamic'})"
        )
    return (None, True) if first is None else (first, False)


def read_onnx_artifact(path: Path) -> ArtifactSpec:
    """Inputs, outputs and batch dimension from the ONNX graph itself (initializers are not inputs)."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError/ValueError/... for corrupt files
        raise ArtifactError(f"{path} is not a readable ONNX model ({type(error).__name__}); re-export it") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}

    def tensor(value: Any) -> IOTensor:
        tt = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tt.HasField("shape"):
            raise ArtifactError(f"{path}: {value.name!r} is not a tensor of known rank; Triton needs its dims")
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception:
            raise ArtifactError(f"{path}: {value.name!r} has ONNX element type {tt.elem_type}, unknown here") from None
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim)
        return IOTensor(value.name, dtype, shape)

    inputs = tuple(tensor(v) for v in graph.input if v.name not in initializers)
    outputs = tuple(tensor(v) for v in graph.output)
    if not inputs or not outputs:
        raise ArtifactError(f"{path}: the graph has no inputs or no outputs")
    fixed, dynamic = _batch_of(inputs, outputs, str(path))
    max_batch = None if dynamic else (1 if fixed == 1 else 0)
    metadata = {p.key: p.value for p in model.metadata_props}
    metadata["opset"] = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
    fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    return ArtifactSpec(
        path, "onnx", inputs, outputs, max_batch, fixed_batch=fixed, metadata=metadata, fp16_weights=fp16
    )


def _dims(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) for d in value):
        raise ArtifactError(f"{what} must be a list of integers, got {value!r}")
    return tuple(value)


def read_engine_artifact(path: Path) -> ArtifactSpec:
    """Inputs, outputs, TensorRT version, GPU and profiles from the engine's sidecar.

    The sidecar (``NAME.engine.json``, :mod:`sbdeploy.backends.tensorrt.sidecar`) is read
    and its ``engine_sha256`` checked against the engine file: a stale sidecar would
    describe another engine.
    """
    from sbdeploy.backends.tensorrt.sidecar import check_engine_hash, read_sidecar

    side = sidecar_path(path)
    sidecar = read_sidecar(path)  # EngineMismatchError when corrupt
    if sidecar is None:
        raise ArtifactError(
            f"{path}: its sidecar {side.name} is missing; Triton's config needs the engine's I/O and profiles, "
            "rebuild the engine with `sbdeploy build-engine` (which writes both)"
        )
    check_engine_hash(path, sidecar)
    version = sidecar.built_on.tensorrt_version
    gpu = f"{sidecar.built_on.gpu_name} (compute capability {sidecar.built_on.compute_capability})"
    try:

        def tensors(items: list[dict[str, Any]]) -> tuple[IOTensor, ...]:
            specs = []
            for t in items:
                shape = _dims(t["shape"], f"{side.name}: {t['name']!r} shape")
                specs.append(IOTensor(str(t["name"]), np.dtype(t["dtype"]), tuple(None if d < 0 else d for d in shape)))
            return tuple(specs)

        inputs, outputs = tensors(sidecar.inputs), tensors(sidecar.outputs)
        profiles = [
            {
                name: {k: _dims(p[name][k], f"{side.name}: profile {name!r} {k}") for k in ("min", "opt", "max")}
                for name in p
            }
            for p in sidecar.profiles
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise ArtifactError(
            f"{side}: inputs, outputs or profiles are malformed ({type(error).__name__}: {error}); "
            "rebuild the engine with `sbdeploy build-engine`"
        ) from None
    if not inputs or not outputs:
        raise ArtifactError(f"{side}: lists no inputs or no outputs")
    fixed, dynamic = _batch_of(inputs, outputs, str(side))
    if not dynamic:
        max_batch = 1 if fixed == 1 else 0
    else:
        if not profiles:
            raise ArtifactError(f"{side}: the engine has a dynamic batch dimension but the sidecar lists no profiles")
        ranges = []
        for i, p in enumerate(profiles):
            missing = [t.name for t in inputs if t.name not in p]
            if missing:
                raise ArtifactError(f"{side}: profile {i} has no shapes for input(s) {missing}")
            # A profile accepts batch b when every input accepts it.
            ranges.append((max(p[t.name]["min"][0] for t in inputs), min(p[t.name]["max"][0] for t in inputs)))
        max_batch = _covered_from_one(ranges)
    opt = {name: s["opt"] for name, s in profiles[0].items()} if profiles else {}
    return ArtifactSpec(
        path,
        "tensorrt",
        inputs,
        outputs,
        max_batch,
        fixed_batch=fixed,
        opt_shapes=opt,
        tensorrt_version=version,
        gpu=gpu,
    )


def _covered_from_one(ranges: Sequence[tuple[int, int]]) -> int:
    """Largest N such that every batch 1..N lies in one of the ``(lo, hi)`` ranges (0 if 1 is not covered)."""
    covered = 0
    for lo, hi in sorted(ranges):
        if lo > covered + 1:
            break
        covered = max(covered, hi)
    return covered


# --------------------------------------------------------------------------- config text


class _Enum(str):
    """A protobuf enum value: written unquoted."""


def _pbtxt(value: Any, indent: int = 0) -> str:
    """Render a nested dict/list structure as protobuf text format (lists of messages as repeated fields)."""
    pad = "  " * indent
    lines = []
    for key, item in value.items():
        for element in item if isinstance(item, list) and (not item or isinstance(item[0], dict)) else [item]:
            if isinstance(element, dict):
                lines.append(f"{pad}{key} {{\n{_pbtxt(element, indent + 1)}{pad}}}")
            else:
                lines.append(f"{pad}{key}: {_scalar(element)}")
    return "".join(line + "\n" for line in lines)


def _scalar(value: Any) -> str:
    if isinstance(value, list):
        return "[ " + ", ".join(_scalar(v) for v in value) + " ]"
    if isinstance(value, _Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a quoted string with escapes


def resolve_max_batch(spec: ArtifactSpec, requested: int | None) -> int:
    """The ``max_batch_size`` to write, or a ConfigError saying why ``requested`` cannot work."""
    where = spec.path.name
    if requested is not None and requested < 0:
        raise ConfigError(f"--max-batch must be >= 0, got {requested}")
    if spec.fixed_batch is not None and spec.fixed_batch != 1:
        if requested:
            raise ConfigError(
                f"{where} has a fixed batch of {spec.fixed_batch}, so Triton cannot batch requests: "
                f"use --max-batch 0, or re-export/rebuild it with a dynamic batch"
            )
        return 0
    if spec.max_batch is None:  # unbounded dynamic batch
        return DEFAULT_MAX_BATCH if requested is None else requested
    if requested is None:
        if spec.max_batch == 0:
            raise ConfigError(
                f"{where}: no optimization profile accepts batch 1, and Triton's dynamic batcher sends batches of "
                f"1..max_batch_size; rebuild the engine with a profile whose min batch is 1, or use --max-batch 0"
            )
        return spec.max_batch
    if requested > spec.max_batch:
        limit = (
            f"the engine's profiles cover batches 1..{spec.max_batch} only"
            if spec.kind == "tensorrt"
            else f"its batch dimension is fixed to {spec.fixed_batch}"
        )
        raise ConfigError(
            f"{where}: --max-batch {requested} is outside what the artifact accepts ({limit}); "
            f"use --max-batch {spec.max_batch} or less, or rebuild with a larger max profile"
        )
    return requested


def _triton_dtype(tensor: IOTensor, where: str) -> _Enum:
    name = TRITON_DTYPES.get(np.dtype(tensor.dtype))
    if name is None:
        raise ArtifactError(f"{where}: {tensor.name!r} has dtype {tensor.dtype}, which Triton configs cannot express")
    return _Enum(name)


def build_model_config(spec: ArtifactSpec, name: str, options: TritonOptions) -> tuple[str, int, list[str]]:
    """The ``config.pbtxt`` text of one model, its ``max_batch_size`` and notes for its README."""
    if options.instances < 1:
        raise ConfigError(f"--instances must be >= 1, got {options.instances}")
    if options.queue_delay_us < 0:
        raise ConfigError(f"--queue-delay-us must be >= 0, got {options.queue_delay_us}")
    where = spec.path.name
    max_batch = resolve_max_batch(spec, options.max_batch)
    notes: list[str] = []
    drop = 1 if max_batch > 0 else 0  # with batching, Triton's dims exclude the batch dimension

    def dims(t: IOTensor) -> list[int]:
        return [-1 if d is None else d for d in t.shape[drop:]]

    config: dict[str, Any] = {
        "name": name,
        "platform": PLATFORMS[spec.kind],
        "max_batch_size": max_batch,
        "default_model_filename": MODEL_FILES[spec.kind],
        "input": [{"name": t.name, "data_type": _triton_dtype(t, where), "dims": dims(t)} for t in spec.inputs],
        "output": [{"name": t.name, "data_type": _triton_dtype(t, where), "dims": dims(t)} for t in spec.outputs],
    }
    if max_batch > 0:
        preferred = sorted(set(options.preferred_batch))
        bad = [b for b in preferred if not 1 <= b <= max_batch]
        if bad:
            raise ConfigError(f"--preferred-batch {bad} outside 1..{max_batch} (the model's max_batch_size)")
        batching: dict[str, Any] = {"max_queue_delay_microseconds": options.queue_delay_us}
        if preferred:
            batching["preferred_batch_size"] = preferred
        config["dynamic_batching"] = batching
    else:
        notes.append("no dynamic batching: max_batch_size is 0 (the artifact cannot take batches of 1..N)")
    gpu_form = _gpu_only_form(spec)
    if gpu_form is not None:
        notes.append(f"GPU instances: the file holds the {gpu_form} target's form, which only GPU backends run")
    gpu = spec.kind == "tensorrt" or options.onnx_device == "gpu" or options.onnx_trt_fp16 or gpu_form is not None
    config["instance_group"] = [{"count": options.instances, "kind": _Enum("KIND_GPU" if gpu else "KIND_CPU")}]
    if spec.kind == "onnx" and options.onnx_trt_fp16:
        if not spec.fp16_weights:
            raise ConfigError(
                f"{where} has fp32 weights: --onnx-trt-fp16's precision_mode FP16 is TensorRT 10.x's FP16 builder flag, "
                "which TensorRT 11 (strongly typed) removed, so there the engine would stay fp32; give an fp16 ONNX "
                "(sbdeploy export --target T --fp16, or sbdeploy pipeline --fp16, writes one; sbdeploy.passes.to_fp16)"
            )
        notes.append(
            "TensorRT accelerator: the fp16 ONNX sets the precision (TensorRT 11 is strongly typed); "
            "precision_mode FP16 is what TensorRT 10.x's weakly typed build also needs"
        )
        accelerator = {"name": "tensorrt", "parameters": [{"key": "precision_mode", "value": "FP16"}]}
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}
    warmup = _warmup(spec, max_batch, drop)
    if warmup:
        config["model_warmup"] = warmup
    else:
        notes.append("no model warm-up: an input has dynamic non-batch dims and no profile gives an opt shape")
    return _pbtxt(config), max_batch, notes


def _gpu_only_form(spec: ArtifactSpec) -> str | None:
    """The deploy target of an sbdeploy ONNX file whose form only GPU backends run (sbdeploy.targets), else None."""
    from sbdeploy.targets import TARGETS

    try:
        name = json.loads(spec.metadata.get("sbdeploy.target", "null"))
    except json.JSONDecodeError:
        return None
    target = TARGETS.get(name) if isinstance(name, str) else None
    return None if target is None or spec.kind != "onnx" or "ort-cpu" in target.backends else target.name


def _warmup(spec: ArtifactSpec, max_batch: int, drop: int) -> list[dict[str, Any]]:
    """Random-data warm-up samples at batch 1 and at max_batch_size (concrete dims required)."""
    inputs: list[dict[str, Any]] = []
    for t in spec.inputs:
        shape = list(t.shape)
        if spec.opt_shapes.get(t.name):
            shape = [d if d is not None else o for d, o in zip(shape, spec.opt_shapes[t.name])]
        rest = shape[drop:]
        if any(d is None for d in rest):
            return []
        value = {"data_type": _Enum(TRITON_DTYPES[np.dtype(t.dtype)]), "dims": rest, "random_data": True}
        inputs.append({"key": t.name, "value": value})
    batches = sorted({1, max_batch}) if max_batch > 0 else [1]
    return [{"name": f"random_batch_{b}", "batch_size": b, "inputs": inputs} for b in batches]


# --------------------------------------------------------------------------- validation


NO_TRITONCLIENT = "tritonclient is not installed (pip install 'sbdeploy[serve]')"
NO_GRPC = (
    "tritonclient is installed without its grpc part, which holds Triton's model_config.proto "
    "(pip install 'tritonclient[grpc]', or 'sbdeploy[serve]')"
)


def _model_config_pb2() -> tuple[Any | None, str | None]:
    """Triton's ``model_config_pb2`` module, or None and why it cannot be imported."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return None, NO_TRITONCLIENT
    except RuntimeError:  # tritonclient.grpc raises it when grpcio is missing (tritonclient[http] alone)
        return None, NO_GRPC
    return model_config_pb2, None


def validator_name() -> str | None:
    """Which model_config.proto :func:`check_model_config` parses with, or None (see :func:`validator_problem`)."""
    if _model_config_pb2()[0] is None:
        return None
    from importlib.metadata import version

    return f"tritonclient {version('tritonclient')} model_config.proto"


def validator_problem() -> str | None:
    """Why the configs cannot be checked here, with what to install; None when they can."""
    return _model_config_pb2()[1]


def check_model_config(text: str) -> Any:
    """Parse ``text`` with Triton's ``ModelConfig`` protobuf and apply Triton's load-time rules.

    Returns the parsed message. Raises ConfigError with every problem found, or
    ImportError (saying what to install) when tritonclient or its grpc part is not installed.
    """
    pb2, problem = _model_config_pb2()
    if pb2 is None:
        raise ImportError(problem)
    from google.protobuf import text_format

    config = pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ConfigError(f"config.pbtxt does not parse as Triton's ModelConfig: {error}") from None
    problems = []
    if not config.name or not _NAME_RE.match(config.name):
        problems.append(f"model name {config.name!r} is empty or not a folder-safe name")
    if config.platform not in PLATFORMS.values():
        problems.append(f"platform {config.platform!r} is not one sbdeploy writes")
    if config.max_batch_size < 0:
        problems.append("max_batch_size is negative")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        if not tensors:
            problems.append(f"no {kind}")
        names = [t.name for t in tensors]
        if len(set(names)) != len(names):
            problems.append(f"duplicate {kind} names {names}")
        for t in tensors:
            if t.data_type == pb2.TYPE_INVALID:
                problems.append(f"{kind} {t.name!r} has no data_type")
            if not t.dims and config.max_batch_size == 0:
                problems.append(f"{kind} {t.name!r} has no dims")
            if any(d == 0 or d < -1 for d in t.dims):
                problems.append(f"{kind} {t.name!r} has dims {list(t.dims)}: each must be -1 or positive")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append("dynamic_batching needs max_batch_size > 0")
        for b in config.dynamic_batching.preferred_batch_size:
            if not 1 <= b <= config.max_batch_size:
                problems.append(f"preferred_batch_size {b} outside 1..max_batch_size ({config.max_batch_size})")
    for group in config.instance_group:
        if group.count < 1:
            problems.append(f"instance_group count {group.count} < 1")
        if config.platform == "tensorrt_plan" and group.kind != pb2.ModelInstanceGroup.KIND_GPU:
            problems.append("a tensorrt_plan model can only run on KIND_GPU instances")
    inputs = {t.name: t for t in config.input}
    for sample in config.model_warmup:
        if not 1 <= sample.batch_size <= max(1, config.max_batch_size):
            problems.append(f"warm-up {sample.name!r} batch_size {sample.batch_size} outside 1..max(1, max_batch_size)")
        if set(sample.inputs) != set(inputs):
            problems.append(f"warm-up {sample.name!r} feeds {sorted(sample.inputs)}, the model takes {sorted(inputs)}")
        for key, value in sample.inputs.items():
            ref = inputs.get(key)
            if ref is None:
                continue
            if value.data_type != ref.data_type:
                problems.append(f"warm-up {sample.name!r} input {key!r} has another data_type than the input")
            if len(value.dims) != len(ref.dims) or any(
                d < 1 or (r != -1 and d != r) for d, r in zip(value.dims, ref.dims)
            ):
                problems.append(
                    f"warm-up {sample.name!r} input {key!r} dims {list(value.dims)} do not fit {list(ref.dims)}"
                )
    if problems:
        raise ConfigError(f"config.pbtxt of {config.name!r} breaks Triton's rules: " + "; ".join(problems))
    return config


# --------------------------------------------------------------------------- writing


def _external_data_files(spec: ArtifactSpec) -> list[str]:
    """Relative paths of the external-data files an ONNX model refers to (copied beside model.onnx)."""
    if spec.kind != "onnx":
        return []
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(spec.path), load_external_data=False)
    locations = {
        entry.value
        for tensor in model.graph.initializer
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for location in locations:
        if Path(location).is_absolute() or ".." in Path(location).parts or not (spec.path.parent / location).is_file():
            raise ArtifactError(f"{spec.path}: external data {location!r} is missing or outside the model's folder")
    return sorted(locations)


def _readme(spec: ArtifactSpec, model: TritonModel, validated_with: str | None, not_validated: str | None) -> str:
    rows = "\n".join(
        f"| {kind} | `{t.name}` | {TRITON_DTYPES[np.dtype(t.dtype)]} | {list(-1 if d is None else d for d in t.shape)} |"
        for kind, tensors in (("input", spec.inputs), ("output", spec.outputs))
        for t in tensors
    )
    lines = [
        f"# {model.name}",
        "",
        f"Generated by `sbdeploy triton-repo` from `{spec.path.name}` (sha256 `{sha256_file(spec.path)}`).",
        "",
        f"- platform: `{model.platform}`, file `1/{MODEL_FILES[spec.kind]}`",
        f"- max_batch_size: {model.max_batch_size}"
        + (f" (the artifact accepts batches 1..{spec.max_batch})" if spec.max_batch else ""),
        f"- config checked with: {validated_with or f'nothing ({not_validated})'}",
    ]
    if spec.kind == "tensorrt":
        lines += [
            f"- TensorRT version: **{spec.tensorrt_version}**; built on GPU: {spec.gpu or 'unknown'}",
            "",
            f"A TensorRT engine loads only with the TensorRT version it was built with ({spec.tensorrt_version}) "
            "and on a GPU of the same compute capability. Serve it with the Triton release whose TensorRT "
            "is exactly that version (NVIDIA's Triton framework support matrix lists them), or rebuild "
            "the engine inside that Triton container.",
        ]
    else:
        meta = ", ".join(f"{k}={v}" for k, v in sorted(spec.metadata.items()))
        lines += [f"- ONNX metadata: {meta}"]
    lines += ["", "| | name | data_type | shape (batch first) |", "|---|---|---|---|", rows]
    if model.notes:
        lines += ["", *(f"Note: {n}." for n in model.notes)]
    return "\n".join(lines) + "\n"


def write_triton_repo(
    artifacts: Sequence[str | Path],
    out: str | Path,
    *,
    name: str | None = None,
    names: Sequence[str] | None = None,
    options: TritonOptions | None = None,
    force: bool = False,
) -> TritonRepo:
    """Write one Triton model folder per artifact under ``out``.

    Args:
        artifacts: ``.onnx`` files and TensorRT engines (each with its ``.json`` sidecar).
        out: the model repository folder (created if needed; other models in it are kept).
        name: the model name, for a single artifact (default: the artifact's file stem).
        names: one model name per artifact (e.g. those of a pipeline run folder).
        options: batching, instances and accelerator options of every config.
        force: replace model folders that already exist (otherwise they are refused).

    Raises:
        ArtifactError: an artifact cannot be read.
        ConfigError: an option does not fit an artifact (e.g. ``max_batch`` beyond its profile).
    """
    options = options or TritonOptions()
    if not artifacts:
        raise ConfigError("give at least one artifact (.onnx or .engine)")
    if name is not None and len(artifacts) != 1:
        raise ConfigError("--name names a single model; with several artifacts each model is named after its file")
    if names is not None and len(names) != len(artifacts):
        raise ConfigError(f"{len(names)} model names for {len(artifacts)} artifacts")
    root = Path(out)
    specs = [read_artifact(a) for a in artifacts]
    names = (
        [name] if name is not None else list(names) if names is not None else [s.path.name.split(".")[0] for s in specs]
    )
    for n in names:
        if not _NAME_RE.match(n):
            raise ConfigError(f"model name {n!r}: use letters, digits, '_', '-', '.' (it is a folder name)")
    if len(set(names)) != len(names):
        raise ConfigError(f"two artifacts give the same model name ({names}); pass them one at a time with --name")
    existing = [n for n in names if (root / n).exists()]
    if existing and not force:
        raise ConfigError(f"{root} already has model folder(s) {existing}; pass --force to replace them")

    validated_with, not_validated = validator_name(), validator_problem()
    planned = []
    for spec, model_name in zip(specs, names):
        text, max_batch, notes = build_model_config(spec, model_name, options)
        if validated_with:
            check_model_config(text)
        folder = root / model_name
        planned.append((spec, TritonModel(model_name, PLATFORMS[spec.kind], folder, max_batch, text, tuple(notes))))

    root.mkdir(parents=True, exist_ok=True)
    for spec, model in planned:
        extra = _external_data_files(spec)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{model.name}."))
        try:
            (tmp / "1").mkdir()
            shutil.copyfile(spec.path, tmp / "1" / MODEL_FILES[spec.kind])
            for location in extra:
                (tmp / "1" / location).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(spec.path.parent / location, tmp / "1" / location)
            (tmp / "config.pbtxt").write_text(model.config_text)
            (tmp / "README.md").write_text(_readme(spec, model, validated_with, not_validated))
            os.chmod(tmp, 0o755)
            if model.folder.exists():
                old = Path(tempfile.mkdtemp(dir=root, prefix=f".{model.name}.old."))
                os.replace(model.folder, old / model.name)
                os.replace(tmp, model.folder)
                shutil.rmtree(old)
            else:
                os.replace(tmp, model.folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return TritonRepo(root, tuple(m for _, m in planned), validated_with, not_validated)
