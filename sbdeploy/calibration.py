"""int8 calibration data: the inputs an int8 artifact's scales are measured on, and where they came from.

A calibration SOURCE (``--calibration SRC``) is a data source name (the first images of its *training* split,
normalized by the checkpoint's mean and std) or a ``.npy`` of normalized float ``N x C x H x W`` inputs; the
default is the checkpoint's own dataset (docs/int8.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sbdeploy.errors import DataError, InputError

if TYPE_CHECKING:
    from sbdeploy.checkpoint import CheckpointConfig

DEFAULT_CALIBRATION_IMAGES = 256
"""Images calibrated on by default: a few hundred real images (MinMax calibration)."""

HELP = (
    "a data source (e.g. digits, cifar10:PATH: its training images) or a .npy of N x C x H x W float inputs, "
    "normalized as the model takes them"
)


@dataclass(frozen=True)
class Calibration:
    """Calibration inputs (normalized float32 ``[N, C, H, W]``) and their SOURCE, of ``kind`` ``"data"`` or ``"npy"``."""

    images: np.ndarray
    source: str
    kind: str

    def to_dict(self) -> dict[str, object]:
        split = "train split" if self.kind == "data" else "as given"
        return {"source": self.source, "kind": self.kind, "images": int(len(self.images)), "split": split}


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(images - mean) / std`` per channel, float32."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((images - m) / s).astype(np.float32)


def _from_npy(path: Path, shape: tuple[int, int, int], limit: int) -> Calibration:
    if not path.exists():
        raise InputError(f"calibration file {path} does not exist; --calibration takes {HELP}")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise InputError(f"calibration path {path} is {what}, not a .npy file; --calibration takes {HELP}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        reason = "it holds pickled objects, which sbdeploy never loads" if "pickle" in str(error) else str(error)
        raise InputError(f"{path} is not a readable .npy array ({reason}); --calibration takes {HELP}") from None
    if array.ndim != 4 or tuple(array.shape[1:]) != shape or len(array) == 0:
        expected = "N x " + " x ".join(str(d) for d in shape)
        raise InputError(
            f"calibration array {path} has shape {tuple(array.shape)}; this model takes {expected} (normalized inputs)"
        )
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise InputError(f"calibration array {path} must hold finite float inputs, got dtype {array.dtype}")
    return Calibration(np.ascontiguousarray(array[:limit], dtype=np.float32), str(path), "npy")


def _from_source(source: str, config: CheckpointConfig, size: tuple[int, int], limit: int) -> Calibration:
    from sbdeploy.data import open_source, to_float

    if size[0] != size[1]:
        raise DataError(
            f"calibration from a data source needs a square input, got {size[0]}x{size[1]}; give a .npy instead"
        )
    data = open_source(source, size=size[0])
    images = to_float(data.train_images[:limit]).numpy()
    if images.shape[1] != config.in_chans:
        raise DataError(f"data source {source!r} has {images.shape[1]} channels but the model takes {config.in_chans}")
    return Calibration(normalize(images, config.mean, config.std), data.source, "data")


def load_calibration(
    source: str | None,
    config: CheckpointConfig,
    *,
    input_size: tuple[int, int] | None = None,
    limit: int = DEFAULT_CALIBRATION_IMAGES,
) -> Calibration:
    """The calibration inputs ``source`` names for a model of ``config`` (default: its own dataset)."""
    size = input_size or config.input_size
    if source is None:
        source = config.dataset or None
    if source is None:
        raise InputError(
            f"int8 needs calibration data and {config.arch} names no dataset in its config.json: "
            f"give --calibration SRC, {HELP}"
        )
    if source.endswith(".npy") or Path(source).is_file():
        return _from_npy(Path(source), (config.in_chans, size[0], size[1]), limit)
    return _from_source(source, config, size, limit)


def calibration_for(
    configs: Mapping[str, CheckpointConfig],
    source: str | None,
    *,
    input_sizes: Mapping[str, tuple[int, int]] | None = None,
    limit: int = DEFAULT_CALIBRATION_IMAGES,
) -> dict[str, Calibration]:
    """Calibration data per model label of one run: ``source``, else the first dataset any of them names (so a
    random-weight baseline is calibrated on its SB checkpoint's data)."""
    default = source or next((c.dataset for c in configs.values() if c.dataset), None)
    if default is None:
        raise InputError(
            f"int8 needs calibration data and none of {', '.join(configs)} names a dataset "
            f"(zoo names have random weights): give --calibration SRC, {HELP}"
        )
    return {
        label: load_calibration(default, config, input_size=(input_sizes or {}).get(label), limit=limit)
        for label, config in configs.items()
    }
