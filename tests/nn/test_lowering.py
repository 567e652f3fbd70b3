"""Every form in the SB lowering registry equals the dense masked reference (float64, 1e-10).

Covers, in torch: every registered form (``LOWERINGS``) for every sampling set, stride 1
and 2, linear and with the BN-ReLU ``mid``, with and without the biases a folded BN puts
on the conv and the deconv, at sizes from 1x1 and 2x3 to odd/even mixes; the grouped
form really grouping; the gather form's index tables reading each sampled neighbour once; the registry refusing duplicates and unknown names; the deploy
forms refusing a training-mode BN. Blocks and whole networks: ``test_blocks.py``,
``test_deploy.py`` and ``tests/test_targets.py``; the ONNX side in ``tests/export``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sbdeploy.errors import ConfigError
from sbdeploy.nn.blocks import bn_relu
from sbdeploy.nn.lowering import LOWERINGS, gather_plan, get_lowering, register_lowering, sb_grouped
from sbdeploy.nn.sampling import SAMPLINGS, sampling_mask
from sbdeploy.nn.sb import SpatialBottleneck
from sbdeploy.nn.taps import conv_taps, deconv_taps
from tests.conftest import cross
from tests.nn.test_sb import randomize_bn

TOL = 1e-10
SIZES = [(1, 1), (2, 3), (3, 2), (4, 1), (4, 4), (5, 6), (7, 9), (8, 8)]
FORMS = [name for name in LOWERINGS if name != "reference"]


def test_the_registry_holds_every_form() -> None:
    assert set(LOWERINGS) == {"reference", "separate", "grouped", "subpixel", "strided", "masked", "fused", "gather"}


@pytest.mark.parametrize(
    ("form", "sampling", "stride", "with_mid", "with_bias"),
    cross(FORMS, list(SAMPLINGS), [1, 2], {"linear": False, "bn_relu": True}, {"no_bias": False, "bias": True}),
)
def test_form_equals_reference(form: str, sampling: str, stride: int, with_mid: bool, with_bias: bool) -> None:
    torch.manual_seed(0)
    sb = SpatialBottleneck(3, 5, 4, stride=stride, sampling=sampling, mid=bn_relu(5) if with_mid else None)
    randomize_bn(sb)
    if with_bias:
        sb.conv.bias, sb.deconv.bias = nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(4))
    sb = sb.double().eval()
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        with torch.no_grad():
            ref, out = sb.run("reference", x), sb.run(form, x)
        assert out.shape == ref.shape == (2, 4, (h - 1) // stride + 1, (w - 1) // stride + 1)
        assert torch.allclose(out, ref, atol=TOL, rtol=0), f"{form} {h}x{w}: {(out - ref).abs().max()}"


def test_grouped_really_groups() -> None:
    """The grouped form calls conv2d/conv_transpose2d once each with groups = subgroups present."""
    calls = []
    conv, deconv = torch.nn.functional.conv2d, torch.nn.functional.conv_transpose2d

    def spy(fn, kind):  # noqa: ANN001, ANN202
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls.append((kind, kwargs.get("groups", 1)))
            return fn(*args, **kwargs)

        return wrapped

    sb = SpatialBottleneck(2, 3, 2, sampling="three").double().eval()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    torch.nn.functional.conv2d, torch.nn.functional.conv_transpose2d = spy(conv, "conv"), spy(deconv, "deconv")
    try:
        sb_grouped(x, sb.conv.weight, sb.deconv.weight, stride=1, sampling="three")
        sb_grouped(x[:, :, :1, :1], sb.conv.weight, sb.deconv.weight, stride=1, sampling="three")
    finally:
        torch.nn.functional.conv2d, torch.nn.functional.conv_transpose2d = conv, deconv
    # 6x5 grid: all three subgroups; 1x1 grid: only (0, 0) exists
    assert calls == [("conv", 3), ("deconv", 3), ("conv", 1), ("deconv", 1)]


def test_taps_cover_each_kernel_index_once() -> None:
    # every W2 / W1 index reaches each (output parity, subgroup parity) pair exactly once overall
    for a in (0, 1):
        assert sorted(k for r in (0, 1) for _, k in deconv_taps(r, a)) == [0, 1, 2]
        assert sorted(d for p in (0, 1) for _, d in conv_taps(p, a)) == [0, 1, 2]


def test_registry_refuses_duplicates_and_names_the_choices() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_lowering("grouped")(sb_grouped)
    with pytest.raises(ConfigError, match="did you mean grouped.*choose one of reference, separate"):
        get_lowering("groupd")
    with pytest.raises(ConfigError, match="unknown SB lowering"):
        SpatialBottleneck(2, 2, 2).form = "magic"


@pytest.mark.parametrize("form", ["grouped", "subpixel", "strided", "masked", "gather"])
def test_deploy_forms_refuse_training_mode_bn(form: str) -> None:
    sb = SpatialBottleneck(2, 3, 2, mid=bn_relu(3)).train()
    with pytest.raises(ConfigError, match="eval"):
        sb.run(form, torch.randn(1, 2, 4, 4))


@pytest.mark.parametrize("sampling", list(SAMPLINGS))
def test_gather_tables_read_each_sampled_neighbour_once(sampling: str) -> None:
    """On a 6x5 grid (stride 1) and a 9x8 input (stride 2, a 5x4 grid), as the definition says: the conv reads each
    sampled position's 3x3 input neighbours, the deconv gives each output its sampled neighbours q through W2's tap
    p - q + 1, each once, and every output is made once (the zero row only stands for what lies outside)."""
    for (height, width), stride in (((6, 5), 1), ((9, 8), 2)):
        plan = gather_plan(height, width, stride, sampling)
        out_h, out_w = plan.out_size
        mask = sampling_mask(out_h, out_w, sampling)
        sampled = [(i, j) for i in range(out_h) for j in range(out_w) if mask[i, j]]
        assert len(plan.conv) == len(sampled) and len(plan.conv_taps) == 9
        for (i, j), reads in zip(sampled, plan.conv):
            want = [
                (stride * i + t // 3 - 1) * width + stride * j + t % 3 - 1
                if 0 <= stride * i + t // 3 - 1 < height and 0 <= stride * j + t % 3 - 1 < width
                else height * width
                for t in plan.conv_taps
            ]
            assert reads.tolist() == want
        order = np.arange(out_h * out_w) if plan.unpermute is None else np.argsort(plan.unpermute)
        rows = [(table_row, taps) for table, taps in plan.deconv for table_row in table]
        assert sorted(order.tolist()) == list(range(out_h * out_w)) and len(rows) == len(order)
        for p, (table_row, taps) in zip(order.tolist(), rows):
            pi, pj = divmod(p, out_w)
            got = {(sampled[r], tap) for r, tap in zip(table_row.tolist(), taps) if r != len(sampled)}
            want = {
                ((qi, qj), (pi - qi + 1, pj - qj + 1)) for qi, qj in sampled if max(abs(pi - qi), abs(pj - qj)) <= 1
            }
            assert got == want, (p, got, want)
