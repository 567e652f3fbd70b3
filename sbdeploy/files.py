"""What a deploy file is: one description of an ``.onnx`` file or a TensorRT engine, read from the file itself.

:func:`describe_file` reads an ONNX file's graph and ``sbdeploy.*`` metadata, or an engine's
sidecar (after checking its hash), into one :class:`DeployFile`, which ``validate``, ``bench``,
``pipeline`` and ``triton-repo`` all share; it imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from onnx import helper
from onnx.external_data_helper import uses_external_data

from sbdeploy import kernels
from sbdeploy._io import sha256_file
from sbdeploy.backends.tensorrt.sidecar import MachineInfo, check_engine_hash, read_sidecar, sidecar_path
from sbdeploy.errors import ArtifactError
from sbdeploy.export.metadata import load_onnx, onnx_precision, read_metadata
from sbdeploy.targets import CANONICAL, ENGINE_BACKENDS, ONNX_BACKENDS, TARGETS, get_target

if TYPE_CHECKING:
    from sbdeploy.checkpoint import CheckpointConfig

ENGINE_SUFFIXES = (".engine", ".plan")


@dataclass(frozen=True)
class IOTensor:
    """One input or output: dtype (None: unknown) and full shape, batch first (None: unknown rank or dimension)."""

    name: str
    dtype: np.dtype | None
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class DeployFile:
    """A deploy file and what it is (from an ONNX's graph and metadata, or an engine's sidecar)."""

    path: Path
    sha256: str
    kind: Literal["onnx", "engine"]
    precision: str  # fp32, fp16 or int8; tf32 for an fp32 engine built with TF32
    target: str | None  # the deploy target of its form (None: not written by sbdeploy)
    batch: int | None  # the fixed batch of its input (None: dynamic)
    profile: tuple[int, int, int] | None = None  # an engine's (min, opt, max) batch
    metadata: Mapping[str, Any] = field(default_factory=dict)  # sbdeploy.* metadata (an engine: its sidecar's copy)
    inputs: tuple[IOTensor, ...] = ()  # an ONNX's initializers are not inputs
    outputs: tuple[IOTensor, ...] = ()
    batch_ranges: tuple[tuple[int, int], ...] = ()  # the (min, max) batch of each engine profile, all inputs at once
    opt_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # an engine's opt shapes (profile 0)
    built_on: MachineInfo | None = None  # the TensorRT and GPU that built an engine
    opset: str = ""  # an ONNX's opsets, domain:version joined by commas
    external_data: tuple[str, ...] = ()  # the files beside an ONNX that hold its weights, relative to its folder

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def uses_kernels(self) -> bool:
        """Whether the file has fused SB nodes: it runs only with sbdeploy's kernel library registered."""
        return any(part.rpartition(":")[0] == kernels.DOMAIN for part in self.opset.split(","))

    @property
    def arch(self) -> str | None:
        return self.metadata.get("arch")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.metadata.get("options") or {})

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """(channels, H, W) of the input, from the metadata."""
        shape = self.metadata.get("input_shape")
        return None if not shape or len(shape) != 4 else (int(shape[1]), int(shape[2]), int(shape[3]))

    @property
    def weights_sha256(self) -> str | None:
        """The sha256 of the weights it was exported from (a checkpoint's ``model.safetensors``), from the metadata."""
        value = self.metadata.get("weights_sha256")
        return value if isinstance(value, str) else None

    @property
    def max_batch(self) -> int | None:
        """The largest N such that it takes every batch 1..N (0: not batch 1); None: any batch."""
        first = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        if first is not None:
            return 1 if first == 1 else 0
        if self.kind == "onnx":
            return None
        covered = 0
        for lo, hi in sorted(self.batch_ranges):
            if lo > covered + 1:
                break
            covered = max(covered, hi)
        return covered

    def differences_from(self, config: CheckpointConfig, weights_sha256: str) -> list[str]:
        """How the model this file was made from differs from a checkpoint's (empty without sbdeploy metadata)."""
        if self.arch is None:
            return []
        if self.arch != config.arch:
            return [f"architecture {self.arch} in the file, {config.arch} in the checkpoint"]
        out = []
        theirs, ours = self.options, dict(config.options)
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) != ours.get(key):
                out.append(
                    f"{key} {theirs.get(key, '(none)')} in the file, {ours.get(key, '(none)')} in the checkpoint"
                )
        expected = (config.in_chans, *config.input_size)
        if self.input_shape is not None and self.input_shape != expected:
            out.append(
                f"input {'x'.join(map(str, self.input_shape))} in the file, {'x'.join(map(str, expected))} in the checkpoint"
            )
        if self.weights_sha256 is not None and self.weights_sha256 != weights_sha256:
            out.append(
                f"weights sha256 {self.weights_sha256[:12]}... in the file, {weights_sha256[:12]}... in the checkpoint"
            )
        return out

    def batch_sizes(self, wanted: Sequence[int]) -> tuple[int, ...]:
        """Of ``wanted``, the batch sizes this file takes (a fixed batch: exactly its own)."""
        if self.batch is not None:
            return (self.batch,)
        if self.profile is not None:
            return tuple(b for b in wanted if self.profile[0] <= b <= self.profile[2])
        return tuple(wanted)

    def default_backend(self) -> str:
        """The backend that runs this file unless told otherwise: an engine ``trt``; an ONNX its target's first ONNX backend."""
        if self.kind == "engine":
            return ENGINE_BACKENDS[0]
        if self.target is not None:
            return next((b for b in get_target(self.target).backends if b in ONNX_BACKENDS), "ort-cpu")
        return "ort-cpu"

    def runs_on(self, backend: str) -> bool:
        """Whether ``backend`` can run this kind of file (any ONNX runs on every ONNX Runtime provider)."""
        return backend in (ENGINE_BACKENDS if self.kind == "engine" else ONNX_BACKENDS)

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.name,
            "sha256": self.sha256,
            "kind": self.kind,
            "precision": self.precision,
            "target": self.target,
            "batch": self.batch,
            "profile": list(self.profile) if self.profile else None,
            "arch": self.arch,
        }


def _known_target(metadata: Mapping[str, Any]) -> str | None:
    """The target named in a file's metadata; None for a file sbdeploy did not write."""
    name = metadata.get("target")
    if name == "none":  # written before the target table: the canonical form, lowered as its metadata says
        return metadata.get("lowering") if metadata.get("lowering") in TARGETS else CANONICAL
    return name if isinstance(name, str) and name in TARGETS else None


def describe_file(path: str | Path) -> DeployFile:
    """What an ``.onnx`` file or a TensorRT engine (``.engine``/``.plan`` + sidecar) is."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder, not an .onnx file or a TensorRT engine")
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist")
    if path.suffix == ".onnx":
        return _describe_onnx(path)
    if path.suffix in ENGINE_SUFFIXES:
        return _describe_engine(path)
    raise ArtifactError(f"{path}: unknown artifact type; expected an .onnx file or a TensorRT .engine/.plan")


def _onnx_tensor(value: Any) -> IOTensor:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        return IOTensor(value.name, None, None)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    except (KeyError, ValueError, TypeError):
        dtype = None
    shape = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return IOTensor(value.name, dtype, shape)


def _describe_onnx(path: Path) -> DeployFile:
    model = load_onnx(path, external_data=False)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = tuple(_onnx_tensor(v) for v in graph.input if v.name not in initializers)
    locations = {
        entry.value
        for tensor in graph.initializer
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for location in locations:
        if Path(location).is_absolute() or ".." in Path(location).parts or not (path.parent / location).is_file():
            raise ArtifactError(f"{path}: external data {location!r} is missing or outside the model's folder")
    first = inputs[0].shape[0] if inputs and inputs[0].shape else None
    metadata = read_metadata(model)
    return DeployFile(
        path,
        sha256_file(path),
        "onnx",
        onnx_precision(model),  # the graph says it (a file converted after export keeps its export's metadata)
        _known_target(metadata),
        first if first else None,
        metadata=metadata,
        inputs=inputs,
        outputs=tuple(_onnx_tensor(v) for v in graph.output),
        opset=",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import),
        external_data=tuple(sorted(locations)),
    )


def _sidecar_tensors(items: list[dict[str, Any]]) -> tuple[IOTensor, ...]:
    return tuple(
        IOTensor(str(t["name"]), np.dtype(t["dtype"]), tuple(None if int(d) < 0 else int(d) for d in t["shape"]))
        for t in items
    )


def _describe_engine(path: Path) -> DeployFile:
    side = sidecar_path(path)
    sidecar = read_sidecar(path)
    if sidecar is None:
        raise ArtifactError(
            f"{path}: its sidecar {side.name} is missing; sbdeploy reads an engine (its I/O, profiles, precision) "
            "through the sidecar `sbdeploy build-engine` writes: rebuild the engine with it"
        )
    check_engine_hash(path, sidecar)  # a sidecar beside another engine would describe the wrong file
    try:
        inputs, outputs = _sidecar_tensors(sidecar.inputs), _sidecar_tensors(sidecar.outputs)
        profiles = [  # per profile: input name -> its (min, opt, max) shapes
            {name: tuple(tuple(int(d) for d in p[name][k]) for k in ("min", "opt", "max")) for name in p}
            for p in sidecar.profiles
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise ArtifactError(
            f"{side}: inputs, outputs or profiles are malformed ({type(error).__name__}: {error}); "
            "rebuild the engine with `sbdeploy build-engine`"
        ) from None
    if inputs and inputs[0].shape and inputs[0].shape[0] is None and not profiles:
        raise ArtifactError(f"{side}: the engine has a dynamic batch dimension but the sidecar lists no profiles")
    for i, p in enumerate(profiles):
        missing = [t.name for t in inputs if t.name not in p]
        if missing:
            raise ArtifactError(f"{side}: profile {i} has no shapes for input(s) {missing}")
    # a profile takes batch b when every input does
    ranges = [(max(p[t.name][0][0] for t in inputs), min(p[t.name][2][0] for t in inputs)) for p in profiles if inputs]
    profile = tuple(shape[0] for shape in next(iter(profiles[0].values()))) if profiles else None
    # an fp32 engine built with TF32 (TensorRT's default) is a tf32 engine, judged by the TF32 tolerance
    precision = "tf32" if sidecar.requested_precision == "fp32" and sidecar.tf32 else sidecar.requested_precision
    metadata = dict(sidecar.onnx_metadata)
    return DeployFile(
        path,
        sidecar.engine_sha256,
        "engine",
        precision,
        _known_target(metadata),
        profile[0] if profile is not None and profile[0] == profile[2] else None,
        profile=profile,
        metadata=metadata,
        inputs=inputs,
        outputs=outputs,
        batch_ranges=tuple(ranges),
        opt_shapes={name: shapes[1] for name, shapes in profiles[0].items()} if profiles else {},
        built_on=sidecar.built_on,
    )
