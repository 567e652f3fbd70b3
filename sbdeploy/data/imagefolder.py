"""Image folders: one sub-folder per class, read with Pillow.

``ROOT/train/<class>`` + ``ROOT/test/<class>`` (or ``val/``) as given, or ``ROOT/<class>`` split 80/20 per class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sbdeploy.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _split_folders(root: Path) -> tuple[Path, Path] | None:
    test = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    return (root / "train", test) if (root / "train").is_dir() and test is not None else None


def is_image_folder(root: Path) -> bool:
    """Whether ``root`` looks like an image-folder tree (class sub-folders holding images)."""
    if not root.is_dir():
        return False
    split = _split_folders(root)
    base = split[0] if split else root
    return any(_files(d) for d in _class_dirs(base))


def _read(paths: list[Path], size: int, mode: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(paths), size, size, 1 if mode == "L" else 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                resized = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                out[i] = np.asarray(resized).reshape(size, size, -1)
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path} is not a readable image ({error}); remove it from the folder") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _mode(paths: list[Path]) -> str:
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as image:
                if image.mode not in GRAY_MODES:
                    return "RGB"
        except OSError:
            continue  # reported by _read with its path
    return "L"


def load_image_folder(
    root: str | Path, size: int
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], tuple[str, ...]]:
    """``{"train": (images, labels), "test": (images, labels)}`` (uint8 ``[N, 1 or 3, size, size]``), class names."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    split = _split_folders(root)
    base = split[0] if split else root
    class_names = tuple(d.name for d in _class_dirs(base))
    if not class_names:
        raise DataError(f"{base} has no class sub-folders; expected ROOT/<class>/<image> or ROOT/train/<class>/<image>")
    index = {name: i for i, name in enumerate(class_names)}
    listed: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    if split:
        for name, folder in zip(("train", "test"), split):
            for d in _class_dirs(folder):
                if d.name not in index:
                    raise DataError(f"{d} is a class that {base} lacks; train and test need the same class folders")
                listed[name] += [(p, index[d.name]) for p in _files(d)]
    else:
        rng = np.random.default_rng(SPLIT_SEED)
        for d in _class_dirs(root):
            files = _files(d)
            test = set(rng.choice(len(files), size=round(len(files) * TEST_FRACTION), replace=False).tolist())
            for i, p in enumerate(files):
                listed["test" if i in test else "train"].append((p, index[d.name]))
    if not listed["train"] or not listed["test"]:
        raise DataError(
            f"{root} holds too few images for a train and a test split (train {len(listed['train'])}, test {len(listed['test'])})"
        )
    mode = _mode([p for p, _ in listed["train"] + listed["test"]])
    splits = {
        name: (_read([p for p, _ in items], size, mode), torch.tensor([c for _, c in items], dtype=torch.int64))
        for name, items in listed.items()
    }
    return splits, class_names
