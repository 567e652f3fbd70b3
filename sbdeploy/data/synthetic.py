"""Synthetic images for smoke tests: learnable, deterministic, no files.

Each class has a fixed random template (smooth, upsampled from a 4x4 grid); an image
is its class template plus Gaussian noise, clipped to [0, 1]. A small network learns
it in a few steps, which is what a smoke test needs, and any seed gives the same data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DATA_SEED = 1234


def load_synthetic(
    split: str = "train",
    size: int = 32,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    n_train: int = 512,
    n_test: int = 128,
    noise: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, in_chans, size, size]`` float32 in [0, 1] and labels ``[N]`` int64.

    Args:
        split: ``"train"`` or ``"test"`` (disjoint noise, same templates).
        size: output height and width.
        num_classes: number of classes (labels cycle through them).
        in_chans: channels per image.
        n_train: images in the train split.
        n_test: images in the test split.
        noise: standard deviation of the per-pixel noise.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    gen = torch.Generator().manual_seed(DATA_SEED)
    coarse = torch.rand(num_classes, in_chans, 4, 4, generator=gen)
    templates = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    n = n_train if split == "train" else n_test
    if split == "test":  # advance the generator so the test noise differs from the train noise
        torch.randn(n_train, in_chans, size, size, generator=gen)
    labels = torch.arange(n) % num_classes
    images = templates[labels] + noise * torch.randn(n, in_chans, size, size, generator=gen)
    return images.clamp_(0, 1), labels
