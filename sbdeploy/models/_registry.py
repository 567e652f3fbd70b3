"""The model registry: a plain dict from name to builder, with what the tools need to know.

``register_model`` refuses duplicate names; ``create_model`` refuses unknown names
(listing close matches) and unknown options (listing the accepted ones).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from torch import nn

from sbdeploy.errors import ConfigError, UnknownModelError

Builder = Callable[..., nn.Module]

SB_OPTIONS = ("sampling", "sb_stages")
"""Builder options of an SB network that its baseline does not take."""


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one network."""

    name: str
    builder: Builder
    family: str  # "cifar" or "imagenet": decides the default input size
    baseline: str | None  # for an SB network, the name of its baseline; None for a baseline

    @property
    def is_sb(self) -> bool:
        return self.baseline is not None

    @property
    def stages(self) -> int:
        """Number of stages (``sb_stages`` numbers them from 1)."""
        return 3 if self.family == "cifar" else 4

    @property
    def input_size(self) -> tuple[int, int]:
        """Default input height and width."""
        return (32, 32) if self.family == "cifar" else (224, 224)

    @property
    def options(self) -> list[str]:
        """Keyword options the builder accepts."""
        return list(inspect.signature(self.builder).parameters)


_MODELS: dict[str, ModelInfo] = {}


def register_model(family: str, baseline: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator adding a builder to the registry under its function name."""

    def add(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelInfo(name=name, builder=builder, family=family, baseline=baseline)
        return builder

    return add


def register_pair(family: str, name: str, baseline: Builder, sb: Builder) -> None:
    """Register ``name`` and its SB twin ``name_sb``, built by ``baseline`` / ``sb`` with the checked options."""
    classes = 10 if family == "cifar" else 1000

    def build_baseline(*, num_classes: int = classes, in_chans: int = 3) -> nn.Module:
        return baseline(num_classes=num_classes, in_chans=in_chans)

    def build_sb(
        *,
        num_classes: int = classes,
        in_chans: int = 3,
        sampling: str = "chessboard",
        sb_stages: Sequence[int] | None = None,
    ) -> nn.Module:
        return sb(num_classes=num_classes, in_chans=in_chans, sampling=sampling, sb_stages=sb_stages)

    build_baseline.__name__ = name
    build_sb.__name__ = f"{name}_sb"
    register_model(family)(build_baseline)
    register_model(family, baseline=name)(build_sb)


def check_sb_stages(sb_stages: Sequence[int] | None, count: int) -> tuple[int, ...] | None:
    """``sb_stages`` as a sorted tuple of stage numbers 1..``count`` (None: every stage); ConfigError when malformed."""
    if sb_stages is None:
        return None
    stages = tuple(sorted({int(s) for s in sb_stages}))
    if len(stages) != len(sb_stages) or any(not 1 <= s <= count for s in stages):
        raise ConfigError(f"sb_stages takes distinct stage numbers 1..{count}, got {list(sb_stages)}")
    return stages


def stage_block(
    block: type[nn.Module], stage: int, sb_stages: tuple[int, ...] | None, options: dict[str, str]
) -> Callable[..., nn.Module]:
    """The constructor of stage ``stage``'s blocks: ``block`` with ``options`` where the stage is in ``sb_stages``
    (None: every stage), else the baseline block an SB block replaces."""
    make: Callable[..., nn.Module] = block
    if sb_stages is None or stage in sb_stages:
        return partial(make, **options)
    if not hasattr(block, "dense"):
        raise ConfigError(f"{block.__name__} is not an SB block; sb_stages places SB blocks")
    return block.dense


def model_info(name: str) -> ModelInfo:
    """Registry entry of ``name``; ValueError with close matches when it is unknown."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `sbdeploy zoo` for the list."
        raise UnknownModelError(f"unknown model {name!r}.{hint}") from None


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style pattern."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(name: str, **options: object) -> nn.Module:
    """Build the registered network ``name`` with fresh weights; ``options`` (``num_classes``, ``in_chans``, an SB
    network's ``sampling`` and ``sb_stages``) are checked against the builder's."""
    info = model_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise UnknownModelError(
            f"model {name!r} takes no option {', '.join(unknown)}; its options are: {', '.join(info.options)}"
        )
    return info.builder(**options)
