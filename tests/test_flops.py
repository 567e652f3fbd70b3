"""MAC counting by the spec's rules, per block and per network."""

from __future__ import annotations

import json

import pytest

from sbdeploy.flops import count_macs, count_params
from sbdeploy.nn.blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    SBBasicBlock,
    SBBottleneck,
    SBPreActBasicBlock,
    SBPreActBottleneck,
)
from tests.conftest import run_cli

C = 16


@pytest.mark.parametrize(("base", "sb"), [(PreActBasicBlock, SBPreActBasicBlock), (BasicBlock, SBBasicBlock)])
def test_regular_block_halves_macs(base, sb) -> None:
    base_macs = count_macs(base(C, C), (8, 8), in_chans=C)
    sb_macs = count_macs(sb(C, C), (8, 8), in_chans=C)
    assert base_macs == 18 * C * C * 64
    assert sb_macs == 9 * C * C * 64
    assert count_params(sb(C, C)) == count_params(base(C, C))


@pytest.mark.parametrize(("base", "sb"), [(PreActBottleneck, SBPreActBottleneck), (Bottleneck, SBBottleneck)])
def test_bottleneck_block_saves_26_5_percent_with_equal_params(base, sb) -> None:
    base_block, sb_block = base(4 * C, C), sb(4 * C, C)
    base_macs = count_macs(base_block, (8, 8), in_chans=4 * C)
    sb_macs = count_macs(sb_block, (8, 8), in_chans=4 * C)
    assert base_macs == 17 * C * C * 64
    assert sb_macs == 12.5 * C * C * 64
    assert sb_macs / base_macs == pytest.approx(1 - 0.265, abs=1e-3)
    assert count_params(sb_block) == count_params(base_block)


def test_sampling_sets_scale_the_sb_cost() -> None:
    macs = {
        s: count_macs(SBPreActBasicBlock(C, C, sampling=s), (8, 8), in_chans=C)
        for s in ("single", "chessboard", "three", "dense")
    }
    assert [macs[s] / macs["dense"] for s in ("single", "chessboard", "three")] == [0.25, 0.5, 0.75]


def test_known_network_counts() -> None:
    from sbdeploy import create_model

    # torchvision documents 1.81 GFLOPs (MACs) for ResNet-18 and 4.09 for ResNet-50 at 224x224.
    assert count_macs(create_model("resnet18"), (224, 224)) == pytest.approx(1.814e9, rel=2e-3)
    assert count_macs(create_model("resnet50"), (224, 224)) == pytest.approx(4.089e9, rel=2e-3)
    assert count_params(create_model("resnet50")) == 25_557_032


def test_zoo_cli_json_reports_network_ratios() -> None:
    out = run_cli("zoo", "cifar_resnet56*", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"cifar_resnet56", "cifar_resnet56_sb"}
    sb = rows["cifar_resnet56_sb"]
    assert sb["baseline"] == "cifar_resnet56"
    assert 0.5 < sb["macs_vs_baseline"] < 0.52  # stem and classifier are unchanged
    assert sb["params"] == rows["cifar_resnet56"]["params"]


def test_zoo_cli_table_and_bad_pattern() -> None:
    ok = run_cli("zoo", "resnet18*")
    assert ok.returncode == 0 and "resnet18_sb" in ok.stdout and "0.540" in ok.stdout
    bad = run_cli("zoo", "nonexistent")
    assert bad.returncode == 2 and "no model matches" in bad.stderr and "Traceback" not in bad.stderr
