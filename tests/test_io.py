"""Atomic writes, hashes and version numbers."""

from __future__ import annotations

import os

import pytest

from sbdeploy._io import atomic_write_bytes, sha256_file, version_tuple


def test_atomic_write_gives_the_usual_file_mode(tmp_path) -> None:
    atomic_write_bytes(tmp_path / "f.txt", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_write_leaves_the_old_file(tmp_path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    before = sha256_file(target)

    with pytest.raises(TypeError):
        atomic_write_bytes(target, None)  # type: ignore[arg-type]  # fails after the temporary file exists
    assert target.read_bytes() == b"old" and sha256_file(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_version_tuple_reads_the_numbers_in_order() -> None:
    assert version_tuple("10.13.0.35") == (10, 13, 0, 35)
    assert version_tuple("1.17.3") < (1, 18) <= version_tuple("1.18.0") < version_tuple("1.20.1+cu12")
    assert version_tuple("unknown") == ()
