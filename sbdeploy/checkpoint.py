"""Checkpoints as a folder: ``model.safetensors`` (weights) + ``config.json`` (everything else).

Loading never unpickles; a broken checkpoint raises :class:`CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from sbdeploy._io import atomic_write_bytes, sha256_file
from sbdeploy._version import __version__
from sbdeploy.errors import CheckpointError, ConfigError, SbdeployError
from sbdeploy.models import create_model, model_info

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "sbdeploy-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointConfig:
    """What ``config.json`` holds: enough to rebuild, feed and describe the model."""

    arch: str  # registry name, e.g. "cifar_resnet20_sb"
    options: dict[str, Any]  # builder options: num_classes, in_chans, sampling (SB only)
    input_size: tuple[int, int]  # (H, W) the model was trained at
    mean: tuple[float, ...]  # per-channel normalization applied before the model
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    dataset: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. test_accuracy, epochs, train_time_s
    training: dict[str, Any] = field(default_factory=dict)  # the recipe used
    sbdeploy_version: str = ""

    @property
    def num_classes(self) -> int:
        return int(self.options.get("num_classes", len(self.class_names)))

    @property
    def in_chans(self) -> int:
        return int(self.options.get("in_chans", 3))

    @property
    def sampling(self) -> str | None:
        return self.options.get("sampling")

    @property
    def sb_stages(self) -> tuple[int, ...] | None:
        """The stages holding SB blocks (None: every stage of an SB network; old checkpoints record none)."""
        stages = self.options.get("sb_stages")
        return None if stages is None else tuple(int(s) for s in stages)

    def to_json(self) -> dict[str, Any]:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path) -> CheckpointConfig:
        if data.get("format") != FORMAT:
            raise CheckpointError(f'{source} is not an sbdeploy checkpoint config (no "format": "{FORMAT}")')
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"{source} was written by a newer sbdeploy (format {data['format_version']}); upgrade sbdeploy"
            )
        try:
            return cls(
                arch=str(data["arch"]),
                options=dict(data.get("options", {})),
                input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                class_names=tuple(str(v) for v in data["class_names"]),
                dataset=str(data.get("dataset", "")),
                metrics=dict(data.get("metrics", {})),
                training=dict(data.get("training", {})),
                sbdeploy_version=str(data.get("sbdeploy_version", "")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise CheckpointError(
                f"{source} lacks or mangles a required field ({error!r}); re-export the checkpoint"
            ) from None


@dataclass
class Checkpoint:
    """A network to run: a loaded checkpoint folder, or a zoo network (``kind="zoo"``, ``path`` its name)."""

    path: Path
    model: nn.Module
    config: CheckpointConfig
    weights_sha256: str
    kind: str = "checkpoint"

    @property
    def label(self) -> str:
        """How reports name it: the folder's name, or the zoo name."""
        return self.path.name if self.kind == "checkpoint" else str(self.path)


def sb_options(arch: str, sampling: str | None, sb_stages: Sequence[int] | None = None) -> dict[str, Any]:
    """The ``sampling`` (default chessboard) and ``sb_stages`` (where given) builder options of an SB network; none
    for a baseline, which refuses them."""
    if model_info(arch).is_sb:
        return {"sampling": sampling or "chessboard", **({} if sb_stages is None else {"sb_stages": list(sb_stages)})}
    if sampling is not None or sb_stages is not None:
        given = "--sampling" if sampling is not None else "--stages"
        raise ConfigError(f"{arch} is a baseline without SB blocks; {given} applies to SB networks only")
    return {}


def save_checkpoint(folder: str | Path, model: nn.Module, config: CheckpointConfig) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (atomically, each)."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if not config.sbdeploy_version:
        config = replace(config, sbdeploy_version=__version__)
    atomic_write_bytes(
        folder / WEIGHTS_FILE, save_safetensors_bytes(state, metadata={"format": "pt", "arch": config.arch})
    )
    atomic_write_bytes(folder / CONFIG_FILE, (json.dumps(config.to_json(), indent=2) + "\n").encode())
    return folder


def require_folder(folder: Path) -> None:
    """CheckpointError saying what ``folder`` is, and what to do, when it is not a folder."""
    if folder.is_file() and folder.suffix in (".onnx", ".engine", ".plan"):
        raise CheckpointError(f"{folder} is a model artifact, not a checkpoint folder ({WEIGHTS_FILE} + {CONFIG_FILE})")
    if folder.is_file():
        raise CheckpointError(
            f"{folder} is a file, not a checkpoint folder ({WEIGHTS_FILE} + {CONFIG_FILE}); a state_dict file "
            f"(.pth, .safetensors) of a zoo architecture becomes one with `sbdeploy import {folder} --arch NAME --out FOLDER`"
        )
    if not folder.is_dir():
        raise CheckpointError(
            f"checkpoint folder {folder} does not exist (expected a folder with {WEIGHTS_FILE} and {CONFIG_FILE})"
        )


def read_config(folder: str | Path) -> CheckpointConfig:
    """Read and check ``config.json`` of a checkpoint folder."""
    folder = Path(folder)
    require_folder(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; a checkpoint folder holds {WEIGHTS_FILE} and {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); restore it from the training run") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return CheckpointConfig.from_json(data, path)


def is_safetensors(data: bytes) -> bool:
    """True when ``data`` has the safetensors layout: a u64 little-endian header length N, then N bytes of JSON."""
    return len(data) > 8 and data[8:9] == b"{" and 8 + int.from_bytes(data[:8], "little") <= len(data)


def pickle_kind(data: bytes) -> str | None:
    """'pickle' (protocol 2-5) or 'torch.save archive' (zip) when ``data`` starts like one (a safetensors ``{`` at
    byte 9 is not), else None."""
    if data[:4] == b"PK\x03\x04":
        return "torch.save archive"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") and data[8:9] != b"{":
        return "pickle"
    return None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; CheckpointError (never unpickling) when it is not one."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; a checkpoint folder holds {WEIGHTS_FILE} and {CONFIG_FILE}")
    data = path.read_bytes()
    if not is_safetensors(data):
        kind = pickle_kind(data)
        if kind is not None:
            raise CheckpointError(
                f"{path} is a {kind}, not safetensors; sbdeploy never unpickles files. Make a checkpoint folder "
                f"from it with `sbdeploy import {path.name} --arch NAME --out FOLDER` (weights-only loading)"
            )
        raise CheckpointError(
            f"{path} is not a readable safetensors file (it does not start with a complete safetensors header); "
            "it may be truncated, corrupt or of another format"
        )
    return parse_safetensors(data, path)


def parse_safetensors(data: bytes, source: Path) -> dict[str, torch.Tensor]:
    """The tensors of safetensors bytes (see :func:`is_safetensors`); CheckpointError naming ``source`` when corrupt."""
    try:
        return load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{source} is not a readable safetensors file ({error}); it may be truncated or corrupt"
        ) from None


def build_model(config: CheckpointConfig) -> nn.Module:
    """A fresh model of the checkpoint's architecture and options (on the current default device)."""
    try:
        return create_model(config.arch, **config.options)
    except SbdeployError as error:
        raise CheckpointError(f"config.json names a model sbdeploy cannot build: {error}") from None


def state_mismatches(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``state`` cannot load strictly where ``expected`` is the model's state_dict, naming the first keys; None when it fits."""
    shown = 3
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    details = []
    for count, what, names in ((len(missing), "missing", missing), (len(unexpected), "unexpected", unexpected)):
        if count:
            details.append(f"{count} {what} ({', '.join(names[:shown])}{', ...' if count > shown else ''})")
    if wrong:
        shapes = ", ".join(
            f"{k}: {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model" for k in wrong[:shown]
        )
        details.append(f"{len(wrong)} of wrong shape ({shapes}{', ...' if len(wrong) > shown else ''})")
    return "; ".join(details) or None


def load_checkpoint(folder: str | Path) -> Checkpoint:
    """Load a checkpoint folder and return the model in eval mode with its config."""
    folder = Path(folder)
    config = read_config(folder)
    weights_path = folder / WEIGHTS_FILE
    state = read_weights(weights_path)
    with torch.device("meta"):  # a skeleton: the file's tensors replace every tensor, no random init to pay for
        model = build_model(config)
    problem = state_mismatches(model.state_dict(), state)
    if problem:
        raise CheckpointError(
            f"{weights_path} does not match the architecture in config.json ({config.arch}, {config.options}): {problem}. "
            "Check that both files come from the same training run."
        )
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a non-persistent buffer stayed empty
        model = build_model(config)
        model.load_state_dict(state, strict=True)
    model.eval()
    return Checkpoint(path=folder, model=model, config=config, weights_sha256=sha256_file(weights_path))
