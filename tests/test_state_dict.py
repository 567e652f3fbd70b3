"""``import_state_dict``: foreign state_dict files -> checkpoint folders, strictly, never unpickling beyond weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import sbdeploy
from sbdeploy.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from sbdeploy.errors import CheckpointError, ConfigError
from sbdeploy.state_dict import IMAGENET_MEAN, import_state_dict, read_state_dict
from tests.test_checkpoint import Payload

# torchvision's resnet18 (torchvision/models/resnet.py): names and shapes of a few of its state_dict
# entries. sbdeploy's baseline ResNets use the same layout, so such a state_dict loads as it is.
TORCHVISION_RESNET18 = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_var": (64,),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer1.1.bn2.bias": (64,),
    "layer2.0.conv1.weight": (128, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_mean": (128,),
    "layer4.1.conv2.weight": (512, 512, 3, 3),
    "fc.weight": (1000, 512),
    "fc.bias": (1000,),
}


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    """sbdeploy's resnet18 with trained-looking BN statistics: the source network of a torchvision-layout state_dict."""
    torch.manual_seed(0)
    model = sbdeploy.create_model("resnet18")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(1234)
    return model.eval()


def _assert_same_network(folder: Path, source: torch.nn.Module, size: int = 64) -> None:
    loaded = load_checkpoint(folder).model
    for key, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_torchvision_layout_resnet18_round_trip(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    state = resnet18.state_dict()
    for key, shape in TORCHVISION_RESNET18.items():
        assert tuple(state[key].shape) == shape, key
    # As a training script saves it: wrapped, DDP-prefixed, as torch.save writes it.
    torch.save(
        {"epoch": 90, "state_dict": {f"module.{k}": v for k, v in state.items()}, "best_acc1": 69.8},
        tmp_path / "r18.pth",
    )
    result = import_state_dict(tmp_path / "r18.pth", "resnet18", tmp_path / "ckpt")
    assert result.reader == "torch.load(weights_only=True)" and result.unwrapped == (
        "['state_dict']",
        "prefix 'module.'",
    )
    config = result.config
    assert config.arch == "resnet18" and config.options == {"num_classes": 1000, "in_chans": 3}
    assert config.input_size == (224, 224) and config.mean == IMAGENET_MEAN and len(config.class_names) == 1000
    assert (
        config.training["imported"]["file"] == "r18.pth"
        and config.training["imported"]["sha256"] == result.source_sha256
    )
    assert any("ImageNet mean/std" in n for n in result.notes)
    _assert_same_network(tmp_path / "ckpt", resnet18)


def test_safetensors_without_bn_counters_and_fp16(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = sbdeploy.create_model("cifar_resnet20_sb", num_classes=7, in_chans=1).eval()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.bias"] = state["fc.bias"].half()
    save_file(state, str(tmp_path / "w.safetensors"))
    result = import_state_dict(
        tmp_path / "w.safetensors",
        "cifar_resnet20_sb",
        tmp_path / "ckpt",
        mean=[0.3],
        std=[0.3],
        class_names=list("abcdefg"),
        sampling="three",
    )
    assert result.reader == "safetensors" and result.unwrapped == ()
    assert result.config.options == {"num_classes": 7, "in_chans": 1, "sampling": "three"}
    assert result.config.class_names == tuple("abcdefg") and result.config.mean == (0.3,)
    assert any("num_batches_tracked" in n for n in result.notes) and any(
        "float16 -> float32" in n for n in result.notes
    )
    loaded = load_checkpoint(tmp_path / "ckpt").model.state_dict()
    assert torch.equal(loaded["fc.bias"], state["fc.bias"].float()) and int(loaded["bn.num_batches_tracked"]) == 0


def test_a_pth_that_needs_more_than_weights_only_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    for name, write in (
        ("zip.pth", lambda p: torch.save({"conv1.weight": Payload(marker)}, p)),
        ("legacy.pth", lambda p: p.write_bytes(pickle.dumps({"conv1.weight": Payload(marker)}, protocol=2))),
    ):
        write(tmp_path / name)
        with pytest.raises(CheckpointError, match=r"refused: it needs the Python object \S*open.*weights_only=True"):
            import_state_dict(tmp_path / name, "cifar_resnet20", tmp_path / "ckpt")
    assert not marker.exists() and not (tmp_path / "ckpt").exists()


def test_another_architecture_names_the_first_mismatches(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    torch.save(resnet18.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(
        CheckpointError,
        match=r"does not fit resnet34 .*: 96 missing \(layer1\.2\.bn1\.bias, layer1\.2\.bn1\.num_batches_tracked, ",
    ):
        import_state_dict(tmp_path / "r18.pth", "resnet34", tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="It fits resnet18: pass --arch resnet18"):
        import_state_dict(tmp_path / "r18.pth", "resnet18_sb", tmp_path / "ckpt")
    with pytest.raises(
        CheckpointError,
        match=r"2 of wrong shape \(fc.bias: \(1000,\) in the file, \(10,\) in the model, fc.weight: \(1000, 512\)",
    ):
        import_state_dict(tmp_path / "r18.pth", "resnet18", tmp_path / "ckpt", num_classes=10)
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"name,weight\nconv1,0.5\n", "neither a safetensors file nor a PyTorch file"),
        (b"PK\x03\x04truncated zip", "neither a safetensors file nor a PyTorch file"),
    ],
    ids=["empty", "text", "truncated zip"],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "w.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(tmp_path / "w.pth")


def test_not_a_state_dict(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="holds no state_dict: its entry 'epoch' is a int"):
        read_state_dict(tmp_path / "w.pth")
    torch.save([torch.ones(1)], tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="holds a list, not a state_dict"):
        read_state_dict(tmp_path / "w.pth")


def test_options_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    source = sbdeploy.create_model("cifar_resnet20", num_classes=3)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="--sampling applies to SB networks only"):
        import_state_dict(tmp_path / "w.pth", "cifar_resnet20", tmp_path / "ckpt", sampling="three")
    with pytest.raises(ConfigError, match="2 names for 3 classes"):
        import_state_dict(tmp_path / "w.pth", "cifar_resnet20", tmp_path / "ckpt", class_names=["a", "b"])
    with pytest.raises(ConfigError, match="--mean takes 1 or 3 values"):
        import_state_dict(tmp_path / "w.pth", "cifar_resnet20", tmp_path / "ckpt", mean=[0.1, 0.2], std=[0.3])
    assert not (tmp_path / "ckpt").exists()
    import_state_dict(tmp_path / "w.pth", "cifar_resnet20", tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / WEIGHTS_FILE).is_file() and (tmp_path / "ckpt" / CONFIG_FILE).is_file()
    with pytest.raises(ConfigError, match="already holds a checkpoint; pass --overwrite"):
        import_state_dict(tmp_path / "w.pth", "cifar_resnet20", tmp_path / "ckpt")
    import_state_dict(
        tmp_path / "w.pth", "cifar_resnet20", tmp_path / "ckpt", overwrite=True, class_names=["x", "y", "z"]
    )
    assert load_checkpoint(tmp_path / "ckpt").config.class_names == ("x", "y", "z")
