"""A ``config.pbtxt`` parsed back with Triton's ``ModelConfig`` protobuf (from ``tritonclient[grpc]``) and checked
against Triton's load-time rules; without that protobuf, :func:`validator` says what to install."""

from __future__ import annotations

import re
from typing import Any

from sbdeploy.errors import ConfigError
from sbdeploy.serve.model_config import OPENVINO, PLATFORMS

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OPENVINO_PARAMETERS = {
    key: re.compile(pattern, re.IGNORECASE)
    for key, pattern in {
        "INFERENCE_NUM_THREADS": r"\d+",
        "COMPILATION_NUM_THREADS": r"\d+",
        "NUM_STREAMS": r"auto|numa|\d+",
        "PERFORMANCE_HINT": r"latency|throughput|cumulative_throughput",
        "HINT_BF16": r"yes",
        "ENABLE_BATCH_PADDING": r"yes|no",
        "SKIP_OV_DYNAMIC_BATCHSIZE": r"yes|no",
        "RESHAPE_IO_LAYERS": r"yes|no",
        "TARGET_DEVICE": r".+",
        "CPU_EXTENSION_PATH": r"/.+",
    }.items()
}
"""The parameters Triton's openvino backend reads and the values it accepts (its README and source); it ignores any
other key without a word, so an ``INFERENCE_PRECISION_HINT`` there would silently do nothing."""
OPENVINO_MODEL_FILES = (".xml", ".onnx", ".pdmodel", ".saved_model", ".tflite")
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


def validator() -> tuple[str | None, str | None]:
    """What :func:`check_model_config` parses with (``tritonclient X model_config.proto``), or None and why not."""
    pb2, problem = _model_config_pb2()
    if pb2 is None:
        return None, problem
    from importlib.metadata import version

    return f"tritonclient {version('tritonclient')} model_config.proto", None


def check_model_config(text: str) -> Any:
    """``text`` parsed with Triton's ``ModelConfig`` protobuf; ConfigError listing every load-time rule it breaks."""
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
    if not config.name or not NAME_RE.match(config.name):
        problems.append(f"model name {config.name!r} is empty or not a folder-safe name")
    if config.backend == OPENVINO:
        problems += _openvino_problems(config, pb2)
    elif config.backend or config.platform not in PLATFORMS.values():
        problems.append(f"platform {config.platform!r} / backend {config.backend!r} is not one sbdeploy writes")
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
        for key in sorted(set(sample.inputs) & set(inputs)):
            value, ref = sample.inputs[key], inputs[key]
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


def _openvino_problems(config: Any, pb2: Any) -> list[str]:
    """What Triton's openvino backend refuses at load time, or reads otherwise than the config means."""
    problems = []
    if config.platform:
        problems.append(f"an openvino model names a backend, not a platform ({config.platform!r})")
    if not config.default_model_filename.endswith(OPENVINO_MODEL_FILES):
        problems.append(
            f"default_model_filename {config.default_model_filename!r}: the openvino backend reads a file ending "
            f"{', '.join(OPENVINO_MODEL_FILES)} (model.xml when unset)"
        )
    for key, value in sorted(config.parameters.items()):
        pattern = OPENVINO_PARAMETERS.get(key)
        if pattern is None:
            problems.append(f"parameter {key!r} is not one the openvino backend reads (it ignores it)")
        elif not pattern.fullmatch(value.string_value):
            problems.append(f"parameter {key} = {value.string_value!r} is not a value the openvino backend accepts")
    cpu = (pb2.ModelInstanceGroup.KIND_AUTO, pb2.ModelInstanceGroup.KIND_CPU)
    if any(group.kind not in cpu for group in config.instance_group):
        problems.append("the openvino backend runs KIND_CPU instances only")
    if config.HasField("model_operations"):
        problems.append("model_operations is an ONNX Runtime setting: OpenVINO loads extensions by CPU_EXTENSION_PATH")
    return problems
