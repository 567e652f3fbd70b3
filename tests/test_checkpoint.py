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
    return CheckpointConfig(
        arch=arch,
        options=opts,
        input_size=(8, 8),
        mean=(0.3,),
        std=(0.25,),
        class_names=("a", "b", "c", "d"),
        dataset="synthetic",
        metrics={"test_accuracy": 0.5},
    )


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


def test_safetensors_whose_header_length_starts_with_0x80_is_read(tmp_path: Path) -> None:
    """A safetensors file starts with its header length (u64, little-endian): its first byte is 0x80 for 1 length in 32 or so."""
    from safetensors.torch import save

    from sbdeploy.checkpoint import read_weights

    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    data = next(d for d in (save(tensors, metadata={"pad": "x" * k}) for k in range(256)) if d[0] == 0x80)
    path = tmp_path / WEIGHTS_FILE
    path.write_bytes(data)
    assert torch.equal(read_weights(path)["w"], tensors["w"])
    path.write_bytes(data[: len(data) - 3])  # truncated: its header is intact, its data is not
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_weights(path)
    path.write_bytes(data[:40])  # cut inside the header
    with pytest.raises(CheckpointError, match="truncated"):
        read_weights(path)


def _filled(name: str, num_classes: int) -> torch.nn.Module:
    """``name`` with distinct, deterministic values in every tensor, without paying for its random init."""
    with torch.device("meta"):
        model = sbdeploy.create_model(name, num_classes=num_classes)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for i, tensor in enumerate(model.state_dict().values()):
            if tensor.is_floating_point():
                tensor.copy_(torch.linspace(-1, 1, tensor.numel()).view_as(tensor) + i)
            else:
                tensor.fill_(i)
    return model.eval()


# The ImageNet ResNets and the deep CIFAR networks take a second or more each to save and
# reload; the smallest CIFAR and ImageNet networks run in the normal suite at every class count.
_CHEAP = {"cifar_resnet20", "cifar_resnet20_sb", "resnet18", "resnet18_sb"}


def _round_trip_cases() -> list[object]:
    cases = []
    for name in sbdeploy.list_models():
        for classes in (10, 100, 1000):
            if name in _CHEAP:
                cases.append(pytest.param(name, classes, id=f"{name}-{classes}"))
            elif classes == 1000:
                cases.append(pytest.param(name, classes, id=f"{name}-{classes}", marks=pytest.mark.slow))
    return cases


@pytest.mark.parametrize(("name", "num_classes"), _round_trip_cases())
def test_every_registered_model_saves_and_reloads(tmp_path: Path, name: str, num_classes: int) -> None:
    model = _filled(name, num_classes)
    arch_options = {"num_classes": num_classes, **({"sampling": "chessboard"} if name.endswith("_sb") else {})}
    config = CheckpointConfig(
        arch=name,
        options=arch_options,
        input_size=(32, 32),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        class_names=tuple(str(i) for i in range(num_classes)),
    )
    save_checkpoint(tmp_path / "ckpt", model, config)
    loaded = load_checkpoint(tmp_path / "ckpt").model.state_dict()
    original = model.state_dict()
    assert original.keys() == loaded.keys()
    for key, tensor in original.items():
        assert tensor.dtype == loaded[key].dtype and torch.equal(tensor, loaded[key]), key
