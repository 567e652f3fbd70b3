"""The zoo table: parameters and MACs of registered networks, SB beside its baseline.

Each network is counted as a skeleton on PyTorch's ``meta`` device (``docs/zoo.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from sbdeploy.flops import complexity
from sbdeploy.models import create_model, list_models, model_info


@dataclass(frozen=True)
class ZooRow:
    """One network of the zoo at its default input size (batch 1)."""

    name: str
    family: str
    baseline: str | None
    input_size: tuple[int, int]
    params: int
    macs: int
    macs_vs_baseline: float  # MACs / baseline MACs (1.0 for a baseline)
    params_vs_baseline: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _skeleton(name: str, options: dict[str, str]) -> nn.Module:
    """``name`` on the meta device; its BatchNorms (no MACs, slow on meta) pass their input through."""
    with torch.device("meta"):
        model = create_model(name, **options)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.forward = lambda x: x  # type: ignore[method-assign]
    return model


def zoo_rows(
    pattern: str | None = None,
    *,
    sampling: str = "chessboard",
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[ZooRow]:
    """Complexity of every registered network matching the shell-style ``pattern``, SB networks with ``sampling``.

    ``on_progress`` is called with (name, networks counted, networks to count) after each one.
    """
    names = list_models(pattern)
    to_count = sorted({*names, *(model_info(n).baseline for n in names if model_info(n).baseline)})
    counted: dict[str, tuple[int, int]] = {}
    for name in to_count:
        info = model_info(name)
        with torch.device("meta"):
            c = complexity(_skeleton(name, {"sampling": sampling} if info.is_sb else {}), info.input_size)
        counted[name] = (c.params, c.macs)
        if on_progress is not None:
            on_progress(name, len(counted), len(to_count))
    rows = []
    for name in names:
        info = model_info(name)
        params, macs = counted[name]
        base_params, base_macs = counted[info.baseline] if info.baseline else (params, macs)
        rows.append(
            ZooRow(
                name=name,
                family=info.family,
                baseline=info.baseline,
                input_size=info.input_size,
                params=params,
                macs=macs,
                macs_vs_baseline=macs / base_macs,
                params_vs_baseline=params / base_params,
            )
        )
    return rows
