"""The model registry: a plain dict from name to builder, with what the tools need to know.

``register_model`` refuses duplicate names; ``create_model`` refuses unknown names
(listing close matches) and unknown options (listing the accepted ones).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from sbdeploy.errors import UnknownModelError

Builder = Callable[..., nn.Module]


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

    def build_sb(*, num_classes: int = classes, in_chans: int = 3, sampling: str = "chessboard") -> nn.Module:
        return sb(num_classes=num_classes, in_chans=in_chans, sampling=sampling)

    build_baseline.__name__ = name
    build_sb.__name__ = f"{name}_sb"
    register_model(family)(build_baseline)
    register_model(family, baseline=name)(build_sb)


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
    network's ``sampling``) are checked against the builder's."""
    info = model_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise UnknownModelError(
            f"model {name!r} takes no option {', '.join(unknown)}; its options are: {', '.join(info.options)}"
        )
    return info.builder(**options)
