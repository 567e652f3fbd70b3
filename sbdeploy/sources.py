"""What a command runs: a checkpoint folder or zoo name (fixed-seed random weights), its label, and its baseline.

An SB network's baseline is the one given, else the registry's with the same options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sbdeploy.checkpoint import CONFIG_FILE, Checkpoint, CheckpointConfig, load_checkpoint, require_folder
from sbdeploy.errors import CheckpointError, ConfigError, UnknownModelError
from sbdeploy.files import ENGINE_SUFFIXES
from sbdeploy.flops import count_macs
from sbdeploy.models import SB_OPTIONS, create_model, model_info

ZOO_NORMALIZATION = {
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def is_artifact_file(spec: str | Path) -> bool:
    """Whether a model argument names an ONNX file or an engine rather than a checkpoint folder or zoo name.

    By its suffix, unless it is a checkpoint folder (one holding ``config.json``).
    """
    path = Path(spec)
    return path.suffix in (".onnx", *ENGINE_SUFFIXES) and not (path / CONFIG_FILE).is_file()


def zoo_source(name: str, options: dict[str, Any]) -> Checkpoint:
    """A registered network with fixed-seed random weights (deterministic)."""
    from safetensors.torch import save as save_safetensors_bytes

    info = model_info(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(name, **options).eval()
    in_chans = int(options.get("in_chans", 3))
    mean, std = ZOO_NORMALIZATION[info.family]
    if in_chans != 3:
        mean, std = (0.5,) * in_chans, (0.5,) * in_chans
    num_classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    full_options = {**options, "num_classes": num_classes, "in_chans": in_chans}
    if info.is_sb:
        full_options["sampling"] = options.get("sampling", "chessboard")
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
    return Checkpoint(Path(name), model, config, sha256(save_safetensors_bytes(state)).hexdigest(), kind="zoo")


def resolve_source(source: str | Path, *, options: dict[str, Any] | None = None) -> Checkpoint:
    """A checkpoint folder, or a zoo name (random weights). ``options`` only apply to zoo names."""
    path = Path(source)
    if path.is_file():
        require_folder(path)  # says what to do with a file
    if path.is_dir():
        if options:
            raise ConfigError(f"model options {sorted(options)} only apply to zoo names; {path} is a checkpoint")
        ckpt = load_checkpoint(path)
        ckpt.model.eval()
        return ckpt
    try:
        return zoo_source(str(source), dict(options or {}))
    except UnknownModelError as error:
        if path.exists() or "/" in str(source) or "\\" in str(source):
            raise CheckpointError(
                f"{source} is not a checkpoint folder (a folder with model.safetensors and config.json)"
            ) from None
        raise ConfigError(f"{source!r} is neither a checkpoint folder nor a zoo name: {error}") from None


def baseline_of(source: Checkpoint, baseline: str | Path | None = None) -> Checkpoint | None:
    """The baseline ``source`` is timed against: ``baseline`` when given, else its registry baseline with random weights.

    None for a network without a baseline (a baseline itself).
    """
    if baseline is not None:
        return resolve_source(baseline)
    name = model_info(source.config.arch).baseline
    if name is None:
        return None
    return resolve_source(name, options={k: v for k, v in source.config.options.items() if k not in SB_OPTIONS})


@dataclass(frozen=True)
class Model:
    """A network of a run: its source, label, file-name stem, input size, MACs and its baseline's label."""

    label: str
    stem: str
    source: Checkpoint
    input_size: tuple[int, int]
    macs: int
    baseline: str | None

    @property
    def arch(self) -> str:
        return self.source.config.arch

    @property
    def in_chans(self) -> int:
        return self.source.config.in_chans

    @property
    def module(self) -> nn.Module:
        return self.source.model


def resolve_models(
    specs: Sequence[str | Path],
    *,
    baseline: str | Path | None = None,
    add_baselines: bool = True,
    input_size: tuple[int, int] | None = None,
    stems: Sequence[str] | None = None,
) -> list[Model]:
    """The models of a run: each spec (checkpoint folder or zoo name) and, with ``add_baselines``, each SB network's
    baseline not among them: ``baseline`` when given, else the registry's. ``input_size`` applies to every model (an
    added baseline is timed at its SB network's size); ``stems`` name the specs' files, then the added baselines'.
    """
    sources = [resolve_source(spec) for spec in specs]
    baselines: dict[str, str] = {}  # label -> its baseline's label
    sizes = {src.label: input_size or src.config.input_size for src in sources}  # an added baseline: its SB's
    given = resolve_source(baseline) if baseline is not None else None
    for src in list(sources):
        registry = model_info(src.config.arch).baseline
        if given is None and registry is None:
            continue
        known = given or next((s for s in sources if s.config.arch == registry), None)
        if known is None and add_baselines:
            known = baseline_of(src)
        if known is not None and all(s is not known for s in sources):
            sources.append(known)
            sizes.setdefault(known.label, sizes[src.label])
        if known is not None:
            baselines[src.label] = known.label
    labels = [s.label for s in sources]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        paths = ", ".join(str(s.path) for s in sources if s.label == label)
        raise ConfigError(f"two models are named {label} ({paths}); reports and files are named by it: rename a folder")
    models = []
    for number, src in enumerate(sources):
        size = sizes[src.label]
        models.append(
            Model(
                label=src.label,
                stem=stems[number] if stems is not None and number < len(stems) else src.label,
                source=src,
                input_size=size,
                macs=count_macs(src.model, size, src.config.in_chans),
                baseline=baselines.get(src.label),
            )
        )
    return models
