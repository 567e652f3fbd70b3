"""Files with fused SB nodes through the commands: run with the package's library, refused in one line without it.

A file whose ``SBConv`` node lies about its weights' shapes, and a file needing the library where it is not built
(the library's path pointed at nothing, in this process): one ``error:`` line, exit 2, nothing written. The
commands run through :func:`sbdeploy.cli.main.main`, the console entry point, as in ``test_bad_inputs.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from sbdeploy import kernels
from sbdeploy.cli.main import main
from sbdeploy.export.onnx_export import export_onnx
from sbdeploy.files import describe_file
from tests.conftest import kernel_library


@pytest.fixture(scope="module")
def fused_file(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    kernel_library()
    result = export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("fused") / "tiny.onnx", target="ort-cpu", batch=2)
    assert result.metadata["lowering"].startswith("fused") and result.ops["SBConv"] == 9  # the rule's form, built
    assert result.metadata["kernels"]["domain"] == kernels.DOMAIN
    return result.path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_a_fused_file_is_validated_and_timed(fused_file: Path, tiny_checkpoint: Path, tmp_path, capsys) -> None:  # noqa: ANN001
    code, out, err = _run(capsys, "validate", str(tiny_checkpoint), "--onnx", str(fused_file), "--batch", "2", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["passed"], report
    code, out, err = _run(capsys, "bench", "-m", str(fused_file), "--batch", "2", "--duration", "1", "--json")
    assert code == 0, out + err
    assert json.loads(out)["rows"][0]["median_ms"] > 0


def test_lying_attributes_are_one_error_line(fused_file: Path, tmp_path, capsys) -> None:  # noqa: ANN001
    model = onnx.load(fused_file)
    node = next(n for n in model.graph.node if n.op_type == "SBConv")
    w2 = next(t for t in model.graph.initializer if t.name == node.input[3])
    w2.CopyFrom(numpy_helper.from_array(np.zeros((3, *numpy_helper.to_array(w2).shape[1:]), np.float32), w2.name))
    bad = tmp_path / "lying.onnx"
    onnx.save(model, bad)
    code, out, err = _run(
        capsys, "bench", "-m", str(bad), "--batch", "2", "--duration", "1", "--report", str(tmp_path / "b")
    )
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err
    assert "disagree on Cmid" in err and not (tmp_path / "b").exists()


def test_without_the_library_the_file_is_refused_naming_the_fix(
    fused_file: Path, tmp_path, capsys, monkeypatch
) -> None:  # noqa: ANN001
    monkeypatch.setattr(kernels, "LIBRARY", tmp_path / "missing" / "libsbkernels.so")
    assert describe_file(fused_file).uses_kernels
    code, out, err = _run(
        capsys, "bench", "-m", str(fused_file), "--batch", "2", "--duration", "1", "--report", str(tmp_path / "b")
    )
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err
    assert "not built" in err and "scripts/build_kernels.sh" in err and not (tmp_path / "b").exists()
    code, out, err = _run(capsys, "triton-repo", str(fused_file), "--out", str(tmp_path / "repo"))
    assert code == 2 and "scripts/build_kernels.sh" in err and not (tmp_path / "repo").exists()


def test_triton_repo_carries_the_library(fused_file: Path, tmp_path, capsys) -> None:  # noqa: ANN001
    code, out, err = _run(capsys, "triton-repo", str(fused_file), "--out", str(tmp_path / "repo"))
    assert code == 0, out + err
    folder = tmp_path / "repo" / "tiny"
    assert (folder / "libsbkernels.so").read_bytes() == kernel_library().read_bytes()
    config = (folder / "config.pbtxt").read_text()
    assert f'op_library_filename: [ "{folder.resolve() / "libsbkernels.so"}" ]' in config
    assert "KIND_CPU" in config


def test_triton_repo_refuses_a_fused_file_for_openvino(fused_file: Path, tmp_path, capsys) -> None:  # noqa: ANN001
    code, out, err = _run(
        capsys, "triton-repo", str(fused_file), "--out", str(tmp_path / "repo"), "--onnx-backend", "openvino"
    )
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err
    assert "OpenVINO cannot run" in err and "--target ov-cpu" in err and not (tmp_path / "repo").exists()
