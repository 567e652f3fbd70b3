"""Parsing the CLI's option values (lists, sizes, spans) and the option spellings several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

from sbdeploy.cli._render import warn
from sbdeploy.errors import ConfigError
from sbdeploy.targets import requested_precisions, target_option


def split_list(text: str, option: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c']; ConfigError when empty."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{option} needs at least one value")
    return items


def parse_ints(text: str, option: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32], each >= 1."""
    try:
        values = [int(v) for v in split_list(text, option)]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, e.g. 1,8,32; got {text!r}") from None
    if min(values) < 1:
        raise ConfigError(f"{option} values must be >= 1, got {text!r}")
    return values


def parse_span(text: str, option: str) -> tuple[int | None, float | None]:
    """'20' -> 20 iterations; '2s' / '0.5s' -> seconds."""
    try:
        if text.endswith("s"):
            return None, float(text[:-1])
        return int(text), None
    except ValueError:
        raise ConfigError(f"{option} takes a count (e.g. 20) or seconds (e.g. 2s), got {text!r}") from None


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--input-size``: '32' -> (32, 32), '97x75' -> (97, 75)."""
    if text is None:
        return None
    try:
        values = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise ConfigError(f"--input-size must be H or HxW (e.g. 32 or 97x75), got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise ConfigError(f"--input-size must be H or HxW with positive integers, got {text!r}")
    return (values[0], values[-1])


def parse_batch(text: str) -> str | int:
    """``--batch`` of export: 'dynamic' or a positive integer."""
    if text == "dynamic":
        return "dynamic"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--batch must be 'dynamic' or a positive integer, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"--batch must be a positive integer, got {value}")
    return value


OldLowering = Annotated[
    str | None, typer.Option("--lowering", hidden=True, help="Old spelling of --target grouped / --target separate.")
]
"""The ``--lowering`` flag commands kept from before the target table."""


def target_flags(target: str | None, lowering: str | None) -> str | None:
    """The target of ``--target`` and the old ``--lowering``; a note on stderr when the old spelling is used."""
    chosen = target_option(target, lowering)
    if lowering is not None:
        warn(f"--lowering {lowering} is the old spelling of --target {chosen}", label="note")
    return chosen


def precisions(fp16: bool, int8: bool) -> tuple[str, ...]:
    """The precisions ``--fp16``/``--int8`` ask for, fp32 first."""
    return requested_precisions(fp16, int8)
