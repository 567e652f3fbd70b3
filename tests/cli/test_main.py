"""The ``sbdeploy`` entry point itself: --version, --help, start-up cost, one error style, bugs that look like bugs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import sbdeploy

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("sbdeploy")  # the console script pip installed beside this interpreter


def _run(*command: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(list(command), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return done, time.perf_counter() - start


ENTRY_POINTS = {"python -m sbdeploy": [sys.executable, "-m", "sbdeploy"], "sbdeploy": [str(SCRIPT)]}


def _entry(name: str) -> list[str]:
    if name == "sbdeploy" and not SCRIPT.is_file():
        pytest.skip(f"no console script beside {sys.executable} (sbdeploy is not pip-installed in this environment)")
    return ENTRY_POINTS[name]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_version(entry: str) -> None:
    done, seconds = _run(*_entry(entry), "--version")
    print(f"{entry} --version: {seconds:.2f} s wall")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"sbdeploy {sbdeploy.__version__}"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["build-engine", "no_such.onnx"], "'no_such.onnx' does not exist (see `sbdeploy build-engine --help`)"),
        (["build-engine", "README.md", "--min-batch", "0"], "'--min-batch'"),
        (["export", "cifar_resnet20", "-o", "."], "'.' is a directory"),
        (["zoo", "--sampling"], "'--sampling' requires an argument (see `sbdeploy zoo --help`)"),
        (["doctor", "--no-such-option"], "No such option: --no-such-option"),
        (["no-such-command"], "No such command 'no-such-command' (see `sbdeploy --help`)"),
    ],
    ids=[
        "missing file",
        "out of range",
        "output is a folder",
        "option without value",
        "unknown option",
        "unknown command",
    ],
)
def test_usage_errors_are_one_line_like_every_other_error(args: list[str], needle: str) -> None:
    done, _ = _run(sys.executable, "-m", "sbdeploy", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]


def _imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level package names from ``python -X importtime`` output."""
    return {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["export", "--help"]], ids=" ".join)
def test_help_and_version_do_not_import_torch(args: list[str]) -> None:
    for name in ENTRY_POINTS:
        if name == "sbdeploy" and not SCRIPT.is_file():
            continue
        done, seconds = _run(*ENTRY_POINTS[name], *args)
        assert done.returncode == 0, done.stderr
        print(f"{name} {' '.join(args)}: {seconds:.2f} s wall (load average {os.getloadavg()[0]:.1f})")
    done, _ = _run(sys.executable, "-X", "importtime", "-m", "sbdeploy", *args)
    assert done.returncode == 0
    imported = _imported_modules(done.stderr)
    assert "sbdeploy" in imported  # the parse found the import lines
    assert not imported & {"torch", "onnx", "onnxruntime", "numpy", "safetensors"}, sorted(imported)


def test_help_shows_no_type_after_flags() -> None:
    done, _ = _run(sys.executable, "-m", "sbdeploy", "build-engine", "--help")
    assert done.returncode == 0
    assert "--fp16" in done.stdout and "--min-batch" in done.stdout
    assert "<bool>" not in done.stdout and "BOOLEAN" not in done.stdout


def test_an_unexpected_exception_is_one_line_naming_its_saved_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (a RuntimeError inside the library call of a real command) is no user error: one line, exit 70, the
    traceback in a file; with SBDEPLOY_DEBUG=1 it propagates."""
    from sbdeploy import flow
    from sbdeploy.cli.main import main

    def broken_judge(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom [bold]")

    monkeypatch.setattr(flow, "judge_saved", broken_judge)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the traceback file is written
    monkeypatch.delenv("SBDEPLOY_DEBUG", raising=False)
    argv = ["validate", "--load-outputs", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert exit_info.value.code == 70 and captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith(
        "error: internal error, a bug in sbdeploy: RuntimeError: boom [bold]; the traceback is in "
    )
    assert "(SBDEPLOY_DEBUG=1 prints it)" in lines[0]
    saved = Path(re.search(r"the traceback is in (\S+) ", lines[0]).group(1))
    assert saved.parent == tmp_path and saved.name.startswith("sbdeploy-traceback-")
    traceback = saved.read_text()
    assert traceback.startswith("Traceback") and "in broken_judge" in traceback and "RuntimeError: boom" in traceback

    monkeypatch.setenv("SBDEPLOY_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(argv)
