"""Triton model repositories from sbdeploy artifacts: one checked model folder per file, each appearing by one rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sbdeploy import kernels
from sbdeploy.errors import ConfigError
from sbdeploy.files import DeployFile, describe_file
from sbdeploy.serve.config_check import NAME_RE, check_model_config, validator
from sbdeploy.serve.model_config import MODEL_FILES, OPENVINO, TritonOptions, build_model_config, serving_backend
from sbdeploy.serve.readme import model_readme


@dataclass(frozen=True)
class TritonModel:
    """One generated model folder."""

    name: str
    platform: str  # the config's platform, or its backend where it names one (openvino)
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


def write_triton_repo(
    artifacts: Sequence[str | Path],
    out: str | Path,
    *,
    name: str | None = None,
    names: Sequence[str] | None = None,
    options: TritonOptions | None = None,
    force: bool = False,
) -> TritonRepo:
    """Write one Triton model folder per artifact under ``out``, named ``name``, ``names`` or after the file."""
    options = options or TritonOptions()
    if not artifacts:
        raise ConfigError("give at least one artifact (.onnx or .engine)")
    if name is not None and len(artifacts) != 1:
        raise ConfigError("--name names a single model; with several artifacts each model is named after its file")
    if names is not None and len(names) != len(artifacts):
        raise ConfigError(f"{len(names)} model names for {len(artifacts)} artifacts")
    root = Path(out)
    files = [describe_file(a) for a in artifacts]
    names = [name] if name is not None else list(names or (f.name.split(".")[0] for f in files))
    for n in names:
        if not NAME_RE.match(n):
            raise ConfigError(f"model name {n!r}: use letters, digits, '_', '-', '.' (it is a folder name)")
    if len(set(names)) != len(names):
        raise ConfigError(f"two artifacts give the same model name ({names}); pass them one at a time with --name")
    existing = [n for n in names if (root / n).exists()]
    if existing and not force:
        raise ConfigError(f"{root} already has model folder(s) {existing}; pass --force to replace them")

    validated_with, not_validated = validator()
    planned: list[tuple[DeployFile, TritonModel]] = []
    backends = [serving_backend(f, options) for f in files]
    if (options.bf16 or options.threads is not None) and OPENVINO not in backends:
        raise ConfigError(
            "--bf16 and --threads set Triton's openvino backend, which serves none of these: add --onnx-backend openvino"
        )
    fused = [f.uses_kernels and b != OPENVINO for f, b in zip(files, backends)]  # openvino refuses them, in one line
    library = kernels.library_path() if any(fused) else None  # refused here when not built
    for file, backend, model_name, needs_library in zip(files, backends, names, fused):
        op_library = (root / model_name).resolve() / library.name if library and needs_library else None
        text, max_batch, notes = build_model_config(file, model_name, options, op_library)
        if validated_with:
            check_model_config(text)
        model = TritonModel(model_name, backend, root / model_name, max_batch, text, tuple(notes))
        planned.append((file, model))

    root.mkdir(parents=True, exist_ok=True)
    for file, model in planned:
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{model.name}."))
        try:
            for source, copy in ((file.name, MODEL_FILES[file.kind]), *((f, f) for f in file.external_data)):
                (tmp / "1" / copy).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file.path.parent / source, tmp / "1" / copy)
            if library is not None and file.uses_kernels:
                shutil.copyfile(library, tmp / library.name)
            (tmp / "config.pbtxt").write_text(model.config_text)
            (tmp / "README.md").write_text(model_readme(file, model, validated_with, not_validated))
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
