"""The fused SBConv operator (csrc/) in ONNX Runtime against the dense masked reference in float64.

Skipped when the library is not built, failed instead under ``SBDEPLOY_REQUIRE_KERNEL=1``. The
instruction set is forced per session through ``SBDEPLOY_KERNEL_ISA`` (read when a kernel is created).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from sbdeploy.flops import count_macs
from sbdeploy.kernels import DOMAIN, library_path
from sbdeploy.nn.lowering import sb_reference
from sbdeploy.nn.sampling import SAMPLINGS
from sbdeploy.nn.sb import SpatialBottleneck

# fp32 against float64: |diff| <= TOL * (1 + max |reference|); sums here have at most 9 * 176 terms.
TOL = 2e-5
LEVELS = ("scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16")  # SBDEPLOY_KERNEL_ISA's caps, lowest first
ISAS = LEVELS[:3]  # the fp32 paths (the levels above add native bf16 and int8 tiles)


def best_isa(lib: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("SBDEPLOY_KERNEL_ISA", raising=False)
    return lib.sbdeploy_kernel_isa().decode()


class Affine(torch.nn.Module):
    """The mid of a regular SB block after BN folding: per-channel affine, then ReLU."""

    def __init__(self, scale: np.ndarray, shift: np.ndarray) -> None:
        super().__init__()
        self.scale = torch.from_numpy(scale).double()[:, None, None]
        self.shift = torch.from_numpy(shift).double()[:, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x * self.scale + self.shift)


def make_case(cin=5, cmid=6, cout=7, *, bias=True, mid=False, pre=False, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    case = {
        "w1": (rng.standard_normal((cmid, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32),
        "w2": (rng.standard_normal((cmid, cout, 3, 3)) / np.sqrt(9 * cmid)).astype(np.float32),
        "b1": rng.standard_normal(cmid).astype(np.float32) if bias else None,
        "b2": rng.standard_normal(cout).astype(np.float32) if bias else None,
    }
    if mid:
        case["mid_scale"] = rng.uniform(0.5, 1.5, cmid).astype(np.float32)
        case["mid_shift"] = rng.uniform(-0.5, 0.5, cmid).astype(np.float32)
    if pre:  # a pre-activation on X: a BN no conv precedes, then ReLU
        case["in_scale"] = rng.uniform(0.5, 1.5, cin).astype(np.float32)
        case["in_shift"] = rng.uniform(-0.5, 0.5, cin).astype(np.float32)
    return case


def sbconv_model(case: dict, *, stride: int, sampling, residual: bool = False, relu: bool = False, **attrs) -> bytes:
    """A one-node ONNX model; ``case``'s arrays become initializers, ``attrs`` are passed as they are."""
    inits = [numpy_helper.from_array(case[k], k) for k in ("w1", "b1", "w2", "b2") if case.get(k) is not None]
    names = {init.name for init in inits}
    inputs = ["x", *(k if k in names else "" for k in ("w1", "b1", "w2", "b2"))]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)]
    if residual:
        inputs.append("r")
        graph_inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    for key in ("mid_scale", "mid_shift", "in_scale", "in_shift"):
        if key in case:
            attrs.setdefault(key, case[key].tolist())
    if "mid_scale" in case:
        attrs.setdefault("mid_relu", 1)
    if "in_scale" in case:
        attrs.setdefault("in_relu", 1)
    node = helper.make_node(
        "SBConv", inputs, ["y"], domain=DOMAIN, stride=stride, sampling=sampling, relu=int(relu), **attrs
    )
    graph = helper.make_graph(
        [node], "sbconv", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def session(lib: ctypes.CDLL, model: bytes, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.register_custom_ops_library(str(library_path()))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def reference(case: dict, x: np.ndarray, *, stride: int, sampling: str, r=None, relu=False) -> np.ndarray:
    def t(a):
        return None if a is None else torch.from_numpy(a).double()

    mid = Affine(case["mid_scale"], case["mid_shift"]) if "mid_scale" in case else None
    pre = Affine(case["in_scale"], case["in_shift"]) if "in_scale" in case else torch.nn.Identity()
    y = sb_reference(
        pre(t(x)),
        t(case["w1"]),
        t(case["w2"]),
        stride=stride,
        sampling=sampling,
        mid=mid,
        b1=t(case["b1"]),
        b2=t(case["b2"]),
    )
    if r is not None:
        y = y + t(r)
    return (torch.relu(y) if relu else y).numpy()


def check(lib, case, *, stride, sampling, batch, size, threads=1, residual=False, relu=False, attr=None) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, case["w1"].shape[1], *size)).astype(np.float32)
    out = [(s - 1) // stride + 1 for s in size]
    r = rng.standard_normal((batch, case["w2"].shape[1], *out)).astype(np.float32) if residual else None
    model = sbconv_model(case, stride=stride, sampling=attr or sampling, residual=residual, relu=relu)
    feeds = {"x": x} | ({"r": r} if residual else {})
    y = session(lib, model, threads).run(None, feeds)[0]
    ref = reference(case, x, stride=stride, sampling=sampling, r=r, relu=relu)
    assert y.shape == ref.shape
    err = np.abs(y - ref).max()
    assert err <= TOL * (1 + np.abs(ref).max()), f"max |diff| {err:.3g}"


@pytest.mark.parametrize("sampling", list(SAMPLINGS))
@pytest.mark.parametrize("stride", [1, 2])
def test_matches_reference(library, sampling, stride):
    check(library, make_case(), stride=stride, sampling=sampling, batch=1, size=(7, 6))


@pytest.mark.parametrize("isa", ISAS)
def test_each_instruction_set(library, monkeypatch, isa):
    if LEVELS.index(isa) > LEVELS.index(best_isa(library, monkeypatch)):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("SBDEPLOY_KERNEL_ISA", isa)
    # Cmid and Cout of 40 take the wide tiles of every path, and leave a part panel; Cin of 19 takes the
    # transposes' register blocks and their edges; a 34 x 30 output, the deconv's bands of rows (and a short one).
    case = make_case(cin=19, cmid=40, cout=40, mid=True, pre=True)
    check(library, case, stride=2, sampling="chessboard", batch=3, size=(67, 60), threads=2, residual=True, relu=True)
    assert library.sbdeploy_kernel_last_isa().decode() == isa
    # Weights past the L2 cache (1 MB) are worked through panel by panel, with the output copy a phase of its own.
    big = make_case(cin=176, cmid=176, cout=176, mid=True)
    check(library, big, stride=1, sampling="three", batch=2, size=(7, 6), threads=2, residual=True, relu=True)
    assert library.sbdeploy_kernel_last_isa().decode() == isa


def test_batch_runs_in_groups(library):
    """A batch whose buffers outgrow the cache runs a few images at a time (here 2 + 1 on the wide tiles)."""
    case = make_case(cin=3, cmid=40, cout=40, mid=True)
    check(library, case, stride=1, sampling="chessboard", batch=3, size=(32, 40), threads=2, residual=True, relu=True)


def test_fused_mid_residual_relu_and_no_biases(library):
    check(library, make_case(mid=True), stride=1, sampling="three", batch=2, size=(5, 8), residual=True, relu=True)
    check(library, make_case(bias=False), stride=1, sampling="single", batch=1, size=(4, 4))
    check(library, make_case(pre=True), stride=2, sampling="chessboard", batch=2, size=(7, 6), threads=2, residual=True)


def test_sampling_as_parity_pairs(library):
    check(library, make_case(), stride=1, sampling="chessboard", batch=1, size=(6, 5), attr=[1, 1, 0, 0])


# The zoo's odd grids among them: 7x7 (resnet18/50's last stage), 14 -> 7 and 7 -> 4 at stride 2.
@pytest.mark.parametrize(
    ("size", "stride"), [((8, 8), 1), ((16, 12), 2), ((7, 7), 1), ((9, 5), 2), ((14, 14), 2), ((7, 7), 2)]
)
def test_mac_count_is_the_sb_rule(library, monkeypatch, size, stride):
    """Even output grids: the count is sbdeploy.flops' rule. Odd ones: the gather's border terms differ."""
    monkeypatch.setenv("SBDEPLOY_KERNEL_COUNT_MACS", "1")
    cin, cmid, cout = 3, 4, 5
    for sampling in SAMPLINGS:
        case = make_case(cin, cmid, cout)
        sess = session(library, sbconv_model(case, stride=stride, sampling=sampling))
        library.sbdeploy_kernel_reset_macs()
        sess.run(None, {"x": np.zeros((2, cin, *size), np.float32)})
        counted = library.sbdeploy_kernel_macs() / 2
        ho, wo = ((s - 1) // stride + 1 for s in size)
        sb = SpatialBottleneck(cin, cmid, cout, stride=stride, sampling=sampling)
        rule = count_macs(sb, size, in_chans=cin)
        if ho % 2 == 0 and wo % 2 == 0:
            assert counted == rule, sampling
        # Conv: 9 taps at each sampled position (the rule's count). Transposed conv: each output gathers
        # every lattice neighbour whose parity is sampled (a zero row when it lies off the grid).
        parities = SAMPLINGS[sampling]
        sampled = sum(1 for i in range(ho) for j in range(wo) if (i % 2, j % 2) in parities)
        gathered = sum(
            1
            for i, j, di, dj in itertools.product(range(ho), range(wo), (-1, 0, 1), (-1, 0, 1))
            if ((i + di) % 2, (j + dj) % 2) in parities
        )
        assert counted == sampled * 9 * cin * cmid + gathered * cmid * cout, sampling
        dense = ho * wo * 9 * (cin * cmid + cmid * cout)
        assert counted < dense or sampling == "dense"


def test_bad_attributes_are_refused_at_session_creation(library):
    case = make_case()
    bad = [
        ({"stride": 3, "sampling": "chessboard"}, "stride must be 1 or 2"),
        ({"stride": 1, "sampling": "diagonal"}, "unknown sampling 'diagonal'"),
        ({"stride": 1, "sampling": [0, 2]}, "parities must be 0 or 1"),
        ({"stride": 1, "sampling": [0, 0, 1]}, "parity pairs"),
        ({"stride": 1, "sampling": [1, 1, 1, 1]}, "twice"),
        ({"stride": 1, "sampling": "dense", "mid_scale": [1.0] * 6}, "come together"),
        ({"stride": 1, "sampling": "dense", "mid_scale": [1.0] * 5, "mid_shift": [0.0] * 5}, "Cmid=6"),
        ({"stride": 1, "sampling": "dense", "in_scale": [1.0] * 5}, "in_scale and in_shift come together"),
        ({"stride": 1, "sampling": "dense", "in_scale": [1.0] * 6, "in_shift": [0.0] * 6}, "Cin=5"),
    ]
    for attrs, message in bad:
        with pytest.raises(Exception, match=message):
            session(library, sbconv_model(case, **attrs))
    lying = dict(case, w2=np.zeros((4, 7, 3, 3), np.float32))
    with pytest.raises(Exception, match="disagree on Cmid"):
        session(library, sbconv_model(lying, stride=1, sampling="dense"))
    with pytest.raises(Exception, match=r"b2 must be \[Cout=7\]"):
        session(library, sbconv_model(dict(case, b2=np.zeros(3, np.float32)), stride=1, sampling="dense"))
    with pytest.raises(Exception, match=r"W1 must be \[Cmid, Cin, 3, 3\]"):
        session(library, sbconv_model(dict(case, w1=np.zeros((6, 5, 1, 1), np.float32)), stride=1, sampling="dense"))


def test_bad_input_shape_is_a_run_error(library):
    sess = session(library, sbconv_model(make_case(), stride=1, sampling="chessboard", residual=True))
    with pytest.raises(Exception, match=r"X must be \[N, Cin=5, H, W\]"):
        sess.run(None, {"x": np.zeros((1, 4, 6, 6), np.float32), "r": np.zeros((1, 7, 6, 6), np.float32)})
    with pytest.raises(Exception, match="R must be the output's shape"):
        sess.run(None, {"x": np.zeros((1, 5, 6, 6), np.float32), "r": np.zeros((1, 7, 5, 6), np.float32)})


def test_weights_must_be_constant(library):
    model = onnx.load_from_string(sbconv_model(make_case(), stride=1, sampling="dense"))
    model.graph.input.append(helper.make_tensor_value_info("w1", TensorProto.FLOAT, [6, 5, 3, 3]))
    del model.graph.initializer[0]
    with pytest.raises(Exception, match="W1 must be a constant initializer"):
        session(library, model.SerializeToString())


@pytest.mark.slow
@pytest.mark.parametrize("isa", ISAS)
def test_cross_product(library, monkeypatch, isa):
    """Every sampling set, stride, even and odd size, batch 1 and 3, threads 1 and 2, on one path."""
    if LEVELS.index(isa) > LEVELS.index(best_isa(library, monkeypatch)):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("SBDEPLOY_KERNEL_ISA", isa)
    for (cin, cmid, cout), mid in [((4, 16, 16), True), ((3, 33, 20), False)]:
        case = make_case(cin, cmid, cout, mid=mid)
        for sampling, stride, size, batch, threads in itertools.product(
            SAMPLINGS, (1, 2), ((8, 8), (7, 7), (6, 9), (1, 3)), (1, 3), (1, 2)
        ):
            check(library, case, stride=stride, sampling=sampling, batch=batch, size=size, threads=threads)


@pytest.mark.slow
def test_library_asking_a_newer_api_is_refused(library, tmp_path):
    """A build that asks ONNX Runtime for API version 99 fails registration with one clear status."""
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "libsbkernels.so"
    env = os.environ | {
        "PYTHON": sys.executable,
        "SBDEPLOY_KERNEL_CXXFLAGS": "-DSBK_API_VERSION=99",
        "SBDEPLOY_KERNEL_OUT": str(out),
        "SBDEPLOY_KERNEL_OBJ": str(tmp_path / "obj"),
    }
    build = subprocess.run(["bash", "scripts/build_kernels.sh"], cwd=repo, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    assert build.stdout.count("\n") == 1 and build.stdout.startswith("kernels: built")
    options = ort.SessionOptions()
    with pytest.raises(Exception, match=r"needs ONNX Runtime API version 99 \(onnxruntime 1.99 or newer\)"):
        options.register_custom_ops_library(str(out))
