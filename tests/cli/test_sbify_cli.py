"""``sbdeploy sbify`` in a subprocess on the shipped digits baseline; its checkpoint through ``sbdeploy pipeline``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbdeploy._io import sha256_file
from sbdeploy.checkpoint import WEIGHTS_FILE, load_checkpoint
from tests.conftest import REPO, run_cli

BASELINE = REPO / "models" / "digits_resnet20"


@pytest.fixture(scope="module")
def sbified(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("sbify") / "digits_resnet20_sbified"
    run = run_cli("sbify", str(BASELINE), "--out", str(out), "--calibration-images", "512", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    return out, json.loads(run.stdout)


@pytest.mark.slow
def test_sbify_maps_recalibrates_and_records_its_source(sbified: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, summary = sbified
    stages = {s["name"]: s["test_accuracy"] for s in summary["stages"]}
    assert list(stages) == ["baseline", "mapped", "recalibrated"]
    assert stages["baseline"] == pytest.approx(0.98607, abs=1e-5)
    assert stages["recalibrated"] >= 0.95 > stages["mapped"]  # the recalibration is what brings it back
    ckpt = load_checkpoint(out)
    assert ckpt.config.arch == summary["model"] == "cifar_resnet20_sb" and ckpt.config.sampling == "chessboard"
    assert (
        ckpt.config.training["sbify"]["source_sha256"]
        == sha256_file(BASELINE / WEIGHTS_FILE)
        == summary["baseline_sha256"]
    )
    assert ckpt.config.metrics["test_accuracy"] == pytest.approx(stages["recalibrated"], abs=1e-5)


@pytest.mark.slow
def test_sbified_checkpoint_goes_through_the_pipeline(sbified: tuple[Path, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    out, _ = sbified
    run = run_cli(
        "pipeline",
        str(out),
        "--out",
        str(tmp_path / "run"),
        "--batch",
        "1",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--limit",
        "32",
        "--threads",
        "1",
        "--json",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["passed"]
    validation = json.loads((tmp_path / "run" / "validate.json").read_text())
    assert validation["passed"] and {a["backend"] for a in validation["accuracy"]} >= {"torch", "ort-cpu fp32"}


@pytest.mark.slow
def test_dense_sampling_keeps_the_baselines_accuracy(tmp_path: Path) -> None:
    run = run_cli(
        "sbify",
        str(BASELINE),
        "--out",
        str(tmp_path / "dense"),
        "--sampling",
        "dense",
        "--no-recalibrate",
        "--data",
        "digits",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    stages = {s["name"]: s["test_accuracy"] for s in json.loads(run.stdout)["stages"]}
    assert stages["mapped"] == stages["baseline"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((str(REPO / "models" / "digits_resnet20_sb"),), "SB network already"),
        (("no/such/folder",), "does not exist"),
        ((str(BASELINE), "--distill"), "distillation applies to the fine-tune"),
        ((str(BASELINE), "--sampling", "diagonal"), "unknown sampling set"),
        ((str(BASELINE), "--data", "synthetic"), "the checkpoint expects 1-channel"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    run = run_cli("sbify", *args, "--out", str(tmp_path / "x"))
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("error:") and message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "x").exists()


def test_stages_map_only_those_stages(tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    run = run_cli("sbify", str(BASELINE), "--out", str(out), "--stages", "3,2", "--no-recalibrate", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["sb_stages"] == [2, 3]
    ckpt = load_checkpoint(out)
    assert ckpt.config.sb_stages == (2, 3) and ckpt.config.options["sb_stages"] == [2, 3]
    assert sum(hasattr(m, "describe") for m in ckpt.model.modules()) == 6  # stages 2 and 3 of cifar_resnet20's 3x3
