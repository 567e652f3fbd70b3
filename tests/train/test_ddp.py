"""DistributedDataParallel on the CPU: two gloo processes train, and their replicas end identical."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import save_file

from sbdeploy.checkpoint import read_weights

TIME_LIMIT_S = 240
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, folder: str) -> None:
    """One torchrun-like process: the environment torchrun sets, then the ordinary train()."""
    from sbdeploy.data import open_source
    from sbdeploy.train import TrainConfig, train

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    data = open_source("synthetic", size=8)
    config = TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=3, pad=1, flip=True)
    result = train("cifar_resnet20", data, Path(folder) / "ckpt", config, device="cpu")
    assert result.world_size == 2 and result.rank == rank
    # train() writes the checkpoint on rank 0 only; each rank dumps its own replica for the comparison.
    state = {k: v.detach().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(Path(folder) / f"rank{rank}.safetensors"))


def test_two_gloo_processes_hold_identical_replicas(tmp_path: Path) -> None:
    context = mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIME_LIMIT_S
    while not context.join(timeout=1):  # raises if a worker failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"2-process DDP training did not finish in {TIME_LIMIT_S} s")
    rank0, rank1 = (read_weights(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    saved = read_weights(tmp_path / "ckpt" / "model.safetensors")
    assert rank0.keys() == rank1.keys() == saved.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.equal(rank0[key], saved[key]), key
    # the replicas did train (weights moved from the seeded initialisation)
    torch.manual_seed(0)
    import sbdeploy

    fresh = sbdeploy.create_model("cifar_resnet20", num_classes=10, in_chans=3).state_dict()
    assert not torch.equal(fresh["conv1.weight"], rank0["conv1.weight"])


@pytest.mark.slow
def test_cli_under_torchrun(tmp_path: Path) -> None:
    """The same `sbdeploy train` command, launched by torchrun with two CPU processes."""
    out = tmp_path / "ckpt"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "sbdeploy",
        "train",
        "cifar_resnet20_sb",
        "--data",
        "synthetic",
        "--size",
        "8",
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIME_LIMIT_S)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout[run.stdout.index("{") :])
    assert summary["processes"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"]["world_size"] == 2 and config["metrics"]["epochs"] == 1
