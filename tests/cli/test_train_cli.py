"""``sbdeploy train`` / ``sbdeploy evaluate`` in a subprocess: results, and clean failures on bad checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sbdeploy.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from tests.conftest import run_cli
from tests.test_checkpoint import write_pickle_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny"
    run = run_cli(
        "train",
        "cifar_resnet20_sb",
        "--data",
        "synthetic",
        "--size",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--max-steps",
        "3",
        "--out",
        str(out),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["model"] == "cifar_resnet20_sb" and summary["epochs"] == 2 and summary["processes"] == 1
    return out


def test_train_writes_a_complete_checkpoint(trained: Path) -> None:
    assert sorted(p.name for p in trained.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # the resume state is gone
    config = json.loads((trained / CONFIG_FILE).read_text())
    assert config["options"] == {"num_classes": 10, "in_chans": 3, "sampling": "chessboard"}
    assert config["input_size"] == [8, 8] and len(config["mean"]) == 3 and len(config["class_names"]) == 10
    assert (
        config["training"]["nesterov"]
        and config["training"]["lr"] == 0.1
        and config["training"]["weight_decay"] == 1e-4
    )
    assert config["metrics"]["epochs"] == 2 and len(config["metrics"]["history"]) == 2
    assert config["sbdeploy_version"]


def test_evaluate_matches_the_recorded_accuracy(trained: Path) -> None:
    run = run_cli("evaluate", str(trained), "--data", "synthetic", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["model"], result["data"], result["split"]) == ("cifar_resnet20_sb", "synthetic", "test")
    assert result["images"] == 128 and result["top5"] is not None
    assert result["top1"] == pytest.approx(result["recorded_test_accuracy"], abs=1e-5)
    table = run_cli("evaluate", str(trained), "--data", "synthetic")
    # Single words only: the title (name, checkpoint path, source, split) wraps with the path's length.
    assert table.returncode == 0 and "top-1" in table.stdout, table.stderr
    assert "[test]" in table.stdout  # the split, not swallowed as a style tag


@pytest.mark.slow
def test_refuses_to_overwrite_and_resumes_nothing_when_finished(trained: Path) -> None:
    run = run_cli("train", "cifar_resnet20_sb", "--data", "synthetic", "--size", "8", "--out", str(trained))
    assert run.returncode == 2 and "--overwrite" in run.stderr and "Traceback" not in run.stderr
    run = run_cli("train", "cifar_resnet20_sb", "--data", "synthetic", "--size", "8", "--out", str(trained), "--resume")
    assert run.returncode == 2 and "nothing to resume" in run.stderr


def _assert_clean_failure(run: subprocess.CompletedProcess[str], needle: str) -> None:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], run.stderr


@pytest.mark.slow
def test_evaluate_mismatched_checkpoint(trained: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    config = json.loads((bad / CONFIG_FILE).read_text())
    config["arch"] = "cifar_resnet32_sb"
    (bad / CONFIG_FILE).write_text(json.dumps(config))
    _assert_clean_failure(run_cli("evaluate", str(bad), "--data", "synthetic"), "does not match")


@pytest.mark.slow
def test_evaluate_truncated_checkpoint(trained: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    data = (bad / WEIGHTS_FILE).read_bytes()
    (bad / WEIGHTS_FILE).write_bytes(data[: len(data) // 3])
    _assert_clean_failure(run_cli("evaluate", str(bad), "--data", "synthetic"), "truncated")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["2", "torch.save"])
def test_evaluate_pickle_checkpoint_executes_nothing(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "executed"
    write_pickle_checkpoint(tmp_path / "ckpt", marker, how)
    _assert_clean_failure(run_cli("evaluate", str(tmp_path / "ckpt"), "--data", "synthetic"), "never unpickles")
    assert not marker.exists()


@pytest.mark.slow
def test_evaluate_with_data_that_does_not_fit(trained: Path) -> None:
    _assert_clean_failure(run_cli("evaluate", str(trained), "--data", "digits"), "expects 3-channel")


@pytest.mark.slow
def test_bad_source_and_model() -> None:
    _assert_clean_failure(
        run_cli("train", "cifar_resnet20", "--data", "nope", "--out", "/tmp/x"), "unknown data source"
    )
    _assert_clean_failure(
        run_cli("train", "cifar_resnet21", "--data", "synthetic", "--out", "/tmp/x"), "cifar_resnet20"
    )
