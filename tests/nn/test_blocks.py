"""Every SB block equals its dense masked reference, in eval and in train mode, in every form.

Also: each block's description (``describe()``, what the deploy forms interpret) computes
what its ``forward`` computes, and the one form switch (``form_mode``) nests.
"""

from __future__ import annotations

import copy

import pytest
import torch

from sbdeploy.nn.blocks import (
    BlockDescription,
    SBBasicBlock,
    SBBottleneck,
    SBPreActBasicBlock,
    SBPreActBottleneck,
    SBPyramidBasicBlock,
    SBPyramidBottleneck,
    apply_ops,
    pyramid_shortcut,
)
from sbdeploy.nn.lowering import LOWERINGS
from sbdeploy.nn.sampling import SAMPLINGS
from sbdeploy.nn.sb import TRAINING_FORM, SpatialBottleneck, form_mode, reference_mode
from tests.conftest import cross
from tests.nn.test_sb import randomize_bn

TOL = 1e-10


def run_description(desc: BlockDescription, x: torch.Tensor) -> torch.Tensor:
    """What a block description computes on a plain tensor (the oracle the blocks' ``forward`` is held to)."""
    entry = apply_ops(desc.entry, x)
    shortcut, read = desc.shortcut, x if desc.shortcut.reads == "input" else entry
    if shortcut.kind == "projection":
        read = shortcut.conv(read) if shortcut.bn is None else shortcut.bn(shortcut.conv(read))
    elif shortcut.kind == "pyramid":
        read = pyramid_shortcut(read, shortcut.out_channels, shortcut.stride)
    return apply_ops(desc.final, apply_ops(desc.after, desc.sb(apply_ops(desc.before, entry))) + read)


SB_BLOCKS = [
    SBPreActBasicBlock,
    SBPreActBottleneck,
    SBBasicBlock,
    SBBottleneck,
    SBPyramidBasicBlock,
    SBPyramidBottleneck,
]


BLOCK_MATRIX = cross(SB_BLOCKS, list(SAMPLINGS), [1, 2])


def make(block: type[torch.nn.Module], stride: int, sampling: str) -> torch.nn.Module:
    torch.manual_seed(0)
    in_planes = 8
    planes = 4 if block.expansion == 4 else 10  # PyramidNet only widens
    module = block(in_planes, planes, stride, sampling=sampling)
    randomize_bn(module)
    return module.double()


@pytest.mark.parametrize(("block", "sampling", "stride"), BLOCK_MATRIX)
def test_block_eval_matches_reference(block: type[torch.nn.Module], sampling: str, stride: int) -> None:
    module = make(block, stride, sampling).eval()
    for h, w in [(1, 1), (2, 3), (6, 6), (7, 5)]:
        x = torch.randn(2, 8, h, w, dtype=torch.float64)
        fast = module(x)
        with reference_mode(module):
            ref = module(x)
        assert torch.allclose(fast, ref, atol=TOL, rtol=0), f"{h}x{w}: {(fast - ref).abs().max()}"


@pytest.mark.parametrize(("block", "sampling", "stride"), BLOCK_MATRIX)
def test_block_train_matches_reference(block: type[torch.nn.Module], sampling: str, stride: int) -> None:
    """Outputs, gradients and BN running statistics agree in training mode."""
    fast_block = make(block, stride, sampling).train()
    ref_block = copy.deepcopy(fast_block)
    x = torch.randn(3, 8, 7, 6, dtype=torch.float64)
    fast = fast_block(x)
    with reference_mode(ref_block):
        ref = ref_block(x)
    assert torch.allclose(fast, ref, atol=TOL, rtol=0)
    fast.square().sum().backward()
    ref.square().sum().backward()
    for (name, p_fast), p_ref in zip(fast_block.named_parameters(), ref_block.parameters()):
        assert torch.allclose(p_fast.grad, p_ref.grad, atol=1e-9, rtol=0), name
    for (name, b_fast), b_ref in zip(fast_block.named_buffers(), ref_block.buffers()):
        assert torch.allclose(b_fast.double(), b_ref.double(), atol=TOL, rtol=0), name


@pytest.mark.parametrize(("block", "sampling", "stride"), BLOCK_MATRIX)
def test_every_form_and_the_description_match_the_reference(
    block: type[torch.nn.Module], sampling: str, stride: int
) -> None:
    module = make(block, stride, sampling).eval()
    for h, w in [(1, 1), (2, 3), (7, 6), (8, 8)]:
        x = torch.randn(2, 8, h, w, dtype=torch.float64)
        with torch.no_grad(), reference_mode(module):
            ref = module(x)
            described = run_description(module.describe(), x)  # the description, its SB in the reference form
        assert torch.allclose(described, ref, atol=TOL, rtol=0), f"description {h}x{w}"
        for form in LOWERINGS:
            with torch.no_grad(), form_mode(module, form):
                out = module(x)
            assert torch.allclose(out, ref, atol=TOL, rtol=0), f"{form} {h}x{w}: {(out - ref).abs().max()}"


def test_form_modes_nest_and_restore_each_sbs_previous_form() -> None:
    net = torch.nn.Sequential(SpatialBottleneck(2, 2, 2), SpatialBottleneck(2, 2, 2))
    net[1].form = "strided"
    with form_mode(net, "grouped"):
        assert [sb.form for sb in net] == ["grouped", "grouped"]
        with reference_mode(net):
            assert [sb.form for sb in net] == ["reference", "reference"]
        assert [sb.form for sb in net] == ["grouped", "grouped"]  # the outer mode, not the default
    assert [sb.form for sb in net] == [TRAINING_FORM, "strided"]
