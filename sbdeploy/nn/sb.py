"""The spatial bottleneck (SB) module: its parameters, and which of its forms it runs.

``y = Deconv(W2) . Sample_S . Conv(W1) (x)`` (``shared/docs/SB_SPEC.md`` section 1). The
math of every form lives in :mod:`sbdeploy.nn.lowering`; an SB runs the one its
:attr:`~SpatialBottleneck.form` names. That attribute is the one switch: :func:`form_mode`
sets it on every SB of a network for the length of a ``with`` block (modes nest), and
:func:`sbdeploy.nn.deploy.deploy_form` sets it for good on its copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import Tensor, nn

from sbdeploy.errors import ConfigError
from sbdeploy.nn.lowering import get_lowering
from sbdeploy.nn.sampling import resolve_sampling

TRAINING_FORM = "separate"
"""The form an SB runs unless told otherwise: the strided training form (:func:`~sbdeploy.nn.lowering.sb_fast`)."""


class SpatialBottleneck(nn.Module):
    """Spatial bottleneck: a 3x3 conv computed at sampled positions, an optional point-wise ``mid``, a 3x3 deconv.

    ``.conv`` (W1) and ``.deconv`` (W2) hold the parameters of the form :attr:`form` names.
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
        self.form = TRAINING_FORM

    @property
    def form(self) -> str:
        """The form this SB runs: a name in :data:`~sbdeploy.nn.lowering.LOWERINGS`."""
        return self._form

    @form.setter
    def form(self, name: str) -> None:
        get_lowering(name)  # ConfigError for an unknown name, at the moment it is set
        self._form = name

    def forward(self, x: Tensor) -> Tensor:
        return self.run(self.form, x)

    def run(self, form: str, x: Tensor) -> Tensor:
        """This SB's computation in the named form (whatever :attr:`form` is)."""
        return get_lowering(form)(
            x,
            self.conv.weight,
            self.deconv.weight,
            stride=self.stride,
            sampling=self.sampling,
            mid=self.mid,
            b1=self.conv.bias,
            b2=self.deconv.bias,
        )

    def reference_forward(self, x: Tensor) -> Tensor:
        """The dense masked form of the same computation (the reference)."""
        return self.run("reference", x)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, sampling={self.sampling!r}, form={self.form!r}"


def has_sb(module: nn.Module) -> bool:
    """Whether ``module`` holds an SB block (a network without one is its baseline's kind)."""
    return any(isinstance(m, SpatialBottleneck) for m in module.modules())


@contextlib.contextmanager
def form_mode(module: nn.Module, form: str) -> Iterator[nn.Module]:
    """Within the block, every SB inside ``module`` runs ``form``; afterwards each SB runs its previous form."""
    get_lowering(form)
    sbs = [m for m in module.modules() if isinstance(m, SpatialBottleneck)]
    previous = [sb.form for sb in sbs]
    for sb in sbs:
        sb.form = form
    try:
        yield module
    finally:
        for sb, name in zip(sbs, previous):
            sb.form = name


def reference_mode(module: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Within the block, every SB inside ``module`` runs its dense masked reference form."""
    return form_mode(module, "reference")
