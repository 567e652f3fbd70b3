"""Checkpoint folders: bit-exact round trip, and every broken file gives CheckpointError without executing it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

import sbdeploy
from sbdeploy.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointConfig, load_checkpoint, save_checkpoint
from sbdeploy.errors import CheckpointError


def _config(arch: str = "cifar_resnet20_sb", **options: object) -> CheckpointConfig:
    opts = {"num_classes": 4, "in_chans": 1, **options}
    if arch.endswith("_sb"):
        opts.setdefault("sampling", "chessboard")
    return CheckpointConfig(arch=arch, options=opts, input_size=(8, 8), mean=(0.3,), std=(0.25,),
                            class_names=("a", "b", "c", "d"), dataset="synthetic", metrics={"test_accuracy": 0.5})


def _saved(folder: Path, arch: str = "cifar_resnet20_sb") -> torch.nn.Module:
    config = _config(arch)
    torch.manual_seed(0)
    model = sbdeploy.create_model(arch, **config.options)
    with torch.no_grad():  # non-default values everywhere, BN buffers included
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor).abs() + 0.1)
            else:
                tensor.fill_(7)
    save_checkpoint(folder, model, config)
    return model


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = _saved(tmp_path / "ckpt")
    ckpt = sbdeploy.load_checkpoint(tmp_path / "ckpt")
    original, loaded = model.state_dict(), ckpt.model.state_dict()
    assert original.keys() == loaded.keys()
    for key in original:
        assert original[key].dtype == loaded[key].dtype and torch.equal(original[key], loaded[key]), key
    assert not ckpt.model.training
    assert ckpt.config.arch == "cifar_resnet20_sb" and ckpt.config.sampling == "chessboard"
    assert ckpt.config.class_names == ("a", "b", "c", "d") and ckpt.config.sbdeploy_version == sbdeploy.__version__
    x = torch.rand(2, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x), ckpt.model(x))


def test_config_that_does_not_match_weights(tmp_path: Path) -> None:
    _saved(tmp_path, "cifar_resnet32")
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["arch"] = "cifar_resnet20"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_checkpoint(tmp_path)
    config["arch"], config["options"]["num_classes"] = "cifar_resnet32", 5
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(tmp_path)


def test_truncated_weights(tmp_path: Path) -> None:
    _saved(tmp_path)
    data = (tmp_path / WEIGHTS_FILE).read_bytes()
    for cut in (len(data) // 2, 100, 5):
        (tmp_path / WEIGHTS_FILE).write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable safetensors"):
            load_checkpoint(tmp_path)


class Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def write_pickle_checkpoint(folder: Path, marker: Path, how: str) -> None:
    """A valid config.json beside a pickle (or torch.save archive) named model.safetensors."""
    _saved(folder)
    path = folder / WEIGHTS_FILE
    if how == "torch.save":
        torch.save({"conv1.weight": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"conv1.weight": Payload(marker)}, protocol=int(how)))


@pytest.mark.parametrize("how", ["0", "2", "4", "5", "torch.save"])
def test_pickle_named_safetensors_is_never_unpickled(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "executed"
    write_pickle_checkpoint(tmp_path / "ckpt", marker, how)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "ckpt")
    assert not marker.exists()


def test_missing_and_mangled_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    _saved(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path)
