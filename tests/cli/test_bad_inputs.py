"""Every command's file arguments against every kind of bad file: one ``error:`` line, exit 2, nothing written.

The table is ``ARGUMENTS`` (one row per file argument of a command) x ``KINDS`` (missing,
empty, the wrong type, text, truncated, another model's file). A row says how to build the
command line around the bad path, whether the argument is a file or a folder, which valid
sample the truncated and "another model's" variants are made from, and whether another
model's file is bad at all (an ONNX file of another model is a fine input to ``check`` or to
``bench``, which times any file; to ``validate`` against a checkpoint it is not). Add a
command by adding a row. The int8 rows give ``export``, ``validate``, ``bench`` and
``pipeline`` a valid checkpoint and a bad ``--calibration`` file; a calibration source that
names nothing, and a checkpoint without a dataset and no ``--calibration``, are below.

The commands run in this process through :func:`sbdeploy.cli.main.main`, the console entry
point, with its real argument parsing and error rendering: ~50 rows as subprocesses would
cost a minute of CI for the interpreter start-ups alone (tests/cli/test_main.py runs the
same error path in subprocesses).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import sbdeploy
from sbdeploy.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointConfig, save_checkpoint
from sbdeploy.cli.main import main
from tests.serve._artifacts import fake_engine, tiny_onnx

KINDS = ("missing", "empty", "wrong type", "text", "truncated", "another model's")

TRAIN = [
    "--data",
    "synthetic",
    "--epochs",
    "2",
    "--max-steps",
    "1",
    "--batch-size",
    "16",
    "--quiet",
]  # the resume sample's recipe


@dataclass(frozen=True)
class FileArgument:
    """One file argument of one command."""

    name: str
    argv: Callable[
        [Path, Path, dict[str, Path]], list[str]
    ]  # (bad path, a folder for outputs, the samples) -> the arguments
    takes: str  # "file" or "folder"
    sample: str  # key of SAMPLES: the valid input the truncated and "another model's" variants come from
    suffix: str = ""  # file name suffix of the bad path
    another: bool = True  # another model's file is a bad input here
    names: tuple[
        str, ...
    ] = ()  # what the "another model's" message must name (both models, where the file says which it is)


ARGUMENTS = [
    FileArgument(
        "train --resume OUT",
        lambda bad, out, s: ["train", "cifar_resnet20", *TRAIN, "--out", str(bad), "--resume"],
        "folder",
        "resume",
    ),
    FileArgument(
        "evaluate CHECKPOINT", lambda bad, out, s: ["evaluate", str(bad), "--data", "synthetic"], "folder", "checkpoint"
    ),
    FileArgument(
        "export SOURCE", lambda bad, out, s: ["export", str(bad), "-o", str(out / "m.onnx")], "folder", "checkpoint"
    ),
    FileArgument("check ONNX", lambda bad, out, s: ["check", str(bad)], "file", "onnx", ".onnx", another=False),
    FileArgument(
        "build-engine ONNX",
        lambda bad, out, s: ["build-engine", str(bad), "-o", str(out / "m.engine")],
        "file",
        "onnx",
        ".onnx",
        another=False,
    ),
    FileArgument(
        "triton-repo ONNX",
        lambda bad, out, s: ["triton-repo", str(bad), "--out", str(out / "repo")],
        "file",
        "onnx",
        ".onnx",
        another=False,
    ),
    FileArgument(
        "triton-repo ENGINE",
        lambda bad, out, s: ["triton-repo", str(bad), "--out", str(out / "repo")],
        "file",
        "engine",
        ".engine",
    ),
    FileArgument(
        "sbify BASELINE",
        lambda bad, out, s: ["sbify", str(bad), "--out", str(out / "sb"), "--no-recalibrate"],
        "folder",
        "checkpoint",
    ),
    FileArgument(
        "import STATE_DICT",
        lambda bad, out, s: ["import", str(bad), "--arch", "cifar_resnet20", "--out", str(out / "ckpt")],
        "file",
        "pth",
        ".pth",
    ),
    FileArgument(
        "validate CHECKPOINT",
        lambda bad, out, s: ["validate", str(bad), "--report", str(out / "r"), "--artifacts", str(out / "a")],
        "folder",
        "checkpoint",
    ),
    FileArgument(
        "validate --onnx FILE",
        lambda bad, out, s: ["validate", str(s["checkpoint"]), "--onnx", str(bad), "--report", str(out / "r")],
        "file",
        "onnx",
        ".onnx",
        names=("tiny", "cifar_resnet20"),
    ),
    FileArgument(
        "validate --engine FILE",
        lambda bad, out, s: ["validate", str(s["checkpoint"]), "--engine", str(bad), "--report", str(out / "r")],
        "file",
        "engine",
        ".engine",
    ),
    FileArgument(
        "bench -m CHECKPOINT",
        lambda bad, out, s: ["bench", "-m", str(bad), "--report", str(out / "r"), "--artifacts", str(out / "a")],
        "folder",
        "checkpoint",
    ),
    FileArgument(
        "bench -m ONNX",
        lambda bad, out, s: ["bench", "-m", str(bad), "--report", str(out / "r")],
        "file",
        "onnx",
        ".onnx",
        another=False,
    ),
    FileArgument(
        "bench -m ENGINE",
        lambda bad, out, s: ["bench", "-m", str(bad), "--report", str(out / "r")],
        "file",
        "engine",
        ".engine",
    ),
    FileArgument(
        "pipeline SOURCE", lambda bad, out, s: ["pipeline", str(bad), "--out", str(out / "run")], "folder", "checkpoint"
    ),
    FileArgument(
        "pipeline --baseline",
        lambda bad, out, s: ["pipeline", str(s["checkpoint"]), "--baseline", str(bad), "--out", str(out / "run")],
        "folder",
        "checkpoint",
    ),
]

CALIBRATION_COMMANDS: dict[str, Callable[[Path, Path, Path], list[str]]] = {
    "export": lambda ckpt, cal, out: [
        "export",
        str(ckpt),
        "--int8",
        *cal_args(cal),
        "--target",
        "ort-cpu",
        "-o",
        str(out / "m.onnx"),
    ],
    "validate": lambda ckpt, cal, out: [
        "validate",
        str(ckpt),
        "--int8",
        *cal_args(cal),
        "--batch",
        "1",
        "--artifacts",
        str(out),
    ],
    "bench": lambda ckpt, cal, out: [
        "bench",
        "-m",
        str(ckpt),
        "--int8",
        *cal_args(cal),
        "--backends",
        "ort-cpu",
        "--batch",
        "1",
        "--iters",
        "1",
        "--artifacts",
        str(out),
    ],
    "pipeline": lambda ckpt, cal, out: [
        "pipeline",
        str(ckpt),
        "--int8",
        *cal_args(cal),
        "--batch",
        "1",
        "--out",
        str(out),
    ],
}
"""The int8 commands' ``--calibration SRC`` (a .npy or a data source): (checkpoint, SRC, output folder) -> arguments."""


def cal_args(cal: Path) -> list[str]:
    return [] if cal.name == "-" else ["--calibration", str(cal)]


ARGUMENTS += [
    FileArgument(
        f"{command} --int8 --calibration NPY",
        lambda bad, out, s, c=command: CALIBRATION_COMMANDS[c](out.parent / "ckpt", bad, out),
        "file",
        "npy",
        ".npy",
    )
    for command in CALIBRATION_COMMANDS
]


def _checkpoint(folder: Path, arch: str = "cifar_resnet20") -> Path:
    torch.manual_seed(0)
    config = CheckpointConfig(
        arch=arch,
        options={"num_classes": 10, "in_chans": 3},
        input_size=(32, 32),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        class_names=tuple(str(i) for i in range(10)),
    )
    return save_checkpoint(folder, sbdeploy.create_model(arch, num_classes=10).eval(), config)


def _resume_folder(folder: Path) -> Path:
    """A run of `sbdeploy train ... --epochs 2` interrupted after its first epoch (weights + train_state.safetensors)."""
    from sbdeploy.data import open_source
    from sbdeploy.train import TrainCallbacks, TrainConfig
    from sbdeploy.train import train as run_training

    class Interrupt(TrainCallbacks):
        def on_epoch_end(self, stats: object) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(
            "cifar_resnet20",
            open_source("synthetic"),
            folder,
            TrainConfig(epochs=2, batch_size=16, max_steps_per_epoch=1),
            callbacks=Interrupt(),
        )
    assert (folder / "train_state.safetensors").is_file()
    return folder


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid inputs of every kind, and the same kind from another model."""
    root = tmp_path_factory.mktemp("samples")
    other = _checkpoint(root / "other_ckpt", "cifar_resnet32")
    torch.save(sbdeploy.create_model("cifar_resnet32", num_classes=10).state_dict(), root / "other.pth")
    torch.save(sbdeploy.create_model("cifar_resnet20", num_classes=10).state_dict(), root / "model.pth")
    engine = fake_engine(root / "model.engine", [(1, 4, 8)])
    fake_engine(root / "other.engine", [(1, 4, 8)])
    shutil.copy(root / "other.engine.json", root / "mismatched.engine.json")  # another engine's sidecar
    shutil.copy(engine, root / "mismatched.engine")
    (root / "mismatched.engine").write_bytes(b"another engine's bytes: the sidecar's sha256 is not theirs")
    np.save(root / "calibration.npy", np.zeros((4, 3, 32, 32), np.float32))
    np.save(root / "other.npy", np.zeros((4, 1, 8, 8), np.float32))  # another model's inputs: the wrong shape here
    return {
        "npy": root / "calibration.npy",
        "npy:other": root / "other.npy",
        "checkpoint": _checkpoint(root / "ckpt"),
        "checkpoint:other": other,
        "resume": _resume_folder(root / "resume"),
        "onnx": tiny_onnx(root / "model.onnx"),
        "onnx:other": tiny_onnx(root / "other.onnx", size=16, classes=5),
        "engine": engine,
        "engine:other": root / "mismatched.engine",
        "pth": root / "model.pth",
        "pth:other": root / "other.pth",
    }


def _make(kind: str, argument: FileArgument, samples: dict[str, Path], where: Path) -> Path:
    """The bad input of ``kind`` for ``argument``, under ``where``."""
    bad = where / f"bad{argument.suffix}"
    valid = samples[argument.sample]
    if kind == "missing":
        return bad
    if kind == "empty":
        bad.mkdir() if argument.takes == "folder" else bad.touch()
    elif kind == "wrong type":  # a folder where a file is expected, a file where a folder is
        bad.mkdir() if argument.takes == "file" else bad.write_text("a file, not a folder\n")
    elif kind == "text":
        if argument.takes == "file":
            bad.write_text("name,weight\nconv1,0.5\n")
        else:
            shutil.copytree(valid, bad)
            for file in bad.iterdir():
                file.write_text("name,weight\nconv1,0.5\n")
    elif kind == "truncated":
        if argument.takes == "file":
            data = valid.read_bytes()
            bad.write_bytes(data[: len(data) // 2])
            if argument.sample == "engine":  # beside its own sidecar: the cut is what must be found
                shutil.copy(valid.with_name(valid.name + ".json"), bad.with_name(bad.name + ".json"))
        else:
            shutil.copytree(valid, bad)
            data = (bad / WEIGHTS_FILE).read_bytes()
            (bad / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    elif kind == "another model's":
        if argument.sample == "resume":  # the interrupted run's folder holding another network's weights
            shutil.copytree(valid, bad)
            shutil.copy(samples["checkpoint:other"] / WEIGHTS_FILE, bad / WEIGHTS_FILE)
        elif argument.takes == "folder":
            shutil.copytree(samples[f"{argument.sample}:other"], bad)
            shutil.copy(valid / CONFIG_FILE, bad / CONFIG_FILE)  # this model's config, another model's weights
        elif argument.sample == "engine":
            shutil.copy(samples["engine:other"], bad)
            shutil.copy(samples["engine:other"].with_name("mismatched.engine.json"), bad.with_name(bad.name + ".json"))
        else:
            shutil.copy(samples[f"{argument.sample}:other"], bad)
    return bad


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


CASES = [
    pytest.param(argument, kind, id=f"{argument.name} / {kind}")
    for argument in ARGUMENTS
    for kind in KINDS
    if kind != "another model's" or argument.another
]


@pytest.mark.parametrize(("argument", "kind"), CASES)
def test_bad_file_argument(
    argument: FileArgument, kind: str, samples: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _make(kind, argument, samples, tmp_path)
    out = tmp_path / "out"
    if argument.sample == "npy":  # the int8 commands read a valid checkpoint; the bad file is the calibration
        shutil.copytree(samples["checkpoint"], tmp_path / "ckpt")
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argument.argv(bad, out, samples))
    captured = capsys.readouterr()
    lines = captured.err.splitlines()  # no blank line before or after the message either
    print(f"{argument.name} / {kind}: {captured.err.strip()}")  # the message, for review with pytest -s
    assert exit_info.value.code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), repr(captured.err)
    assert "Traceback" not in captured.err and captured.out == ""
    assert _tree(tmp_path) == before, "something was written"
    message = lines[0]
    if kind == "wrong type":  # it exists: the message says what it is
        assert "does not exist" not in message and (
            "folder" in message or "directory" in message if argument.takes == "file" else "file" in message
        ), message
    if kind == "another model's":
        assert all(name in message for name in argument.names), message


def test_zoo_pattern_that_matches_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """zoo takes a pattern, not a file: the one bad input is a pattern that names nothing."""
    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "no_such_network"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: no model matches")


@pytest.mark.parametrize("command", list(CALIBRATION_COMMANDS))
@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ("no_such_source", "error: unknown data source 'no_such_source'"),
        ("-", "error: int8 needs calibration data and"),  # no --calibration, and the checkpoint names no dataset
    ],
)
def test_calibration_source_that_names_nothing(
    command: str,
    calibration: str,
    message: str,
    samples: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(CALIBRATION_COMMANDS[command](samples["checkpoint"], Path(calibration), out))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith(message), lines
    assert not out.exists() or not any(out.iterdir()), "something was written"
