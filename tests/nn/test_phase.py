"""Deploy forms of whole networks (phase-layout runs + per-SB lowerings) against the reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sbdeploy.errors import ConfigError
from sbdeploy.models import create_model
from sbdeploy.nn.blocks import SBBottleneck, SBPreActBottleneck
from sbdeploy.nn.phase import LoweredSB, PhaseRun, deploy_form
from sbdeploy.nn.sb import SAMPLINGS, SpatialBottleneck, reference_mode


def _randomize(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.double().eval()


def _check(model: nn.Module, size: tuple[int, int], target: str) -> nn.Module:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad(), reference_mode(model):
        ref = model(x)
    deployed = deploy_form(model, target)
    runs = [m for m in deployed.modules() if isinstance(m, PhaseRun)]
    layouts = ["phases"] + (["stacked"] if any(r.stacked is not None for r in runs) else [])
    for layout in layouts:  # every run in each layout it has (bottleneck runs have no stacked one)
        for run in runs:
            run.layout = layout if run.stacked is not None else "phases"
        with torch.no_grad():
            out = deployed(x)
        assert (out - ref).abs().max().item() < 1e-10 * max(1.0, ref.abs().max().item()), layout
    for run in runs:
        run.layout = "auto"
    return deployed


@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
@pytest.mark.parametrize("target", ["ort-cpu", "trt"])  # ort-cuda lowers like trt
def test_cifar_resnet20_sb_every_sampling(sampling: str, target: str) -> None:
    torch.manual_seed(0)
    model = _randomize(create_model("cifar_resnet20_sb", sampling=sampling))
    deployed = _check(model, (16, 16), target)
    runs = [m for m in deployed.modules() if isinstance(m, PhaseRun)]
    assert len(runs) == (1 if target == "ort-cpu" else 0)  # one run over all blocks, stride-2 ones included
    if runs:
        assert runs[0].plan((16, 16)) == [True] * 9  # 16 -> 8 -> 4: every block on phases
    assert not any(isinstance(m, SpatialBottleneck) and not isinstance(p, LoweredSB)
                   for p in deployed.modules() for m in p.children())


@pytest.mark.parametrize("size", [(13, 11), (10, 6)])
def test_cifar_odd_and_uneven_sizes(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    _check(_randomize(create_model("cifar_resnet20_sb")), size, "ort-cpu")


def test_cifar_run_leaves_phases_where_a_stage_would_be_odd() -> None:
    torch.manual_seed(0)
    deployed = _check(_randomize(create_model("cifar_resnet20_sb")), (12, 20), "ort-cpu")  # stages 12x20, 6x10, 3x5
    (run,) = [m for m in deployed.modules() if isinstance(m, PhaseRun)]
    assert run.plan((12, 20)) == [True] * 3 + [True] + [True] * 2 + [False] * 3


@pytest.mark.parametrize(("size", "plan"), [
    ((40, 40), [True] * 2 + [False] * 6),  # stages 10, 5, 3, 2: the stride-2 block into 5x5 leaves phases
    ((64, 64), [True] * 8),  # stages 16, 8, 4, 2: all on phases, downsample shortcuts read phase (0, 0)
])  # fmt: skip
def test_resnet18_sb_post_activation_one_run_across_stages(size: tuple[int, int], plan: list[bool]) -> None:
    torch.manual_seed(0)
    deployed = _check(_randomize(create_model("resnet18_sb", num_classes=10)), size, "ort-cpu")
    (run,) = [m for m in deployed.modules() if isinstance(m, PhaseRun)]
    assert run.plan((size[0] // 4, size[1] // 4)) == plan


def test_bottleneck_blocks_at_odd_sizes_use_per_sb_lowering() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Sequential(SBPreActBottleneck(16, 4), SBPreActBottleneck(16, 4, stride=2)))
    deployed = _check(_randomize(model), (9, 12), "ort-cpu")
    assert sum(isinstance(m, LoweredSB) for m in deployed.modules()) == 2
    (run,) = [m for m in deployed.modules() if isinstance(m, PhaseRun)]
    assert run.plan((9, 12)) == [False, False]


@pytest.mark.parametrize(("name", "size", "run_input"), [
    ("cifar_resnet164_sb", (16, 16), (16, 16)),  # pre-activation bottlenecks, 1x1 shortcuts at stride 1 and 2
    ("resnet50_sb", (64, 64), (16, 16)),  # torchvision bottlenecks, downsample = 1x1 conv + BN
])  # fmt: skip
def test_bottleneck_nets_run_on_phases(name: str, size: tuple[int, int], run_input: tuple[int, int]) -> None:
    torch.manual_seed(0)
    deployed = _check(_randomize(create_model(name, num_classes=10)), size, "ort-cpu")
    (run,) = [m for m in deployed.modules() if isinstance(m, PhaseRun)]
    assert all(run.plan(run_input)) and len(run.blocks) == sum(isinstance(m, LoweredSB) for m in deployed.modules())


def test_auto_layout_is_stacked_for_small_fixed_batches_only() -> None:
    run = PhaseRun(list(deploy_form(create_model("cifar_resnet20_sb").eval()).layers[0].blocks))
    assert run.stacked is not None and len(run.stacked) == 9
    assert run.layout_for(torch.zeros(1, 16, 32, 32)) == "stacked"  # 1 x 16 x 16 x 16 x 16 = 65k MACs per tap conv
    assert run.layout_for(torch.zeros(2, 16, 32, 32)) == "stacked"  # 131k
    assert run.layout_for(torch.zeros(4, 16, 32, 32)) == "phases"  # 262k: from there the exact taps win
    resnet = deploy_form(create_model("resnet18_sb").eval())
    (big,) = [m for m in resnet.modules() if isinstance(m, PhaseRun)]
    assert big.layout_for(torch.zeros(1, 64, 56, 56)) == "phases"  # 28 x 28 x 64 x 64 = 3.2M
    (bottlenecks,) = [m for m in deploy_form(create_model("resnet50_sb").eval()).modules() if isinstance(m, PhaseRun)]
    assert bottlenecks.stacked is None and bottlenecks.layout_for(torch.zeros(1, 64, 8, 8)) == "phases"


def test_deploy_form_leaves_the_model_alone_and_refuses_unknown_targets() -> None:
    model = create_model("cifar_resnet20_sb").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deploy_form(model, "ort-cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, (PhaseRun, LoweredSB)) for m in model.modules())
    with pytest.raises(ConfigError, match="unknown target"):
        deploy_form(model, "tpu")


@pytest.mark.parametrize("target", ["ort-cpu", "trt"])
def test_bn_after_a_linear_sb_is_folded_into_it(target: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Sequential(SBBottleneck(16, 4, stride=2), SBBottleneck(16, 4)))
    deployed = _check(_randomize(model), (11, 12), target)
    lowered = [m for m in deployed.modules() if isinstance(m, LoweredSB)]
    assert len(lowered) == 2 and all(m.post is not None for m in lowered)
    assert all(isinstance(b.bn2, nn.Identity) for b in deployed.modules() if isinstance(b, SBBottleneck))
