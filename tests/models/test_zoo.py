"""Every registered network builds and runs; the registry refuses bad names and options."""

from __future__ import annotations

import pytest
import torch

import sbdeploy
from sbdeploy.errors import ConfigError, UnknownModelError
from sbdeploy.flops import count_macs
from sbdeploy.models import model_info
from sbdeploy.models._registry import register_model
from sbdeploy.nn.blocks import block_stages

ALL = sbdeploy.list_models()


@pytest.mark.parametrize("name", ALL)
def test_forward_small_input(name: str) -> None:
    torch.manual_seed(0)
    info = model_info(name)
    model = sbdeploy.create_model(name, num_classes=7).eval()
    size = 32 if info.family == "cifar" else 64
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_zoo_is_complete() -> None:
    expected = {f"cifar_resnet{d}" for d in (20, 32, 44, 56, 110, 164)} | {f"resnet{d}" for d in (18, 34, 50, 101)}
    expected |= {"cifar_pyramidnet110_a48", "cifar_pyramidnet164_a48_bottleneck"}
    assert expected | {f"{n}_sb" for n in expected} == set(ALL)
    for name in ALL:
        info = model_info(name)
        assert info.is_sb == name.endswith("_sb")
        if info.is_sb:
            assert info.baseline == name[: -len("_sb")] and "sampling" in info.options


@pytest.mark.parametrize("sampling", ["single", "three", "dense", "sb2"])
def test_sampling_is_an_option_of_sb_models(sampling: str) -> None:
    model = sbdeploy.create_model("cifar_resnet20_sb", sampling=sampling)
    sbs = [m for m in model.modules() if isinstance(m, sbdeploy.SpatialBottleneck)]
    assert len(sbs) == 9 and {m.sampling for m in sbs} == {sbdeploy.nn.resolve_sampling(sampling)}


def test_in_chans_option() -> None:
    model = sbdeploy.create_model("cifar_resnet20", in_chans=1, num_classes=3).eval()
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 3)


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="cifar_resnet56"):
        sbdeploy.create_model("cifar_resnet65")
    with pytest.raises(ValueError):
        sbdeploy.create_model("totally_unknown")


def test_unknown_option_is_refused() -> None:
    with pytest.raises(UnknownModelError, match="num_classes"):
        sbdeploy.create_model("resnet18", num_clases=10)
    with pytest.raises(UnknownModelError, match="sampling"):
        sbdeploy.create_model("resnet18", sampling="chessboard")


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_model("cifar")(sbdeploy.models.model_info("cifar_resnet20").builder)


@pytest.mark.parametrize("name", ["cifar_resnet20_sb", "resnet18_sb", "cifar_pyramidnet110_a48_sb", "resnet50_sb"])
def test_sb_stages_place_the_sb_blocks_and_count_their_macs(name: str) -> None:
    info = model_info(name)
    size = info.input_size if info.family == "cifar" else (64, 64)

    def macs(**options: object) -> int:
        return count_macs(sbdeploy.create_model(name, **options), size)

    everywhere, baseline = macs(), count_macs(sbdeploy.create_model(info.baseline), size)
    assert macs(sb_stages=None) == everywhere and macs(sb_stages=()) == baseline  # the paper's network, the baseline's
    saved = {s: baseline - macs(sb_stages=(s,)) for s in range(1, info.stages + 1)}
    assert all(v > 0 for v in saved.values()) and sum(saved.values()) == baseline - everywhere  # stage by stage
    model = sbdeploy.create_model(name, sb_stages=[2])
    sbs = {n for n, m in model.named_modules() if hasattr(m, "describe")}
    assert sbs == {n for n, s in block_stages(model).items() if s == 2}


def test_sb_stages_are_refused_where_they_do_not_fit() -> None:
    with pytest.raises(ConfigError, match="distinct stage numbers 1..3, got \\[4\\]"):
        sbdeploy.create_model("cifar_resnet20_sb", sb_stages=(4,))
    with pytest.raises(ConfigError, match="distinct stage numbers 1..4, got \\[2, 2\\]"):
        sbdeploy.create_model("resnet18_sb", sb_stages=(2, 2))
    with pytest.raises(UnknownModelError, match="takes no option sb_stages"):
        sbdeploy.create_model("cifar_resnet20", sb_stages=(1,))
