"""int8 calibration data: from a data source's training split or a .npy, normalized as the model takes them, with clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sbdeploy.calibration import Calibration, calibration_for, load_calibration, normalize
from sbdeploy.checkpoint import CheckpointConfig
from sbdeploy.data import open_source, to_float
from sbdeploy.errors import DataError, InputError

CONFIG = CheckpointConfig(
    arch="cifar_resnet20_sb",
    options={"in_chans": 1, "num_classes": 10},
    input_size=(16, 16),
    mean=(0.3,),
    std=(0.3,),
    class_names=tuple("0123456789"),
    dataset="digits",
)
ZOO = CheckpointConfig(
    arch="cifar_resnet20",
    options={"in_chans": 1, "num_classes": 10},
    input_size=(16, 16),
    mean=(0.5,),
    std=(0.5,),
    class_names=tuple("0123456789"),
)


def test_the_checkpoints_dataset_by_default_training_images_normalized() -> None:
    cal = load_calibration(None, CONFIG, limit=20)
    train = to_float(open_source("digits", size=16).train_images[:20]).numpy()
    assert isinstance(cal, Calibration) and cal.images.dtype == np.float32 and cal.images.shape == (20, 1, 16, 16)
    np.testing.assert_allclose(cal.images, (train - 0.3) / 0.3, rtol=1e-6)  # the training split, never the test split
    assert cal.to_dict() == {"source": "digits", "kind": "data", "images": 20, "split": "train split"}
    assert normalize(train, (0.3,), (0.3,)).dtype == np.float32


def test_a_npy_of_inputs_is_taken_as_given(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((5, 1, 16, 16))
    np.save(tmp_path / "x.npy", x)
    cal = load_calibration(str(tmp_path / "x.npy"), ZOO, limit=4)
    assert cal.kind == "npy" and cal.images.shape == (4, 1, 16, 16) and cal.images.dtype == np.float32
    np.testing.assert_allclose(cal.images, x[:4].astype(np.float32))


def test_a_run_calibrates_a_random_weight_baseline_on_its_checkpoints_data() -> None:
    both = calibration_for({"sb": CONFIG, "baseline": ZOO}, None, limit=8)
    assert {c.source for c in both.values()} == {"digits"}
    np.testing.assert_allclose(
        both["baseline"].images * 0.5 + 0.5, both["sb"].images * 0.3 + 0.3, atol=1e-6
    )  # same images, own normalization
    with pytest.raises(InputError, match="none of baseline names a dataset.*--calibration SRC"):
        calibration_for({"baseline": ZOO}, None)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda p: None, InputError, "does not exist"),
        (
            lambda p: np.save(p, np.zeros((2, 3, 16, 16), np.float32)),
            InputError,
            r"shape \(2, 3, 16, 16\); this model takes N x 1 x 16 x 16",
        ),
        (lambda p: np.save(p, np.zeros((2, 16, 16), np.float32)), InputError, "shape"),
        (lambda p: np.save(p, np.zeros((2, 1, 16, 16), np.int64)), InputError, "finite float inputs"),
        (lambda p: np.save(p, np.full((2, 1, 16, 16), np.nan, np.float32)), InputError, "finite float inputs"),
        (
            lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
            InputError,
            "pickled objects, which sbdeploy never loads",
        ),
    ],
)
def test_bad_npy_is_one_clear_error(make, error: type, message: str, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "cal.npy"
    make(path)
    with pytest.raises(error, match=message):
        load_calibration(str(path), ZOO)


def test_unknown_source_or_none_at_all() -> None:
    with pytest.raises(DataError, match="unknown data source 'nope'"):
        load_calibration("nope", CONFIG)
    with pytest.raises(InputError, match="cifar_resnet20 names no dataset in its config.json: give --calibration SRC"):
        load_calibration(None, ZOO)
    with pytest.raises(DataError, match="3 channels but the model takes 1"):
        load_calibration("synthetic", CONFIG)
