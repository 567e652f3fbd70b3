"""CIFAR-10 and CIFAR-100 from their standard "python version" folders.

Their pickled batch files are read with an unpickler that rebuilds numpy arrays and refuses any other global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sbdeploy.errors import DataError

# Standard per-channel mean and std of the training sets (in [0, 1] units), by variant.
STATS = {
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
FOLDERS = {10: "cifar-10-batches-py", 100: "cifar-100-python"}
MARKERS = {10: "batches.meta", 100: "meta"}  # the file that tells a batch folder

# The only globals a numpy-array pickle needs (numpy 1.x and 2.x module names).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, lists, dicts and strings, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch file")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR batch file as a dict with ``str`` keys, through the restricted unpickler."""
    if not path.is_file():
        raise DataError(f"{path} is missing; expected the standard CIFAR python-version folder")
    try:
        raw = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001  (any failure of an untrusted stream is a data error)
        raise DataError(f"{path} is not a CIFAR batch file ({error})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path} is not a CIFAR batch file (holds {type(raw).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in raw.items()}


def _images(batch: dict[str, Any], path: Path) -> torch.Tensor:
    data = np.asarray(batch.get("data"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())


def load_cifar(
    root: str | Path, split: str, *, variant: int = 10
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Images ``[N, 3, 32, 32]`` uint8, labels and class names of a split of ``root`` (or its standard sub-folder)."""
    folder = _batch_folder(Path(root), variant)
    if folder is None:
        raise DataError(
            f"{root} is not a CIFAR-{variant} python-version folder (no {MARKERS[variant]}); "
            f"point at the extracted {FOLDERS[variant]}/ folder"
        )
    if variant == 10:
        files = [folder / f"data_batch_{i}" for i in range(1, 6)] if split == "train" else [folder / "test_batch"]
        meta, names_key, labels_key = folder / "batches.meta", "label_names", "labels"
    else:
        files = [folder / split]
        meta, names_key, labels_key = folder / "meta", "fine_label_names", "fine_labels"
    images, labels = [], []
    for path in files:
        batch = read_batch(path)
        images.append(_images(batch, path))
        labels.append(torch.as_tensor(np.asarray(batch.get(labels_key, []), dtype=np.int64)))
        if len(labels[-1]) != len(images[-1]):
            raise DataError(f"{path}: {len(labels[-1])} labels ({labels_key!r}) for {len(images[-1])} images")
    class_names = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in read_batch(meta).get(names_key, []))
    if len(class_names) != variant:
        raise DataError(f"{meta}: expected {variant} names under {names_key!r}, found {len(class_names)}")
    return torch.cat(images), torch.cat(labels), class_names


def _batch_folder(root: Path, variant: int) -> Path | None:
    """The folder holding the batch files (``root`` itself or its standard sub-folder), or None."""
    return next((f for f in (root, root / FOLDERS[variant]) if (f / MARKERS[variant]).is_file()), None)


def detect_cifar(root: Path) -> int | None:
    """10 or 100 when ``root`` (or its standard sub-folder) holds CIFAR batches, else None."""
    return next((v for v in (10, 100) if _batch_folder(root, v)), None)
