"""Leaf helpers that import nothing of sbdeploy: atomic writes, content hashes, version numbers."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` beside ``path``, then rename it into place: a crash leaves the old file, never half a new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mask = os.umask(0)  # read the umask (only settable): mkstemp makes 0600, give the usual mode of a new file
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def version_tuple(version: str) -> tuple[int, ...]:
    """The numbers of a version string in order: ``"10.13.0.35"`` -> ``(10, 13, 0, 35)``."""
    return tuple(int(part) for part in re.findall(r"\d+", version))
