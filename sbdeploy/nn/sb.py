"""The spatial bottleneck (SB) operator: one definition, a fast form and a reference form.

``y = Deconv(W2) . Sample_S . Conv(W1) (x)`` (``shared/docs/SB_SPEC.md`` section 1).

* :func:`sb_reference` is the dense masked form: a full 3x3 convolution, a 0/1 mask
  of the sampled parities, a full stride-1 transposed convolution. Obviously right,
  as expensive as the dense convolutions.
* :func:`sb_fast` is the strided form: each sampled parity ``(a, b)`` is one
  stride-``2s`` convolution of a shifted input and one stride-2 transposed convolution
  placed back at offset ``(a, b)``; the subgroup outputs are summed.

Between the two convolutions an optional point-wise ``mid`` module (BN + ReLU in the
SB regular block) runs on the sampled positions only. Both forms hand it the sampled
values of all subgroups packed into one ``[N, C, 1, L]`` tensor, so a BatchNorm in
training mode takes its statistics over all sampled positions together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    return sum(
        subgroup_size(height, a) * subgroup_size(width, b)
        for a, b in SAMPLINGS[resolve_sampling(sampling)]
    )


def _apply_packed(mid: nn.Module | None, values: list[Tensor]) -> list[Tensor]:
    """Run ``mid`` once over the sampled values of all subgroups, packed together."""
    if mid is None:
        return values
    shapes = [v.shape for v in values]
    packed = torch.cat([v.flatten(2) for v in values], dim=2).unsqueeze(2)
    out = mid(packed).squeeze(2)
    sizes = [s[2] * s[3] for s in shapes]
    return [o.reshape(s[0], o.shape[1], s[2], s[3]) for o, s in zip(out.split(sizes, dim=2), shapes)]


def sb_reference(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: nn.Module | None = None
) -> Tensor:
    """Dense masked form: ``conv_transpose(mask * mid(conv(x)))`` on the full grid."""
    z = F.conv2d(x, w1, stride=stride, padding=1)
    mask = sampling_mask(z.shape[2], z.shape[3], sampling, device=z.device)
    if mid is not None:
        kept = z[:, :, mask].unsqueeze(2)  # [N, C, 1, L] in row-major order
        z = torch.zeros_like(z)
        z[:, :, mask] = mid(kept).squeeze(2)
    else:
        z = z * mask.to(z.dtype)
    return F.conv_transpose2d(z, w2, stride=1, padding=1)


def sb_fast(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: nn.Module | None = None
) -> Tensor:
    """Strided form: per sampled parity a stride-2s conv and a stride-2 transposed conv."""
    out_h, out_w = conv_output_size(x.shape[2], stride), conv_output_size(x.shape[3], stride)
    parities = [
        (a, b)
        for a, b in SAMPLINGS[resolve_sampling(sampling)]
        if subgroup_size(out_h, a) > 0 and subgroup_size(out_w, b) > 0
    ]
    padded = F.pad(x, (1, 1, 1, 1))
    z = [
        F.conv2d(padded[:, :, stride * a :, stride * b :], w1, stride=2 * stride)
        for a, b in parities
    ]
    z = _apply_packed(mid, z)
    y = None
    for (a, b), za in zip(parities, z):
        u = F.conv_transpose2d(za, w2, stride=2)  # covers grid rows a-1 .. a-1+u_h-1
        top, left = a - 1, b - 1
        u = F.pad(u, (left, out_w - left - u.shape[3], top, out_h - top - u.shape[2]))
        y = u if y is None else y + u
    assert y is not None, "every sampling set keeps position (0, 0)"
    return y


class SpatialBottleneck(nn.Module):
    """Spatial bottleneck: a 3x3 conv computed at sampled positions, then a 3x3 deconv.

    Args:
        in_channels: channels of the input.
        mid_channels: channels between the conv and the deconv (C_mid).
        out_channels: channels of the output.
        stride: stride of the conv (1, or 2 in a downsampling block).
        sampling: ``single``, ``chessboard`` (default), ``three`` or ``dense``.
        mid: optional point-wise module (e.g. BN + ReLU) run on the sampled positions.

    ``.conv`` holds W1 ``[mid, in, 3, 3]`` and ``.deconv`` holds W2 ``[mid, out, 3, 3]``;
    they are parameter holders, called through :func:`sb_fast` / :func:`sb_reference`.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        sampling: str = "chessboard",
        mid: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.sampling = resolve_sampling(sampling)
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, stride=stride, padding=1, bias=False)
        self.deconv = nn.ConvTranspose2d(mid_channels, out_channels, 3, padding=1, bias=False)
        self.mid = mid
        self.use_reference = False  # set by reference_mode()

    def forward(self, x: Tensor) -> Tensor:
        if self.use_reference:
            return self.reference_forward(x)
        return sb_fast(
            x, self.conv.weight, self.deconv.weight, stride=self.stride, sampling=self.sampling, mid=self.mid
        )

    def reference_forward(self, x: Tensor) -> Tensor:
        """The dense masked form of the same computation (the reference)."""
        return sb_reference(
            x, self.conv.weight, self.deconv.weight, stride=self.stride, sampling=self.sampling, mid=self.mid
        )

    def extra_repr(self) -> str:
        return f"stride={self.stride}, sampling={self.sampling!r}"


@contextlib.contextmanager
def reference_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every SB inside ``module`` runs its dense masked reference form."""
    sbs = [m for m in module.modules() if isinstance(m, SpatialBottleneck)]
    for sb in sbs:
        sb.use_reference = True
    try:
        yield module
    finally:
        for sb in sbs:
            sb.use_reference = False
