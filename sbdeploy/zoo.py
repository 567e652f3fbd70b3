"""The zoo table: parameters and MACs of registered networks, SB beside its baseline."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


def zoo_rows(pattern: str | None = None, *, sampling: str = "chessboard") -> list[ZooRow]:
    """Complexity of every registered network matching ``pattern``.

    Args:
        pattern: shell-style filter on the names (``cifar_*``); all networks when None.
        sampling: sampling set used for the SB networks.
    """
    rows, cache = [], {}

    def measure(name: str) -> tuple[int, int]:
        if name not in cache:
            info = model_info(name)
            options = {"sampling": sampling} if info.is_sb else {}
            c = complexity(create_model(name, **options), info.input_size)
            cache[name] = (c.params, c.macs)
        return cache[name]

    for name in list_models(pattern):
        info = model_info(name)
        params, macs = measure(name)
        base_params, base_macs = measure(info.baseline) if info.baseline else (params, macs)
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
