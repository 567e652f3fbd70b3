"""scikit-learn's handwritten digits: a small real image dataset that needs no download.

1797 grayscale 8x8 images, resized (bilinear) and split 80/20 by class with a fixed seed: the same split everywhere.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLASS_NAMES = tuple(str(i) for i in range(10))
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits(split: str = "test", size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 1, size, size]`` float32 in [0, 1] and int64 labels of ``train`` (1438) or ``test`` (359)."""
    from sklearn.datasets import load_digits as sklearn_digits

    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        test[rng.choice(idx, size=round(len(idx) * TEST_FRACTION), replace=False)] = True
    keep = test if split == "test" else ~test
    return images.numpy()[keep], labels[keep]
