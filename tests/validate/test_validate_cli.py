"""``sbdeploy validate`` for real on ONNX Runtime CPU: passes on a correct export, fails loudly otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import REPO, run_cli

SHIPPED = REPO / "models" / "digits_resnet20_sb"


def test_correct_export_passes_and_writes_reports_that_name_the_file(
    tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path
) -> None:
    from sbdeploy._io import sha256_file

    result = run_cli(
        "validate", str(tiny_checkpoint), "--onnx", str(tiny_onnx), "--limit", "48", "--report", str(tmp_path / "r")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout and f"tiny_sb.onnx: sha256 {sha256_file(tiny_onnx)}" in result.stdout
    report = json.loads((tmp_path / "r" / "validate.json").read_text())
    assert report["passed"] is True
    cases = {c["case"] for c in report["checks"]}
    assert cases == {"random b1", "random b2", "random b8", "digits test"}
    assert all(c["stats"]["max_abs"] < 1e-4 for c in report["checks"])
    assert {(c["file"], c["sha256"], c["target"]) for c in report["checks"]} == {
        ("tiny_sb.onnx", sha256_file(tiny_onnx), "grouped")
    }
    assert {a["backend"] for a in report["accuracy"]} == {"torch", "ort-cpu fp32"}
    markdown = (tmp_path / "r" / "validate.md").read_text()
    assert "| `tiny_sb.onnx` | ort-cpu | fp32 | digits test |" in markdown and sha256_file(tiny_onnx)[:16] in markdown


@pytest.mark.slow
def test_without_files_it_checks_the_deploy_artifacts_bench_times(tiny_checkpoint: Path, tmp_path: Path) -> None:
    kept = tmp_path / "artifacts"
    result = run_cli(
        "validate", str(tiny_checkpoint), "--batch", "1,2", "--limit", "8", "--artifacts", str(kept), "--json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    files = {c["file"]: (c["target"], c["case"]) for c in report["checks"] if c["case"].startswith("random")}
    assert files == {
        "model.ort-cpu.b1.fp32.onnx": ("ort-cpu", "random b1"),
        "model.ort-cpu.b2.fp32.onnx": ("ort-cpu", "random b2"),
    }
    assert {p.name for p in kept.iterdir()} == set(files)


def test_corrupted_weight_fails_with_exit_1(tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    weights = max(
        (i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT), key=lambda t: np.prod(t.dims)
    )
    array = numpy_helper.to_array(weights).copy()
    array.flat[: array.size // 10] *= -1.0  # flip the sign of a tenth of the largest weight tensor
    weights.CopyFrom(numpy_helper.from_array(array, weights.name))
    corrupted = tmp_path / "corrupted.onnx"
    onnx.save(model, str(corrupted))
    result = run_cli("validate", str(tiny_checkpoint), "--onnx", str(corrupted), "--limit", "32", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is False
    assert all(not c["passed"] and "beyond atol" in c["reason"] for c in report["checks"])


def test_too_tight_tolerance_fails(tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    result = run_cli(
        "validate",
        str(tiny_checkpoint),
        "--onnx",
        str(tiny_onnx),
        "--limit",
        "8",
        "--atol",
        "0",
        "--rtol",
        "0",
        "--report",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert "FAILED" in result.stdout  # the verdict line; the reasons are read from the report (table cells wrap)
    failed = [c for c in json.loads((tmp_path / "validate.json").read_text())["checks"] if not c["passed"]]
    assert failed and all("beyond atol=0" in c["reason"] for c in failed)


@pytest.mark.slow
def test_fp16_artifact_uses_fp16_tolerance(tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    from sbdeploy.passes import to_fp16

    fp16 = tmp_path / "fp16.onnx"
    onnx.save(to_fp16(onnx.load(str(tiny_onnx))), str(fp16))
    result = run_cli("validate", str(tiny_checkpoint), "--onnx", str(fp16), "--limit", "32", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert {c["precision"] for c in report["checks"]} == {"fp16"}
    assert max(c["stats"]["max_abs"] for c in report["checks"]) > 1e-5  # really ran in half precision


@pytest.mark.slow
def test_bad_inputs_give_one_line_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not onnx")
    for args, needle in [
        (("validate", str(tmp_path / "missing")), "does not exist"),
        (("validate", str(tiny_checkpoint), "--onnx", str(garbage)), "not a readable ONNX"),
        (("validate", str(tiny_checkpoint), "--backends", "foo"), "--backends"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_fixed_batch_file_beside_a_dynamic_one_is_judged_on_its_own_inputs(
    tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path
) -> None:
    """Both files see the same 'random b8' batch (one name, one set of images), so each is judged against its own reference."""
    from sbdeploy.export.onnx_export import export_onnx

    fixed = export_onnx(tiny_checkpoint, tmp_path / "model.ort-cpu.b8.fp32.onnx", target="ort-cpu", batch=8).path
    result = run_cli(
        "validate", str(tiny_checkpoint), "--onnx", str(tiny_onnx), "--onnx", str(fixed), "--limit", "16", "--json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    b8 = [c for c in report["checks"] if c["case"] == "random b8"]
    assert {c["file"] for c in b8} == {"tiny_sb.onnx", "model.ort-cpu.b8.fp32.onnx"} and all(c["passed"] for c in b8)
    assert max(c["stats"]["max_abs"] for c in b8) < 1e-4


def _refusal(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of ``sbdeploy ARGS`` run through the console entry point (exit 2, nothing on stdout)."""
    from sbdeploy.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == "" and len(captured.err.splitlines()) == 1, captured
    return captured.err.strip()


def test_the_file_given_as_the_checkpoint_gets_the_right_command_line(
    tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _refusal(["validate", str(tiny_onnx)], capsys)
    assert f"{tiny_onnx} is a model file" in message and f"`sbdeploy validate CHECKPOINT --onnx {tiny_onnx}`" in message
    engine = tmp_path / "r20.engine"
    assert f"`sbdeploy validate CHECKPOINT --engine {engine}`" in _refusal(["validate", str(engine)], capsys)


@pytest.mark.slow
def test_a_file_of_other_weights_is_refused_before_anything_runs(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same architecture, options and input, other weights (a zoo export): both named, no report written."""
    from sbdeploy.export.onnx_export import export_onnx

    other = export_onnx("cifar_resnet20_sb", tmp_path / "other.onnx", options={"in_chans": 1, "num_classes": 10}).path
    message = _refusal(
        ["validate", str(tiny_checkpoint), "--onnx", str(other), "--report", str(tmp_path / "r")], capsys
    )
    assert (
        f"other.onnx and the checkpoint {tiny_checkpoint} are both cifar_resnet20_sb but not the same model" in message
    )
    assert "weights sha256" in message and f"sbdeploy export {tiny_checkpoint} -o FILE" in message
    assert not (tmp_path / "r").exists()


def _validate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``sbdeploy validate ARGS`` through the console entry point, in this process: exit code, stdout, stderr."""
    from sbdeploy.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["validate", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_saved_outputs_are_judged_again_with_other_tolerances_without_running_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run, then compare: --save-outputs keeps every output; --load-outputs judges them again and runs nothing."""
    import onnxruntime

    from sbdeploy import flow

    saved, kept = tmp_path / "outputs", tmp_path / "artifacts"
    args = [str(SHIPPED), "--batch", "1", "--limit", "50", "--artifacts", str(kept), "--save-outputs", str(saved)]
    code, out, err = _validate([*args, "--json"], capsys)
    assert code == 0, err
    ran = json.loads(out)
    assert {p.name for p in saved.iterdir()} == {"outputs.json", "outputs.npz"}

    def nothing_runs(*args: object, **kwargs: object) -> None:
        raise AssertionError("--load-outputs ran a model")

    shutil.rmtree(kept)  # no ONNX file is left to open, and nothing may load the checkpoint or run a session
    for owner, name in ((onnxruntime, "InferenceSession"), (flow, "run_validation"), (flow, "resolve_models")):
        monkeypatch.setattr(owner, name, nothing_runs)
    code, out, err = _validate(["--load-outputs", str(saved), "--atol", "1e-9", "--rtol", "0", "--json"], capsys)
    assert code == 1, err
    tight = json.loads(out)
    assert tight["passed"] is False and any("beyond atol=1e-09" in c["reason"] for c in tight["checks"])
    code, out, err = _validate(["--load-outputs", str(saved), "--json"], capsys)
    assert code == 0, err
    again = json.loads(out)
    assert again["passed"] is True and again["checks"] == ran["checks"] and again["accuracy"] == ran["accuracy"]


def test_load_outputs_refuses_a_folder_without_saved_outputs_and_other_inputs(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, says in [
        (["--load-outputs", str(empty)], f"{empty} does not hold outputs saved by `sbdeploy validate --save-outputs`"),
        (["--load-outputs", str(tmp_path / "missing")], "does not hold outputs saved"),
        ([str(tiny_checkpoint), "--load-outputs", str(empty)], "--load-outputs judges saved outputs: give it alone"),
        ([], "give the CHECKPOINT folder (or --load-outputs DIR)"),
    ]:
        code, out, err = _validate(args, capsys)
        assert code == 2 and out == "" and len(err.splitlines()) == 1, (args, err)
        assert err.startswith("error: ") and says in err, err
