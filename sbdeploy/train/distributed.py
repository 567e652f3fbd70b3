"""Scale-out on PyTorch's own engine: process groups (NCCL on a GPU, else gloo) from torchrun's environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # whether setup() created the process group (and teardown() destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def average_buffers(self, model: torch.nn.Module) -> None:
        """Average floating-point buffers (BatchNorm running statistics) over the replicas (DDP syncs parameters only)."""
        if not self.distributed:
            return
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(self.world_size)

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum of ``values`` over the processes (in float64)."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the process's GPU when CUDA is available, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(device)


def setup(device: str = "auto") -> DistContext:
    """Join the torchrun job this process belongs to (or stay alone without one)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev, owns_group=owns)


def teardown(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
