"""Sampling sets of the SB and the grid arithmetic every form shares (``SB_SPEC.md`` section 1).

A sampling set names the parities ``(i mod 2, j mod 2)`` of the conv-output positions an
SB keeps; a *subgroup* is the positions of one parity. These helpers count and list them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbdeploy.errors import ConfigError

SAMPLINGS: dict[str, tuple[tuple[int, int], ...]] = {
    "single": ((0, 0),),
    "chessboard": ((0, 0), (1, 1)),
    "three": ((0, 0), (1, 1), (0, 1)),
    "dense": ((0, 0), (1, 1), (0, 1), (1, 0)),
}
"""Sampling sets by name: the parities ``(i mod 2, j mod 2)`` of the kept positions."""

SAMPLING_ALIASES = {"sb1": "single", "sb2": "chessboard", "sb3": "three", "sb4": "dense"}


def resolve_sampling(sampling: str) -> str:
    """Return the canonical sampling name; accepts the paper's sb1..sb4 too."""
    name = SAMPLING_ALIASES.get(sampling, sampling)
    if name not in SAMPLINGS:
        raise ConfigError(
            f"unknown sampling set {sampling!r}; choose one of {', '.join(SAMPLINGS)} "
            f"(or {', '.join(SAMPLING_ALIASES)})"
        )
    return name


def conv_output_size(size: int, stride: int) -> int:
    """Output size of a 3x3 convolution with padding 1."""
    return (size - 1) // stride + 1


def subgroup_size(grid: int, parity: int) -> int:
    """Number of grid positions ``i < grid`` with ``i % 2 == parity``."""
    return (grid - parity + 1) // 2


def kept_parities(sampling: str, out_h: int, out_w: int) -> list[tuple[int, int]]:
    """The sampled parities that hold at least one position of an ``out_h x out_w`` grid."""
    return [
        (a, b)
        for a, b in SAMPLINGS[resolve_sampling(sampling)]
        if subgroup_size(out_h, a) > 0 and subgroup_size(out_w, b) > 0
    ]


def sampling_mask(height: int, width: int, sampling: str, *, device=None, dtype=None) -> Tensor:
    """0/1 mask ``[height, width]`` of the positions kept by ``sampling``."""
    rows = torch.arange(height, device=device).remainder(2)[:, None]
    cols = torch.arange(width, device=device).remainder(2)[None, :]
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    for a, b in SAMPLINGS[resolve_sampling(sampling)]:
        mask |= (rows == a) & (cols == b)
    return mask if dtype is None else mask.to(dtype)


def sampled_positions(height: int, width: int, sampling: str) -> int:
    """How many of the ``height x width`` grid positions ``sampling`` keeps."""
    return sum(subgroup_size(height, a) * subgroup_size(width, b) for a, b in SAMPLINGS[resolve_sampling(sampling)])
