"""``sbify_checkpoint``: what it writes and records, fine-tune with distillation and resume, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sbdeploy._io import sha256_file
from sbdeploy.checkpoint import WEIGHTS_FILE, load_checkpoint, read_weights
from sbdeploy.convert import sbify_checkpoint
from sbdeploy.convert.run import SbifyCallbacks
from sbdeploy.data import open_source
from sbdeploy.errors import CheckpointError, ConfigError
from sbdeploy.train import TrainConfig, train
from sbdeploy.train.trainer import STATE_FILE

FINE_TUNE = TrainConfig(epochs=2, batch_size=16, lr=0.01, max_steps_per_epoch=2)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return open_source("synthetic", size=8)


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("sbify") / "base"
    train("cifar_resnet20", data, out, TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=3), device="cpu")
    return out


def test_dense_mapping_without_data_writes_the_baselines_function(baseline: Path, tmp_path: Path) -> None:
    result = sbify_checkpoint(baseline, tmp_path / "sb", data=None, sampling="dense", recalibrate=False)
    sb, base = load_checkpoint(tmp_path / "sb"), load_checkpoint(baseline)
    assert sb.config.arch == result.arch == "cifar_resnet20_sb" and sb.config.sampling == "dense"
    assert (sb.config.mean, sb.config.std, sb.config.class_names) == (
        base.config.mean,
        base.config.std,
        base.config.class_names,
    )
    origin = sb.config.training["sbify"]
    assert origin["source"] == str(baseline) and origin["source_arch"] == "cifar_resnet20"
    assert origin["source_sha256"] == sha256_file(baseline / WEIGHTS_FILE) == result.source_sha256
    assert [s["name"] for s in origin["stages"]] == ["baseline", "mapped"] and origin["recalibration_images"] is None
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(sb.model(x), base.model(x), atol=1e-5)


def test_stages_map_only_their_blocks_and_the_checkpoint_records_them(baseline: Path, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = sbify_checkpoint(baseline, tmp_path / "sb", data=data, sampling="dense", sb_stages=[3, 2], device="cpu")
    sb, base = load_checkpoint(tmp_path / "sb"), load_checkpoint(baseline)
    assert result.sb_stages == sb.config.sb_stages == (2, 3) and sb.config.training["sbify"]["sb_stages"] == [2, 3]
    assert [type(b).__name__ for b in sb.model.layers] == ["PreActBasicBlock"] * 3 + ["SBPreActBasicBlock"] * 6
    assert torch.equal(sb.model.layers[0].conv1.weight, base.model.layers[0].conv1.weight)  # copied, BN recalibrated
    assert load_checkpoint(baseline).config.sb_stages is None  # a checkpoint without it: every block (as before)
    with pytest.raises(ConfigError, match="distinct stage numbers 1..3"):
        sbify_checkpoint(baseline, tmp_path / "bad", data=None, recalibrate=False, sb_stages=(0,))


class _Crash(SbifyCallbacks):
    def on_epoch_end(self, stats) -> None:  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt


def test_fine_tune_with_distillation_resumes_exactly(baseline: Path, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    options = {"data": data, "fine_tune": FINE_TUNE, "distill": (0.5, 4.0), "device": "cpu"}
    whole = sbify_checkpoint(baseline, tmp_path / "whole", **options)
    assert [s.name for s in whole.stages] == ["baseline", "mapped", "recalibrated", "fine-tuned"]
    assert all(s.test_accuracy is not None and s.cpu_s >= 0 for s in whole.stages)
    assert whole.fine_tune is not None and whole.stages[-1].test_accuracy == whole.fine_tune.test_accuracy
    with pytest.raises(KeyboardInterrupt):
        sbify_checkpoint(baseline, tmp_path / "cut", callbacks=_Crash(), **options)
    assert (tmp_path / "cut" / STATE_FILE).exists()
    resumed = sbify_checkpoint(baseline, tmp_path / "cut", resume=True, **options)
    assert [s.name for s in resumed.stages] == [
        s.name for s in whole.stages
    ]  # the stages before the cut come from config.json
    assert [s.test_accuracy for s in resumed.stages] == pytest.approx([s.test_accuracy for s in whole.stages], abs=1e-5)
    a, b = read_weights(tmp_path / "whole" / WEIGHTS_FILE), read_weights(tmp_path / "cut" / WEIGHTS_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
    recipe = load_checkpoint(tmp_path / "cut").config.training
    assert recipe["distill"] == {"alpha": 0.5, "temperature": 4.0} and recipe["lr"] == 0.01
    assert recipe["sbify"]["recalibration_images"] == len(data.train_labels)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        sbify_checkpoint(baseline, tmp_path / "cut", resume=True, **options)


def test_refusals(baseline: Path, data, tiny_checkpoint: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="need training images"):
        sbify_checkpoint(baseline, tmp_path / "a", data=None)
    with pytest.raises(ConfigError, match="distillation applies to the fine-tune"):
        sbify_checkpoint(baseline, tmp_path / "a", data=data, distill=(0.5, 4.0))
    with pytest.raises(ConfigError, match="nothing to resume"):
        sbify_checkpoint(baseline, tmp_path / "a", data=data, resume=True)
    with pytest.raises(ConfigError, match="SB network already"):
        sbify_checkpoint(tiny_checkpoint, tmp_path / "a", data=None, recalibrate=False)
    sbify_checkpoint(baseline, tmp_path / "b", data=None, recalibrate=False)
    with pytest.raises(ConfigError, match="--overwrite"):
        sbify_checkpoint(baseline, tmp_path / "b", data=None, recalibrate=False)
    assert not (tmp_path / "a").exists()


def test_a_torchvision_layout_state_dict_brought_in_by_import_sbifies(tmp_path: Path) -> None:
    # The path of a user with a torchvision ResNet: `sbdeploy import` writes the baseline
    # checkpoint from its state_dict file, sbify maps it; dense sampling keeps its function.
    from safetensors.torch import save_file

    from sbdeploy.models import create_model
    from sbdeploy.state_dict import import_state_dict

    torch.manual_seed(0)
    net = create_model("resnet18", num_classes=10)
    for m in net.modules():  # non-trivial BN statistics, so a mis-mapped BN would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "resnet18.safetensors"))
    import_state_dict(tmp_path / "resnet18.safetensors", "resnet18", tmp_path / "base", input_size=(32, 32))
    result = sbify_checkpoint(tmp_path / "base", tmp_path / "sb", data=None, sampling="dense", recalibrate=False)
    sb, base = load_checkpoint(tmp_path / "sb"), load_checkpoint(tmp_path / "base")
    assert result.arch == sb.config.arch == "resnet18_sb" and sb.config.input_size == (32, 32)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected, got = base.model.double()(x), sb.model.double()(x)
    assert (got - expected).abs().max() < 1e-10 * max(1.0, float(expected.abs().max()))
