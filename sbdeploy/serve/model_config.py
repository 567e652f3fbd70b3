"""One Triton model's ``config.pbtxt``, worked out from the file it serves and the user's batching options.

Names, dtypes and dims come from the file, never from the user; a max_batch_size outside an
engine's optimization profiles is refused here, not at load time (docs/serving.md). An ONNX file runs on
Triton's ONNX Runtime platform, or on its ``openvino`` backend (an ``ov-cpu`` file by default), whose
parameters name what sbdeploy's ov-cpu runner sets (threads, latency hint, one stream, bf16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sbdeploy import environment, kernels
from sbdeploy.errors import ArtifactError, ConfigError
from sbdeploy.files import DeployFile, IOTensor
from sbdeploy.serve.pbtxt import Enum, pbtxt
from sbdeploy.targets import TARGETS

PLATFORMS = {"onnx": "onnxruntime_onnx", "engine": "tensorrt_plan"}
MODEL_FILES = {"onnx": "model.onnx", "engine": "model.plan"}
DEFAULT_MAX_BATCH = 32  # for files with an unbounded batch dimension (dynamic ONNX)
OPENVINO = "openvino"  # Triton's OpenVINO backend (a ``backend``, not a ``platform``), for ONNX files
ONNX_BACKENDS = ("onnxruntime", OPENVINO)  # --onnx-backend's choices

# numpy dtype -> Triton's DataType enum (model_config.proto).
TRITON_DTYPES = {np.dtype(n): f"TYPE_{n.upper()}" for n in ("bool", "uint8", "int8", "int16", "int32", "int64")} | {
    np.dtype(f"float{bits}"): f"TYPE_FP{bits}" for bits in (16, 32, 64)
}


@dataclass(frozen=True)
class TritonOptions:
    """Options of the generated configs (one set for every model of a repository)."""

    max_batch: int | None = None  # None: the largest the file allows (capped at DEFAULT_MAX_BATCH)
    instances: int = 1  # instance_group count
    preferred_batch: tuple[int, ...] = ()  # dynamic_batching preferred_batch_size
    queue_delay_us: int = 100  # dynamic_batching max_queue_delay_microseconds
    onnx_device: str = "cpu"  # instance kind of ONNX models, cpu or gpu (engines always run on GPU)
    onnx_trt_fp16: bool = False  # fp16 ONNX models: TensorRT accelerator in FP16 (implies GPU instances)
    onnx_backend: str | None = None  # onnxruntime or openvino (None: openvino for ov-cpu files, else onnxruntime)
    threads: int | None = None  # openvino models: INFERENCE_NUM_THREADS per instance (None: the CPUs here)
    bf16: bool = False  # openvino models: the fp32 file run with OpenVINO's bf16 hint (HINT_BF16), as ov-cpu's bf16

    def __post_init__(self) -> None:
        if self.max_batch is not None and self.max_batch < 0:
            raise ConfigError(f"--max-batch must be >= 0, got {self.max_batch}")
        if self.instances < 1:
            raise ConfigError(f"--instances must be >= 1, got {self.instances}")
        if self.queue_delay_us < 0:
            raise ConfigError(f"--queue-delay-us must be >= 0, got {self.queue_delay_us}")
        if self.onnx_device not in ("cpu", "gpu"):
            raise ConfigError(f"--onnx-device must be cpu or gpu, got {self.onnx_device!r}")
        if self.onnx_backend not in (None, *ONNX_BACKENDS):
            raise ConfigError(f"--onnx-backend must be {' or '.join(ONNX_BACKENDS)}, got {self.onnx_backend!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.onnx_backend == OPENVINO and (self.onnx_device == "gpu" or self.onnx_trt_fp16):
            raise ConfigError(
                "Triton's openvino backend runs CPU instances only: drop --onnx-device gpu / --onnx-trt-fp16"
            )
        if self.onnx_backend == "onnxruntime" and (self.bf16 or self.threads is not None):
            raise ConfigError("--bf16 and --threads set Triton's openvino backend: drop them or --onnx-backend")


def serving_backend(file: DeployFile, options: TritonOptions) -> str:
    """What runs ``file`` in Triton: its ``platform`` (onnxruntime_onnx, tensorrt_plan) or the ``openvino`` backend."""
    if file.kind != "onnx":
        return PLATFORMS[file.kind]
    backend = options.onnx_backend or (OPENVINO if file.target == "ov-cpu" else "onnxruntime")
    return OPENVINO if backend == OPENVINO else PLATFORMS["onnx"]


def openvino_parameters(file: DeployFile, options: TritonOptions, max_batch: int) -> tuple[dict[str, str], list[str]]:
    """The openvino backend's ``parameters`` of ``file`` (what sbdeploy's ov-cpu runner sets) and README notes."""
    if file.uses_kernels:
        raise ConfigError(
            f"{file.name} uses sbdeploy's fused SB operator, which OpenVINO cannot run: export it with --target ov-cpu, "
            "or serve it with --onnx-backend onnxruntime"
        )
    if options.bf16 and file.precision != "fp32":
        raise ConfigError(f"{file.name} is {file.precision}: --bf16 runs an fp32 file with OpenVINO's bf16 hint")
    threads = options.threads or environment.available_cpus()
    parameters = {"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    notes = [
        f"OpenVINO: {threads} inference threads per instance (--threads), latency hint, one stream, as sbdeploy's "
        "ov-cpu runner"
    ]
    if options.bf16:
        parameters["HINT_BF16"] = "YES"
        notes.append("bf16: OpenVINO's bf16 inference precision (HINT_BF16); the server's CPU needs AVX512_BF16 or AMX")
    else:
        notes.append(
            "precision: the openvino backend has no key for f32 (HINT_BF16 is its only precision key), and OpenVINO's "
            "CPU plugin computes in bf16 by default on CPUs with AMX: there this fp32 model runs in bf16, which "
            "sbdeploy validates as the bf16 run (--bf16), not the fp32 one"
        )
    if max_batch > 1:
        parameters["ENABLE_BATCH_PADDING"] = "YES"
        notes.append(
            f"batching: the openvino backend compiles the model at batch {max_batch} (max_batch_size) and pads smaller "
            "batches (ENABLE_BATCH_PADDING): every execution costs a full batch"
        )
    return parameters, notes


def batch_dimension(file: DeployFile) -> int | None:
    """The first dimension, which every input shares and every output shares or leaves unknown: fixed, or None."""
    where = str(file.path)
    if not file.inputs or not file.outputs:
        raise ArtifactError(f"{where}: lists no inputs or no outputs")
    for t in (*file.inputs, *file.outputs):
        if t.shape is None:
            raise ArtifactError(f"{where}: {t.name!r} is not a tensor of known rank; Triton needs its dims")
        if not t.shape:
            raise ArtifactError(f"{where}: a scalar input/output has no batch dimension; Triton cannot batch it")
    firsts = {t.shape[0] for t in file.inputs if t.shape}
    if len(firsts) != 1:
        raise ArtifactError(f"{where}: the inputs disagree on the batch dimension ({sorted(map(str, firsts))})")
    first = firsts.pop()
    clash = [t.name for t in file.outputs if t.shape and t.shape[0] is not None and t.shape[0] != first]
    if clash:
        raise ArtifactError(
            f"{where}: output(s) {clash} do not share the inputs' batch dimension ({first or 'dynamic'})"
        )
    return first


def resolve_max_batch(file: DeployFile, requested: int | None) -> int:
    """The ``max_batch_size`` to write, or a ConfigError saying why ``requested`` cannot work."""
    fixed, accepted = batch_dimension(file), file.max_batch
    if fixed is not None and fixed != 1:
        if requested:
            raise ConfigError(
                f"{file.name} has a fixed batch of {fixed}, so Triton cannot batch requests: "
                f"use --max-batch 0, or re-export/rebuild it with a dynamic batch"
            )
        return 0
    if accepted is None:  # unbounded dynamic batch
        return DEFAULT_MAX_BATCH if requested is None else requested
    if requested is None:
        if accepted == 0:
            raise ConfigError(
                f"{file.name}: no optimization profile accepts batch 1, and Triton's dynamic batcher sends batches of "
                f"1..max_batch_size; rebuild the engine with a profile whose min batch is 1, or use --max-batch 0"
            )
        return accepted
    if requested > accepted:
        limit = (
            f"the engine's profiles cover batches 1..{accepted} only"
            if file.kind == "engine"
            else f"its batch dimension is fixed to {fixed}"
        )
        raise ConfigError(
            f"{file.name}: --max-batch {requested} is outside what the artifact accepts ({limit}); "
            f"use --max-batch {accepted} or less, or rebuild with a larger max profile"
        )
    return requested


def _triton_dtype(tensor: IOTensor, file: DeployFile) -> Enum:
    name = TRITON_DTYPES.get(tensor.dtype) if tensor.dtype is not None else None
    if name is None:
        raise ArtifactError(
            f"{file.name}: {tensor.name!r} has dtype {tensor.dtype}, which Triton configs cannot express"
        )
    return Enum(name)


def build_model_config(
    file: DeployFile, name: str, options: TritonOptions, op_library: Path | None = None
) -> tuple[str, int, list[str]]:
    """The ``config.pbtxt`` text of one model, its ``max_batch_size`` and notes for its README; ``op_library``: where
    the model's copy of sbdeploy's kernel library will be (a file with fused SB nodes needs one)."""
    max_batch = resolve_max_batch(file, options.max_batch)
    backend = serving_backend(file, options)
    notes: list[str] = []
    drop = 1 if max_batch > 0 else 0  # with batching, Triton's dims exclude the batch dimension

    def tensors(items: tuple[IOTensor, ...]) -> list[dict[str, Any]]:
        return [
            {
                "name": t.name,
                "data_type": _triton_dtype(t, file),
                "dims": [-1 if d is None else d for d in t.shape[drop:]],
            }
            for t in items
            if t.shape is not None
        ]

    config: dict[str, Any] = {
        "name": name,
        **({"backend": OPENVINO} if backend == OPENVINO else {"platform": backend}),
        "max_batch_size": max_batch,
        "default_model_filename": MODEL_FILES[file.kind],
        "input": tensors(file.inputs),
        "output": tensors(file.outputs),
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
    target = TARGETS.get(file.target) if file.kind == "onnx" and file.target else None
    gpu_form = target is not None and not {"ort-cpu", "ov-cpu"} & set(target.backends)
    if gpu_form:
        notes.append(f"GPU instances: the file holds the {file.target} target's form, which only GPU backends run")
    gpu = file.kind == "engine" or options.onnx_device == "gpu" or options.onnx_trt_fp16 or gpu_form
    if backend == OPENVINO:
        if gpu_form:
            raise ConfigError(
                f"{file.name} holds the {file.target} target's GPU form: serve it with --onnx-backend onnxruntime"
            )
        gpu = False
        parameters, openvino_notes = openvino_parameters(file, options, max_batch)
        config["parameters"] = [{"key": k, "value": {"string_value": v}} for k, v in parameters.items()]
        notes += openvino_notes
    config["instance_group"] = [{"count": options.instances, "kind": Enum("KIND_GPU" if gpu else "KIND_CPU")}]
    if file.kind == "onnx" and options.onnx_trt_fp16:
        if file.precision != "fp16":
            raise ConfigError(
                f"{file.name} has fp32 weights: --onnx-trt-fp16's precision_mode FP16 is TensorRT 10.x's FP16 builder "
                "flag, which TensorRT 11 (strongly typed) removed, so there the engine would stay fp32; give an fp16 "
                "ONNX (sbdeploy export --target T --fp16, or sbdeploy pipeline --fp16, writes one; sbdeploy.passes.to_fp16)"
            )
        notes.append(
            "TensorRT accelerator: the fp16 ONNX sets the precision (TensorRT 11 is strongly typed); "
            "precision_mode FP16 is what TensorRT 10.x's weakly typed build also needs"
        )
        accelerator = {"name": "tensorrt", "parameters": [{"key": "precision_mode", "value": "FP16"}]}
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}
    if file.uses_kernels:
        if op_library is None:
            raise ConfigError(
                f"{file.name} uses sbdeploy's fused SB operator: its model config needs the kernel library"
            )
        config["model_operations"] = {"op_library_filename": [str(op_library)]}
        notes.append(
            f"fused SB operator: the folder carries {op_library.name}, which model_operations names by its absolute "
            f"path; where the repository is mounted elsewhere (docker -v REPO:/models) write /models/{name}/"
            f"{op_library.name} there. Triton's ONNX Runtime must be {kernels.MIN_ONNXRUNTIME} or newer, on x86-64"
        )
    warmup = _warmup(file, config["input"], max_batch, drop)
    if warmup:
        config["model_warmup"] = warmup
    else:
        notes.append("no model warm-up: an input has dynamic non-batch dims and no profile gives an opt shape")
    return pbtxt(config), max_batch, notes


def _warmup(file: DeployFile, inputs: list[dict[str, Any]], max_batch: int, drop: int) -> list[dict[str, Any]]:
    """Random-data warm-up samples at batch 1 and at max_batch_size (concrete dims required)."""
    samples = []
    for t, config in zip(file.inputs, inputs):
        opt = file.opt_shapes.get(t.name)
        dims = [o if d == -1 else d for d, o in zip(config["dims"], opt[drop:])] if opt else config["dims"]
        if -1 in dims:
            return []
        samples.append({"key": t.name, "value": {"data_type": config["data_type"], "dims": dims, "random_data": True}})
    batches = sorted({1, max_batch}) if max_batch > 0 else [1]
    return [{"name": f"random_batch_{b}", "batch_size": b, "inputs": samples} for b in batches]
