"""SOURCE strings: built-in sources, CIFAR folders (restricted unpickling), image folders, bad input."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sbdeploy.data import open_source
from sbdeploy.data.cifar import read_batch
from sbdeploy.errors import DataError


def test_digits_is_real_and_split() -> None:
    data = open_source("digits", size=16)
    assert data.train_images.shape[1:] == (1, 16, 16) and data.test_images.shape[1:] == (1, 16, 16)
    assert len(data.train_labels) + len(data.test_labels) == 1797
    assert data.class_names == tuple("0123456789") and data.num_classes == 10
    assert not data.flip and data.pad == 2
    x = data.train_images
    assert abs(data.mean[0] - float(x.mean())) < 1e-4 and abs(data.std[0] - float(x.std())) < 1e-3


def test_synthetic_is_deterministic_and_disjoint() -> None:
    a, b = open_source("synthetic", size=8), open_source("synthetic", size=8)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images[: len(a.test_images)], a.test_images)
    assert a.in_chans == 3 and a.input_size == (8, 8)


def _write_cifar10(folder: Path, n: int = 6) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * n,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))


def _write_cifar100(folder: Path, n: int = 7) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        batch = {
            b"fine_labels": rng.integers(0, 100, n).tolist(),
            b"coarse_labels": rng.integers(0, 20, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        (folder / split).write_bytes(pickle.dumps(batch, protocol=4))
    (folder / "meta").write_bytes(
        pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, protocol=2)
    )


def test_cifar10_folder(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "cifar-10-batches-py")
    expected = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())  # our own file
    for source in (f"cifar10:{tmp_path}", str(tmp_path), str(tmp_path / "cifar-10-batches-py")):
        data = open_source(source)
        assert data.source.startswith("cifar10:")
        assert data.train_images.shape == (30, 3, 32, 32) and data.train_images.dtype == torch.uint8
        assert data.class_names[0] == "airplane" and data.flip and data.pad == 4
        assert torch.equal(data.test_images.reshape(6, -1), torch.from_numpy(expected[b"data"]))
        assert data.test_labels.tolist() == expected[b"labels"]


def test_cifar100_folder(tmp_path: Path) -> None:
    _write_cifar100(tmp_path / "cifar-100-python")
    data = open_source(str(tmp_path))
    assert data.source.startswith("cifar100:") and data.num_classes == 100
    assert data.train_images.shape == (7, 3, 32, 32) and int(data.train_labels.max()) < 100
    with pytest.raises(DataError, match="32x32"):
        open_source(f"cifar100:{tmp_path}", size=64)


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_cifar_batch_with_code_is_refused(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    marker = tmp_path / "executed"
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        read_batch(tmp_path / "test_batch")
    with pytest.raises(DataError):
        open_source(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_image_folder_with_and_without_split(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for layout in ("flat", "split"):
        root = tmp_path / layout
        for cls in ("cat", "dog", "fox"):
            for i in range(5):
                sub = root / cls if layout == "flat" else root / ("test" if i == 0 else "train") / cls
                sub.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(sub / f"{i}.png")
        for source in (str(root), f"imagefolder:{root}"):
            data = open_source(source, size=12)
            assert data.class_names == ("cat", "dog", "fox")
            assert data.train_images.shape[1:] == (3, 12, 12) and data.train_images.dtype == torch.uint8
            assert len(data.train_labels) + len(data.test_labels) == 15
            assert len(data.test_labels) == 3 and sorted(data.test_labels.tolist()) == [0, 1, 2]


def test_gray_image_folder_has_one_channel(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(np.full((9, 9), 40 * i, dtype=np.uint8), mode="L").save(tmp_path / cls / f"{i}.png")
    assert open_source(str(tmp_path), size=8).in_chans == 1


@pytest.mark.parametrize(
    "source", ["nope", "cifar10:", "cifar10:/does/not/exist", "imagefolder:/does/not/exist", "mnist:/x"]
)
def test_bad_sources_raise_data_error(source: str) -> None:
    with pytest.raises(DataError):
        open_source(source)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            (tmp_path / cls / f"{i}.png").write_bytes(os.urandom(64))
    with pytest.raises(DataError, match="not a readable image"):
        open_source(str(tmp_path), size=8)
