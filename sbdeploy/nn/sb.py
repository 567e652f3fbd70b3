"""The spatial bottleneck (SB) operator: one definition, a fast form and a reference form.

``y = Deconv(W2) . Sample_S . Conv(W1) (x)`` (``shared/docs/SB_SPEC.md`` section 1).

* :func:`sb_reference` is the dense masked form: a full 3x3 convolution, a 0/1 mask
  of the sampled parities, a full stride-1 transposed convolution. Obviously right,
  as expensive as the dense convolutions.
* :func:`sb_fast` is the strided form: each sampled parity ``(a, b)`` is one
  stride-``2s`` convolution of a shifted input and one stride-2 transposed convolution
  placed back at offset ``(a, b)``; the subgroup outputs are summed.

* :func:`sb_grouped` is the export lowering: the same strided form with all subgroups
  in ONE grouped convolution (``groups`` = number of subgroups) and ONE grouped
  transposed convolution, the shifts written as pads and slices; eval mode only.
  :data:`LOWERINGS` names every form; :func:`lowering_mode` swaps one into every SB of a
  network (what ``sbdeploy export`` traces).

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
        u = u[:, :, 1 - a : 1 - a + out_h, 1 - b : 1 - b + out_w]  # onto the grid; it always reaches its end
        y = u if y is None else y + u
    assert y is not None, "every sampling set keeps position (0, 0)"
    return y


def _apply_tiled(mid: nn.Module, z: Tensor, groups: int) -> Tensor:
    """Run an eval-mode channel-wise ``mid`` on ``groups`` stacked copies of its channels."""
    for m in mid if isinstance(mid, nn.Sequential) else (mid,):
        if isinstance(m, nn.BatchNorm2d):
            if m.training or m.running_mean is None or m.running_var is None:
                raise ConfigError("the grouped SB lowering is for inference: call model.eval() first (BN needs running stats)")
            weight = None if m.weight is None else m.weight.repeat(groups)
            bias = None if m.bias is None else m.bias.repeat(groups)
            z = F.batch_norm(
                z, m.running_mean.repeat(groups), m.running_var.repeat(groups), weight, bias, False, 0.0, m.eps
            )
        elif isinstance(m, nn.ReLU):
            z = F.relu(z)
        elif not isinstance(m, nn.Identity):
            raise ConfigError(
                f"the grouped SB lowering needs a channel-wise mid module (BatchNorm2d, ReLU); got {type(m).__name__}"
            )
    return z


def sb_grouped(
    x: Tensor, w1: Tensor, w2: Tensor, *, stride: int, sampling: str, mid: nn.Module | None = None
) -> Tensor:
    """Export form: one grouped stride-2s conv and one grouped stride-2 deconv for all subgroups.

    Subgroup ``(a, b)`` reads the zero-padded input shifted by ``(s*a, s*b)``; the shifted
    views are cropped (or zero-padded) to one common size and stacked on the channel axis,
    so ``Conv(groups=G)`` with W1 repeated G times computes every subgroup at once. A
    subgroup with fewer rows or columns than the largest (odd grid sizes) gets spurious
    outputs in its last row/column (their windows overlap real data, so they are not zero):
    they are zeroed after ``mid`` and before the deconv. ``ConvTranspose(groups=G)`` with
    W2 repeated undoes the sampling; subgroup ``(a, b)``'s output is cropped by
    ``(1 - a, 1 - b)`` onto the grid and the subgroups are summed. ``mid`` must be
    channel-wise (eval-mode BN, ReLU): it runs on all stacked channels at once.
    """
    out_h, out_w = conv_output_size(x.shape[2], stride), conv_output_size(x.shape[3], stride)
    sizes = {
        (a, b): (subgroup_size(out_h, a), subgroup_size(out_w, b)) for a, b in SAMPLINGS[resolve_sampling(sampling)]
    }
    parities = [p for p, (h, w) in sizes.items() if h > 0 and w > 0]
    groups = len(parities)
    max_h, max_w = sizes[(0, 0)]  # parity 0 has the most rows and columns
    rows, cols = 2 * stride * (max_h - 1) + 3, 2 * stride * (max_w - 1) + 3  # input window of max_h x max_w
    extra_h = max(0, max(stride * a for a, _ in parities) + rows - (x.shape[2] + 2))
    extra_w = max(0, max(stride * b for _, b in parities) + cols - (x.shape[3] + 2))
    padded = F.pad(x, (1, 1 + extra_w, 1, 1 + extra_h))
    shifted = [padded[:, :, stride * a : stride * a + rows, stride * b : stride * b + cols] for a, b in parities]
    channels = w1.shape[0]
    z = F.conv2d(torch.cat(shifted, dim=1) if groups > 1 else shifted[0], w1.repeat(groups, 1, 1, 1),
                 stride=2 * stride, groups=groups)
    if mid is not None:
        z = _apply_tiled(mid, z, groups)
    if any(sizes[p] != (max_h, max_w) for p in parities):
        chunks = z.split(channels, dim=1)
        z = torch.cat(
            [
                F.pad(c[:, :, : sizes[p][0], : sizes[p][1]], (0, max_w - sizes[p][1], 0, max_h - sizes[p][0]))
                if sizes[p] != (max_h, max_w)
                else c
                for p, c in zip(parities, chunks)
            ],
            dim=1,
        )
    u = F.conv_transpose2d(z, w2.repeat(groups, 1, 1, 1), stride=2, groups=groups)  # rows a-1 .. a-1+2*max_h
    out_channels = w2.shape[1]
    y = None
    for g, (a, b) in enumerate(parities):
        part = u[:, g * out_channels : (g + 1) * out_channels, 1 - a : 1 - a + out_h, 1 - b : 1 - b + out_w]
        y = part if y is None else y + part
    assert y is not None, "every sampling set keeps position (0, 0)"
    return y


LOWERINGS = {"grouped": sb_grouped, "separate": sb_fast, "reference": sb_reference}
"""Every form of the SB, by name: ``grouped`` (export default), ``separate`` (one conv/deconv
pair per subgroup, :func:`sb_fast`) and ``reference`` (dense masked)."""


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
        self.lowering: str | None = None  # set by lowering_mode(); None = sb_fast

    def forward(self, x: Tensor) -> Tensor:
        if self.use_reference:
            return self.reference_forward(x)
        if self.lowering is not None:
            return LOWERINGS[self.lowering](
                x, self.conv.weight, self.deconv.weight, stride=self.stride, sampling=self.sampling, mid=self.mid
            )
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
def _every_sb(module: nn.Module, name: str, value: object, reset: object) -> Iterator[nn.Module]:
    """Within the block, attribute ``name`` of every SB inside ``module`` is ``value``; then ``reset``."""
    sbs = [m for m in module.modules() if isinstance(m, SpatialBottleneck)]
    for sb in sbs:
        setattr(sb, name, value)
    try:
        yield module
    finally:
        for sb in sbs:
            setattr(sb, name, reset)


def reference_mode(module: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Within the block, every SB inside ``module`` runs its dense masked reference form."""
    return _every_sb(module, "use_reference", True, False)


def lowering_mode(module: nn.Module, lowering: str) -> contextlib.AbstractContextManager[nn.Module]:
    """Within the block, every SB inside ``module`` runs the named form of :data:`LOWERINGS`."""
    if lowering not in LOWERINGS:
        raise ConfigError(f"unknown SB lowering {lowering!r}; choose one of {', '.join(LOWERINGS)}")
    return _every_sb(module, "lowering", lowering, None)
