"""Initialising the linear SB that replaces a channel-bottleneck block's 3x3 conv.

The 3x3 conv ``K`` (C -> C) becomes ``Deconv(W2) . Sample_S . Conv(W1)`` with C/2 mid channels,
both factors fitted in closed form to K's own responses: W1 from the leading eigenvectors of the
responses' second moment at the sampled positions, W2 by least squares over every position. The
derivation and its measured effect: docs/sbify.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbdeploy.nn.sampling import sampling_mask

NOISE_BATCHES, NOISE_BATCH, NOISE_SIZE = 4, 16, 16  # data-free fit: 64 Gaussian 16x16 inputs per conv


def conv_as_deconv(weight: Tensor) -> Tensor:
    """The ConvTranspose2d weight (stride 1, padding 1) that computes ``conv2d(., weight, padding=1)``."""
    return weight.flip(2, 3).transpose(0, 1).contiguous()


@dataclass(frozen=True)
class LinearSBInit:
    """Fitted weights of one linear SB and how well it reproduces the conv on the fit's inputs."""

    conv: Tensor  # W1 [C/2, C, 3, 3]
    deconv: Tensor  # W2 [C/2, C, 3, 3]
    relative_error: float  # |SB(x) - K * x| / |K * x| over the fit's inputs
    inputs: str  # "calibration" or "noise"


class _ConvFit:
    """The two closed-form fits of one 3x3 conv, accumulated over batches of its inputs."""

    def __init__(self, conv: nn.Conv2d, sampling: str) -> None:
        self.weight = conv.weight.detach().double()
        self.dtype = conv.weight.dtype
        self.stride = conv.stride[0]
        self.sampling = sampling
        self.channels = self.weight.shape[0]
        self.mid = max(1, self.channels // 2)
        self.moment = torch.zeros(self.channels, self.channels, dtype=torch.float64, device=self.weight.device)
        self.w1: Tensor | None = None
        self.gram = self.cross = self.energy = None  # type: Tensor | None

    def observe(self, x: Tensor) -> None:
        """Accumulate one batch of the conv's input: moments (first pass) or normal equations (second)."""
        x = x.detach()  # computed in the network's dtype, summed in float64
        y = F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, padding=1)
        mask = sampling_mask(y.shape[2], y.shape[3], self.sampling, device=y.device)
        if self.w1 is None:
            kept = y[:, :, mask].transpose(0, 1).reshape(self.channels, -1)  # [C, N*M]
            self.moment += (kept @ kept.T).double()
            return
        assert self.gram is not None and self.cross is not None and self.energy is not None
        z = F.conv2d(x, self.w1.to(x.dtype), stride=self.stride, padding=1) * mask.to(x.dtype)
        padded = F.pad(z, (1, 1, 1, 1))
        height, width = z.shape[2], z.shape[3]
        shifts = [padded[:, :, a : a + height, b : b + width] for a in range(3) for b in range(3)]
        # [(channel, row, col), N*L]
        patches = torch.stack(shifts, dim=2).permute(1, 2, 0, 3, 4).reshape(self.mid * 9, -1)
        target = y.flatten(2).transpose(0, 1).reshape(self.channels, -1)  # [C, N*L]
        self.gram += (patches @ patches.T).double()
        self.cross += (patches @ target.T).double()
        self.energy += target.double().square().sum()

    def project(self) -> None:
        """First fit: W1 from the leading eigenvectors of the responses' second moment."""
        _, vectors = torch.linalg.eigh(self.moment)  # ascending eigenvalues
        basis = vectors[:, -self.mid :]  # [C, mid]
        self.w1 = torch.einsum("cr,cikl->rikl", basis, self.weight)
        size = self.mid * 9
        self.gram = torch.zeros(size, size, dtype=torch.float64, device=self.weight.device)
        self.cross = torch.zeros(size, self.channels, dtype=torch.float64, device=self.weight.device)
        self.energy = torch.zeros((), dtype=torch.float64, device=self.weight.device)

    def solve(self, inputs: str) -> LinearSBInit:
        """Second fit: W2 by least squares (a vanishing ridge keeps a rank-deficient system solvable)."""
        assert self.w1 is not None and self.gram is not None and self.cross is not None and self.energy is not None
        size = self.gram.shape[0]
        ridge = 1e-12 * float(self.gram.diagonal().mean()) + 1e-300
        solution = torch.linalg.solve(
            self.gram + ridge * torch.eye(size, dtype=torch.float64, device=self.gram.device), self.cross
        )
        kernel = solution.T.reshape(self.channels, self.mid, 3, 3)  # the conv that the deconv equals
        residual = self.energy - 2 * (solution * self.cross).sum() + (solution * (self.gram @ solution)).sum()
        error = float(residual.clamp_min(0).sqrt() / self.energy.sqrt()) if float(self.energy) > 0 else 0.0
        return LinearSBInit(
            conv=self.w1.to(self.dtype),
            deconv=conv_as_deconv(kernel).to(self.dtype),
            relative_error=error,
            inputs=inputs,
        )


def fit_linear_sbs(
    model: nn.Module, convs: list[tuple[str, nn.Conv2d]], sampling: str, *, calibration: Iterable[Tensor] | None = None
) -> dict[str, LinearSBInit]:
    """Fit a linear SB to each named 3x3 conv of ``model``, on the ``calibration`` batches run through it, else on noise."""
    fits = {name: _ConvFit(conv, sampling) for name, conv in convs}
    if calibration is None:
        for name, conv in convs:
            for step in ("moments", "least squares"):
                generator = torch.Generator().manual_seed(0)  # the same noise in both passes
                for _ in range(NOISE_BATCHES):
                    noise = torch.randn(
                        NOISE_BATCH, conv.in_channels, NOISE_SIZE, NOISE_SIZE, generator=generator, dtype=torch.float64
                    )
                    fits[name].observe(noise.to(conv.weight.device))
                if step == "moments":
                    fits[name].project()
        return {name: fit.solve("noise") for name, fit in fits.items()}
    param = next(model.parameters())
    batches = [batch.to(device=param.device, dtype=param.dtype) for batch in calibration]
    was_training = model.training
    model.eval()
    hooks = [
        conv.register_forward_pre_hook(lambda _m, args, fit=fits[name]: fit.observe(args[0])) for name, conv in convs
    ]
    try:
        with torch.no_grad():
            for step in ("moments", "least squares"):
                for batch in batches:
                    model(batch)
                if step == "moments":
                    for fit in fits.values():
                        fit.project()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {name: fit.solve("calibration") for name, fit in fits.items()}
