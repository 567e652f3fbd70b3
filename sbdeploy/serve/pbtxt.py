"""Protobuf text format, the language of Triton's ``config.pbtxt``, written from nested dicts and lists."""

from __future__ import annotations

import json
from typing import Any


class Enum(str):
    """A protobuf enum value: written unquoted."""


def pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """``message`` as text: a dict is a message, a list of dicts a repeated message field, any other list a packed one."""
    pad = "  " * indent
    lines = []
    for key, item in message.items():
        for element in item if isinstance(item, list) and (not item or isinstance(item[0], dict)) else [item]:
            if isinstance(element, dict):
                lines.append(f"{pad}{key} {{\n{pbtxt(element, indent + 1)}{pad}}}\n")
            else:
                lines.append(f"{pad}{key}: {_scalar(element)}\n")
    return "".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, list):
        return "[ " + ", ".join(_scalar(v) for v in value) + " ]"
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a quoted string with escapes
