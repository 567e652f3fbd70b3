"""Shared fixtures and helpers: a tiny SB checkpoint and its ONNX export, the CLI in a subprocess, test matrices."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def kernel_library() -> Path:
    """The built kernel library; skips the test when it is not built, fails it under ``SBDEPLOY_REQUIRE_KERNEL=1``
    (CI sets it: there a skipped kernel test would hide a broken build)."""
    from sbdeploy.errors import BackendUnavailableError
    from sbdeploy.kernels import library_path

    try:
        return library_path()
    except BackendUnavailableError as exc:
        if os.environ.get("SBDEPLOY_REQUIRE_KERNEL") == "1":
            pytest.fail(f"SBDEPLOY_REQUIRE_KERNEL=1 but {exc}")
        pytest.skip(str(exc))


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sbdeploy ARGS`` from the repository root, capturing text output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "sbdeploy", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def cover(cases: Iterable[tuple[Any, ...]], ids: Iterable[str]) -> list[Any]:
    """``cases`` (tuples of argument values) as ``pytest.param``s, each marked slow unless it brings a new value.

    A case runs in the fast tier (``pytest -m "not slow"``) when it holds, at some position, a value that no
    earlier case held there: every value of every axis still runs in the fast tier, the full suite runs all.
    """
    seen: set[tuple[int, str]] = set()
    params = []
    for case, case_id in zip(cases, ids, strict=True):
        values = {(axis, repr(value)) for axis, value in enumerate(case)}
        params.append(pytest.param(*case, id=case_id, marks=() if values - seen else pytest.mark.slow))
        seen |= values
    return params


def cross(*axes: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
    """Every combination of the axes' values, as :func:`cover` marks them (the full product in the slow tier).

    An axis is a sequence of values (ids: their ``__name__`` or ``str``) or a mapping of id to value.
    """
    columns = [
        list(a.items()) if isinstance(a, Mapping) else [(getattr(v, "__name__", str(v)), v) for v in a] for a in axes
    ]
    combinations = list(itertools.product(*columns))
    return cover(
        (tuple(value for _, value in c) for c in combinations), ("-".join(name for name, _ in c) for c in combinations)
    )


@pytest.fixture()
def one_torch_thread():  # noqa: ANN201
    """Torch on one intra-op thread for the test: the float64 checks run thousands of tiny ops, and on a
    shared machine two threads wait on each other's barrier at every op (5x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cifar_resnet20_sb for 1-channel 32x32 digits with random (seeded) weights and BN statistics."""
    from sbdeploy import create_model
    from sbdeploy.checkpoint import CheckpointConfig, save_checkpoint
    from sbdeploy.data.digits import CLASS_NAMES

    torch.manual_seed(0)
    model = create_model("cifar_resnet20_sb", num_classes=10, in_chans=1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    config = CheckpointConfig(
        arch="cifar_resnet20_sb",
        options={"num_classes": 10, "in_chans": 1, "sampling": "chessboard"},
        input_size=(32, 32),
        mean=(0.305,),
        std=(0.323,),
        class_names=CLASS_NAMES,
        dataset="digits",
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_sb", model.eval(), config)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported with the default (grouped) lowering, dynamic batch."""
    from sbdeploy.export.onnx_export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny_sb.onnx").path
