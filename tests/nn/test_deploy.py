"""Deploy copies (``deploy_form``): what gets folded, where phase runs start and end, which layout a run takes.

Each structural check also compares the deploy copy against the dense reference
(float64, 1e-10 of the logits' scale) in every layout its runs have. The full matrix
(every target of the table x every block family x every sampling set, even and odd
sizes, both layouts) is ``tests/test_targets.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sbdeploy.errors import ConfigError
from sbdeploy.models import create_model
from sbdeploy.models.resnet_cifar import CifarResNet
from sbdeploy.models.resnet_imagenet import ResNet
from sbdeploy.nn.blocks import SBBasicBlock, SBBottleneck, SBPreActBottleneck, SBPyramidBasicBlock
from sbdeploy.nn.deploy import deploy_form
from sbdeploy.nn.phase import PhaseRun
from sbdeploy.nn.sb import TRAINING_FORM, SpatialBottleneck, reference_mode
from tests.export.families import randomize_bn

STACKED_AT = 1 << 18  # the threshold these tests give deploy_form (the table's own lives in sbdeploy.targets)


def _check(model: nn.Module, size: tuple[int, int], lowering: str = "subpixel", phase_runs: bool = True) -> nn.Module:
    model = randomize_bn(model).double().eval()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad(), reference_mode(model):
        ref = model(x)
    deployed = deploy_form(model, lowering=lowering, phase_runs=phase_runs, stacked_max_macs=STACKED_AT)
    runs = [m for m in deployed.modules() if isinstance(m, PhaseRun)]
    for layout in ("phases", "stacked") if any(r.stacked is not None for r in runs) else ("phases",):
        for run in runs:
            run.layout = layout if run.stacked is not None else "phases"
        with torch.no_grad():
            out = deployed(x)
        assert (out - ref).abs().max().item() < 1e-10 * max(1.0, ref.abs().max().item()), layout
    for run in runs:
        run.layout = "auto"
    return deployed


def _runs(model: nn.Module) -> list[PhaseRun]:
    return [m for m in model.modules() if isinstance(m, PhaseRun)]


def test_cifar_resnet20_sb_is_one_run_over_every_block() -> None:
    torch.manual_seed(0)
    deployed = _check(create_model("cifar_resnet20_sb"), (16, 16))
    (run,) = _runs(deployed)
    assert run.plan((16, 16)) == [True] * 9  # 16 -> 8 -> 4: every block on phases, stride-2 ones included
    assert all(sb.form == "subpixel" for sb in deployed.modules() if isinstance(sb, SpatialBottleneck))
    per_sb = _check(create_model("cifar_resnet20_sb"), (16, 16), lowering="strided", phase_runs=False)
    assert not _runs(per_sb) and {sb.form for sb in per_sb.modules() if isinstance(sb, SpatialBottleneck)} == {
        "strided"
    }


def test_a_run_leaves_phases_where_a_stage_would_be_odd() -> None:
    torch.manual_seed(0)
    (run,) = _runs(_check(create_model("cifar_resnet20_sb"), (12, 20)))  # stages 12x20, 6x10, 3x5
    assert run.plan((12, 20)) == [True] * 3 + [True] + [True] * 2 + [False] * 3


@pytest.mark.parametrize(
    ("size", "plan"),
    [
        ((40, 40), [True] * 2 + [False] * 6),  # stages 10, 5, 3, 2: the stride-2 block into 5x5 leaves phases
        ((64, 64), [True] * 8),  # stages 16, 8, 4, 2: all on phases, downsample shortcuts read phase (0, 0)
    ],
)
def test_resnet18_sb_is_one_run_across_stages(size: tuple[int, int], plan: list[bool]) -> None:
    torch.manual_seed(0)
    (run,) = _runs(_check(create_model("resnet18_sb", num_classes=10), size))
    assert run.plan((size[0] // 4, size[1] // 4)) == plan


def test_pyramidnet_runs_on_phases_and_its_pooling_shortcut_reads_the_four_phases() -> None:
    torch.manual_seed(0)
    (run,) = _runs(_check(create_model("cifar_pyramidnet110_a48_sb"), (16, 16)))
    assert len(run.blocks) == 54 and all(run.plan((16, 16))) and run.stacked is not None
    (odd,) = _runs(
        _check(
            nn.Sequential(
                nn.Conv2d(3, 16, 1), nn.Sequential(SBPyramidBasicBlock(16, 18), SBPyramidBasicBlock(18, 20, stride=2))
            ),
            (10, 6),
        )
    )
    assert odd.plan((10, 6)) == [False, False]  # 10x6 -> 5x3: the stride-2 block's output is odd


def test_bottleneck_blocks_at_odd_sizes_keep_the_per_sb_lowering() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 1), nn.Sequential(SBPreActBottleneck(16, 4), SBPreActBottleneck(16, 4, stride=2))
    )
    (run,) = _runs(_check(model, (9, 12)))
    assert run.plan((9, 12)) == [False, False] and run.stacked is None


@pytest.mark.parametrize(
    ("build", "size", "run_input"),
    [
        (
            lambda: CifarResNet(SBPreActBottleneck, 20),
            (16, 16),
            (16, 16),
        ),  # pre-activation, 1x1 shortcuts at stride 1 and 2
        (
            lambda: ResNet(SBBottleneck, (2, 1, 1, 1), num_classes=10),
            (64, 64),
            (16, 16),
        ),  # torchvision: 1x1 conv + BN downsample
    ],
    ids=["cifar_preact_bottleneck", "imagenet_bottleneck"],
)
def test_bottleneck_nets_run_on_phases(build, size: tuple[int, int], run_input: tuple[int, int]) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    deployed = _check(build(), size)
    (run,) = _runs(deployed)
    assert all(run.plan(run_input)) and len(run.blocks) == sum(
        isinstance(m, SpatialBottleneck) for m in deployed.modules()
    )


def test_every_bn_after_a_convolution_is_folded() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 1), nn.Sequential(SBBottleneck(16, 4, stride=2), SBBottleneck(16, 4), SBBasicBlock(16, 8, 2))
    )
    deployed = _check(model, (11, 12), lowering="strided", phase_runs=False)
    for sb in (m for m in deployed.modules() if isinstance(m, SpatialBottleneck)):
        assert sb.deconv.bias is not None  # the BN after the SB (bottleneck bn2, basic bn2)
        assert sb.mid is None or isinstance(sb.mid, nn.ReLU)  # the mid BN went into the SB conv ...
        assert (sb.conv.bias is not None) == isinstance(sb.mid, nn.ReLU)  # ... with its shift as the conv's bias
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())  # 1x1 convs' and projections' BNs too
    pre_activation = deploy_form(create_model("cifar_resnet20_sb").eval(), lowering="grouped")
    kept = [m for m in pre_activation.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(kept) == 10  # BN1 of each of the 9 blocks (before a padded conv: cannot fold) and the head's BN


def test_auto_layout_is_stacked_for_small_fixed_batches_only() -> None:
    model = create_model("cifar_resnet20_sb").eval()
    (run,) = _runs(deploy_form(model, lowering="subpixel", phase_runs=True, stacked_max_macs=STACKED_AT))
    assert run.stacked is not None and len(run.stacked) == 9
    assert run.layout_for(torch.zeros(1, 16, 32, 32)) == "stacked"  # 1 x 16 x 16 x 16 x 16 = 65k MACs per tap conv
    assert run.layout_for(torch.zeros(2, 16, 32, 32)) == "stacked"  # 131k
    assert run.layout_for(torch.zeros(4, 16, 32, 32)) == "phases"  # 262k: from there the exact taps win
    (never,) = _runs(deploy_form(model, lowering="subpixel", phase_runs=True))
    assert never.layout_for(torch.zeros(1, 16, 32, 32)) == "phases"  # no threshold: never stacked
    resnet = deploy_form(
        create_model("resnet18_sb").eval(), lowering="subpixel", phase_runs=True, stacked_max_macs=STACKED_AT
    )
    (big,) = _runs(resnet)
    assert big.layout_for(torch.zeros(1, 64, 56, 56)) == "phases"  # 28 x 28 x 64 x 64 = 3.2M
    bottlenecks = deploy_form(
        create_model("resnet50_sb").eval(), lowering="subpixel", phase_runs=True, stacked_max_macs=STACKED_AT
    )
    (run50,) = _runs(bottlenecks)
    assert run50.stacked is None and run50.layout_for(torch.zeros(1, 64, 8, 8)) == "phases"


def test_deploy_form_leaves_the_model_alone_and_refuses_unknown_lowerings() -> None:
    model = create_model("cifar_resnet20_sb").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deploy_form(model, lowering="subpixel", phase_runs=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and set(before) == set(
        model.state_dict()
    )
    assert not any(isinstance(m, PhaseRun) for m in model.modules())
    assert {sb.form for sb in model.modules() if isinstance(sb, SpatialBottleneck)} == {TRAINING_FORM}
    with pytest.raises(ConfigError, match="unknown SB lowering"):
        deploy_form(model, lowering="tpu")
    with pytest.raises(ConfigError, match="SB blocks that describe themselves"):
        PhaseRun([nn.Conv2d(3, 3, 1)])


@pytest.mark.parametrize(
    ("name", "stages", "size", "run_lengths"),
    [
        ("cifar_resnet20_sb", (2,), (16, 16), [3]),  # one run between dense stages
        ("cifar_resnet20_sb", (1, 3), (16, 16), [3, 3]),  # a dense stage splits the runs
        ("resnet18_sb", (2, 3), (64, 64), [4]),  # torchvision's stages merged into one Sequential, then grouped
    ],
)
def test_a_mixed_network_runs_its_sb_stages_on_phases_and_its_dense_blocks_as_they_are(
    name: str, stages: tuple[int, ...], size: tuple[int, int], run_lengths: list[int]
) -> None:
    torch.manual_seed(0)
    deployed = _check(create_model(name, num_classes=10, sb_stages=stages), size)
    assert [len(run.blocks) for run in _runs(deployed)] == run_lengths
