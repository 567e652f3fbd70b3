"""``sbdeploy export`` and ``sbdeploy check`` run as a user runs them (subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from sbdeploy.export.onnx_export import export_onnx
from tests.conftest import REPO, run_cli


@pytest.mark.slow
def test_export_then_check_and_byte_identical_across_processes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "m.onnx"
    done = run_cli("export", "cifar_resnet20_sb", "-o", str(out), "--input-size", "33x35", "--batch", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert f"created folder {out.parent}" in done.stderr  # a new folder is said, on stderr: stdout stays JSON
    report = json.loads(done.stdout)
    assert report["metadata"]["input_shape"] == [2, 3, 33, 35] and report["trt_check"]["ok"]
    assert [p["name"] for p in report["passes"]] == ["fold_constants", "eliminate", "fold_bn", "shape_inference"]
    in_process = export_onnx("cifar_resnet20_sb", tmp_path / "again.onnx", input_size=(33, 35), batch=2)
    assert in_process.path.read_bytes() == out.read_bytes()
    checked = run_cli("check", str(out), "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout + checked.stderr


def test_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    done = run_cli("check", str(bad))
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("export", "no_such_model", "-o", str(tmp_path / "x.onnx"))
    assert done.returncode == 2 and "neither a checkpoint folder nor a zoo name" in done.stderr
    done = run_cli("export", "cifar_resnet20_sb", "-o", str(tmp_path / "x.onnx"), "--input-size", "3x")
    assert done.returncode == 2 and "--input-size" in done.stderr
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_export_target_of_the_shipped_checkpoint_validates_against_pytorch(tmp_path: Path) -> None:
    out = tmp_path / "digits.ort-cpu.onnx"
    done = run_cli(
        "export", str(REPO / "models" / "digits_resnet20_sb"), "-o", str(out), "--target", "ort-cpu", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["metadata"]["target"] == "ort-cpu" and "fuse_pads" in [p["name"] for p in report["passes"]]
    assert report["ops"].get("ConvTranspose", 0) == 0 and report["ops"].get("Pad", 0) == 0
    graph = onnx.load(str(out)).graph  # no shape entry of a tensor the passes removed (there were 79)
    live = {name for node in graph.node for name in (*node.input, *node.output)}
    assert graph.value_info and all(v.name in live for v in graph.value_info)
    checked = run_cli("validate", str(REPO / "models" / "digits_resnet20_sb"), "--onnx", str(out), "--limit", "32")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PASSED" in checked.stdout


def test_unknown_target_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_cli("export", "cifar_resnet20_sb", "-o", str(tmp_path / "x.onnx"), "--target", "npu")
    assert done.returncode == 2 and "unknown target" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_the_old_lowering_flag_keeps_working_or_names_the_new_spelling(tmp_path: Path) -> None:
    out = tmp_path / "sep.onnx"
    done = run_cli(
        "export", "cifar_resnet20_sb", "-o", str(out), "--input-size", "16", "--lowering", "separate", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert (
        json.loads(done.stdout)["metadata"]["target"] == "separate"
        and "old spelling of --target separate" in done.stderr
    )
    for args in (
        ("export", "cifar_resnet20_sb", "-o", str(tmp_path / "x.onnx"), "--lowering", "subpixel"),
        ("bench", "-m", "cifar_resnet20", "--lowering", "strided"),
        ("pipeline", "cifar_resnet20_sb", "--lowering", "phases"),
    ):
        done = run_cli(*args)
        assert (
            done.returncode == 2 and "SB forms are chosen by deploy target, --target grouped | separate" in done.stderr
        ), args
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_tuned_export_validates_and_says_what_it_timed(tmp_path: Path) -> None:
    checkpoint, out = REPO / "models" / "digits_resnet20_sb", tmp_path / "tuned.onnx"
    tuning_options = "--target ort-cpu --batch 1 --tune --tune-forms taps --threads 1 --tune-budget 0.3 --json"
    done = run_cli("export", str(checkpoint), "-o", str(out), *tuning_options.split())
    assert done.returncode == 0, done.stderr
    tuning = json.loads(done.stdout)["tuning"]
    assert tuning["tuned"] is True and tuning["threads"] == 1 and tuning["decision"]
    assert {c["form"] for c in tuning["candidates"]} == {"ort-cpu", "ort-cpu:taps"}
    checked = run_cli("validate", str(checkpoint), "--onnx", str(out), "--limit", "16")
    assert checked.returncode == 0 and "PASSED" in checked.stdout, checked.stdout + checked.stderr
    plain = run_cli(
        "export", str(checkpoint), "-o", str(tmp_path / "plain.onnx"), "--target", "ort-cpu", "--batch", "1"
    )
    assert plain.returncode == 0 and "not tuned: --tune times every candidate" in " ".join(plain.stderr.split()), (
        plain.stderr
    )
    for args, message in (
        (("--tune",), "fixed batch: give --batch N"),
        (("--threads", "2"), "belong to --tune"),
        (("--tune", "--batch", "1", "--target", "trt"), "--tune applies to"),
        (("--tune", "--batch", "1", "--int8"), "--tune times fp32 and fp16 files"),
    ):
        done = run_cli("export", "cifar_resnet20_sb", "-o", str(tmp_path / "x.onnx"), *args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "x.onnx").exists()
