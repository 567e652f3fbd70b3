"""Bring your own weights: a state_dict file of a zoo architecture -> an sbdeploy checkpoint folder.

Safetensors, or ``.pth`` read with ``torch.load(weights_only=True)`` (no code runs); common wrappers and
prefixes are unwrapped, then every key and shape must fit. Nothing is written until every check passed
(docs/own-network.md).
"""

from __future__ import annotations

import inspect
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sbdeploy._io import sha256_file
from sbdeploy.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointConfig,
    is_safetensors,
    load_checkpoint,
    parse_safetensors,
    save_checkpoint,
    sb_options,
    state_mismatches,
)
from sbdeploy.errors import CheckpointError, ConfigError
from sbdeploy.models import SB_OPTIONS, create_model, list_models, model_info

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_NOTE = "normalization: ImageNet mean/std (the default; pass --mean/--std if trained with others)"

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # where timm, Lightning, torchvision's references nest it
PREFIXES = ("module.", "_orig_mod.")  # key prefixes of DataParallel / DistributedDataParallel and of torch.compile


@dataclass(frozen=True)
class StateDictFile:
    """The tensors of a state_dict file and how they were reached."""

    tensors: dict[str, torch.Tensor]
    unwrapped: tuple[str, ...]  # e.g. ("['state_dict']", "prefix 'module.'")
    reader: str  # "safetensors" or "torch.load(weights_only=True)"


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_state_dict` wrote."""

    folder: Path
    config: CheckpointConfig
    source: Path
    source_sha256: str
    reader: str
    unwrapped: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)  # defaults taken, tensors filled or converted
    weights_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        config = self.config.to_json()
        described = {k: config[k] for k in ("arch", "options", "input_size", "mean", "std")}
        rest = {k: v for k, v in vars(self).items() if k not in ("folder", "config")}
        plain = {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v for k, v in rest.items()}
        return {"folder": str(self.folder), **described, **plain}


def _torch_load(data: bytes, path: Path) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  torch.load fails on foreign bytes with many types (EOFError, KeyError, RuntimeError...)
        text, refusal = str(error), "Weights only load failed" in str(error)
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", text) if refusal else None
        if refused:
            raise CheckpointError(
                f"{path} was refused: it needs the Python object {refused.group(1)}, and sbdeploy reads .pth files "
                "only with torch.load(weights_only=True), which runs no code. Where you trust the file, save its "
                "state_dict alone: torch.save(model.state_dict(), 'weights.pth') (or safetensors.torch.save_file)"
            ) from None
        # the first sentence only: torch's message goes on with paragraphs of advice about weights_only
        operand = re.search(r"Unsupported operand \S+", text) if refusal else None
        sentence = operand.group(0) if operand else (text.strip().splitlines() or [""])[0].split(". ")[0][:120]
        reason = f"{type(error).__name__}: {sentence}" if sentence else type(error).__name__
        raise CheckpointError(
            f"{path} is neither a safetensors file nor a PyTorch file torch.load can read ({reason}); "
            "it may be truncated or of another format"
        ) from None


def _tensor_dict(value: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
        if all(isinstance(v, torch.Tensor) for v in value.values()):
            return dict(value)
    return None


def _unwrap(payload: Any, path: Path) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """The state_dict inside ``payload`` and the wrappers removed to reach it."""
    steps: list[str] = []
    tensors = _tensor_dict(payload)
    while tensors is None and isinstance(payload, Mapping) and len(steps) < 3:  # e.g. {"model": {"state_dict": {...}}}
        key = next((k for k in WRAPPER_KEYS if isinstance(payload.get(k), Mapping)), None)
        if key is None:
            break
        payload = payload[key]
        steps.append(f"[{key!r}]")
        tensors = _tensor_dict(payload)
    if tensors is None:
        if isinstance(payload, Mapping) and payload:
            odd = next(k for k, v in payload.items() if not isinstance(v, torch.Tensor))
            raise CheckpointError(
                f"{path} holds no state_dict: its entry {odd!r} is a {type(payload[odd]).__name__}, not a tensor, "
                f"and none of the keys {', '.join(WRAPPER_KEYS)} holds a state_dict"
            )
        raise CheckpointError(
            f"{path} holds a {type(payload).__name__}, not a state_dict (a mapping of names to tensors)"
        )
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
            steps.append(f"prefix {prefix!r}")
    return tensors, tuple(steps)


def read_state_dict(path: str | Path) -> StateDictFile:
    """The state_dict in a safetensors or ``.pth`` file (never a full unpickle); CheckpointError when there is none."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the state_dict file (.safetensors or .pth)")
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path} is empty")
    if is_safetensors(data):
        return StateDictFile(*_unwrap(parse_safetensors(data, path), path), reader="safetensors")
    return StateDictFile(*_unwrap(_torch_load(data, path), path), reader="torch.load(weights_only=True)")


def _infer(tensors: Mapping[str, torch.Tensor], key: str, dim: int) -> int | None:
    tensor = tensors.get(key)
    return int(tensor.shape[dim]) if tensor is not None and tensor.dim() > dim else None


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _fit(arch: str, options: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> tuple[nn.Module, list[str]]:
    """``arch`` holding ``state`` (checked strictly, cast to its dtypes); notes on what was filled or converted."""
    with torch.device("meta"):
        model = create_model(arch, **options)
    expected = model.state_dict()
    notes = []
    counters = [k for k in expected if k.endswith("num_batches_tracked")]
    missing_counts = counters if counters and not any(k in state for k in counters) else []
    if missing_counts:  # state_dicts saved before PyTorch 0.4.1 lack them all; torch's own strict loading fills them so
        state = {**state, **{k: torch.zeros((), dtype=expected[k].dtype) for k in missing_counts}}
        notes.append(f"{len(missing_counts)} BatchNorm num_batches_tracked counters absent from the file were set to 0")
    problem = state_mismatches(expected, state)
    if problem:
        raise CheckpointError(f"{path} does not fit {arch} {options}: {problem}.{_hint(arch, options, state)}")
    converted = sorted(
        {f"{_dtype(state[k])} -> {_dtype(expected[k])}" for k in expected if state[k].dtype != expected[k].dtype}
    )
    if converted:
        notes.append(f"tensors converted {', '.join(converted)}")
    model.load_state_dict({k: state[k].to(expected[k].dtype).contiguous() for k in expected}, strict=True, assign=True)
    return model, notes


def _hint(arch: str, options: dict[str, Any], state: Mapping[str, torch.Tensor]) -> str:
    """Names the baseline or SB twin of ``arch`` when the file fits that one instead."""
    baseline = model_info(arch).baseline
    twins = [baseline] if baseline else [n for n in list_models() if model_info(n).baseline == arch]
    base_options = {k: v for k, v in options.items() if k not in SB_OPTIONS}
    for twin in twins:
        with torch.device("meta"):
            model = create_model(twin, **base_options)
        if state_mismatches(model.state_dict(), state) is None:
            return f" It fits {twin}: pass --arch {twin}."
    return " Check --arch (sbdeploy zoo lists the architectures) and --num-classes / --in-chans."


def _normalization(
    mean: Sequence[float] | None, std: Sequence[float] | None, in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...], str | None]:
    if (mean is None) != (std is None):
        raise ConfigError("give both --mean and --std, or neither")
    if mean is None or std is None:
        if in_chans != 3:
            raise ConfigError(
                f"a {in_chans}-channel network needs --mean and --std (one value per channel, as trained)"
            )
        return IMAGENET_MEAN, IMAGENET_STD, IMAGENET_NOTE
    for name, values in (("--mean", mean), ("--std", std)):
        if len(values) not in (1, in_chans):
            raise ConfigError(f"{name} takes 1 or {in_chans} values (one per channel), got {len(values)}")
    if min(std) <= 0:
        raise ConfigError("--std values must be positive")
    return tuple(map(float, mean)) * (in_chans // len(mean)), tuple(map(float, std)) * (in_chans // len(std)), None


def import_state_dict(
    path: str | Path,
    arch: str,
    out: str | Path,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    input_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    sampling: str | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Make the checkpoint folder ``out`` from the state_dict file ``path`` (safetensors or ``.pth``) of zoo ``arch``.

    Defaults: classes and channels read from the file, the architecture's input size, ImageNet's mean/std.
    """
    path, out = Path(path), Path(out)
    info = model_info(arch)
    sampled = sb_options(arch, sampling)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the checkpoint")
    if not overwrite and any((out / name).exists() for name in (WEIGHTS_FILE, CONFIG_FILE)):
        raise ConfigError(f"{out} already holds a checkpoint; pass --overwrite to replace it")
    source = read_state_dict(path)
    defaults = inspect.signature(info.builder).parameters
    options: dict[str, Any] = {
        "num_classes": num_classes or _infer(source.tensors, "fc.weight", 0) or defaults["num_classes"].default,
        "in_chans": in_chans or _infer(source.tensors, "conv1.weight", 1) or defaults["in_chans"].default,
        **sampled,
    }
    mean_t, std_t, note = _normalization(mean, std, options["in_chans"])
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(options["num_classes"]))
    if len(names) != options["num_classes"]:
        raise ConfigError(f"--class-names gives {len(names)} names for {options['num_classes']} classes")
    size = input_size or info.input_size
    if min(size) < 1:
        raise ConfigError(f"--input-size must be positive, got {size}")
    model, notes = _fit(arch, options, source.tensors, path)
    source_sha = sha256_file(path)
    imported = {"file": path.name, "sha256": source_sha, "reader": source.reader, "unwrapped": list(source.unwrapped)}
    config = CheckpointConfig(
        arch=arch,
        options=options,
        input_size=(int(size[0]), int(size[1])),
        mean=mean_t,
        std=std_t,
        class_names=names,
        training={"imported": imported},
    )
    save_checkpoint(out, model.eval(), config)
    written = load_checkpoint(out)  # the folder loads as every sbdeploy command will load it
    return ImportResult(
        out,
        written.config,
        path,
        source_sha,
        source.reader,
        source.unwrapped,
        tuple(n for n in (note, *notes) if n),
        written.weights_sha256,
    )
