"""Synthetic images for smoke tests: learnable, deterministic, no files.

An image is its class's fixed smooth random template plus Gaussian noise, clipped to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DATA_SEED = 1234
NUM_CLASSES, IN_CHANS, NOISE = 10, 3, 0.15
SPLIT_SIZES = {"train": 512, "test": 128}


def load_synthetic(split: str = "train", size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 3, size, size]`` float32 in [0, 1] and int64 labels of a split (same templates, other noise)."""
    gen = torch.Generator().manual_seed(DATA_SEED)
    coarse = torch.rand(NUM_CLASSES, IN_CHANS, 4, 4, generator=gen)
    templates = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    if split == "test":  # advance the generator so the test noise differs from the train noise
        torch.randn(SPLIT_SIZES["train"], IN_CHANS, size, size, generator=gen)
    labels = torch.arange(SPLIT_SIZES[split]) % NUM_CLASSES
    images = templates[labels] + NOISE * torch.randn(len(labels), IN_CHANS, size, size, generator=gen)
    return images.clamp_(0, 1), labels
