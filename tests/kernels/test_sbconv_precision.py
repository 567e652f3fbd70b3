"""SBConv's bf16 and int8 (attribute ``precision``) against numpy references, on every instruction-set path.

int8: a numpy integer reference with the kernel's scales and rounding (u8 activations, per-channel s8 weights,
exact integer sums at the sampled positions, an fp32 rescale), compared bit for bit. bf16: the float64 reference
of the fp32 node, within an elementwise bound derived below (:func:`bf16_bound`). Each path forced by
``SBDEPLOY_KERNEL_ISA`` (native vdpbf16ps / vpdpbusd, and their exact fallbacks) gives the same numbers.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sbdeploy.nn.sampling import SAMPLINGS
from tests.kernels.test_sbconv import (
    LEVELS,
    best_isa,
    make_case,
    reference,
    sbconv_model,
    session,
)


def path_name(level: str, precision: str) -> str:
    """The tiles a cap gives a precision (``sbdeploy_kernel_last_isa``): native only at and above its extension."""
    native = {"int8": "avx512_vnni", "bf16": "avx512_bf16"}.get(precision)
    if LEVELS.index(level) <= LEVELS.index("avx512"):
        return level
    return native if native and LEVELS.index(level) >= LEVELS.index(native) else "avx512"


def levels_here(lib, monkeypatch) -> list[str]:
    return list(LEVELS[: LEVELS.index(best_isa(lib, monkeypatch)) + 1])


# ---- the references: the SB's two GEMMs as sums over the 9 taps, in float64 or int64 ----


def mask(ho: int, wo: int, sampling: str) -> np.ndarray:
    parities = SAMPLINGS[sampling]
    return np.array([[(i % 2, j % 2) in parities for j in range(wo)] for i in range(ho)])


def conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """3x3 conv, padding 1 (x already holds what the padding stands for: pass it padded with 0)."""
    n, _, h, wd = x.shape
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], ho, wo), np.result_type(x, w))
    for ti, tj in itertools.product(range(3), range(3)):
        patch = xp[:, :, ti : ti + stride * (ho - 1) + 1 : stride, tj : tj + stride * (wo - 1) + 1 : stride]
        out += np.einsum("nchw,mc->nmhw", patch, w[:, :, ti, tj])
    return out


def deconv(z: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """The transposed conv (stride 1, padding 1, W2 [Cmid, Cout, 3, 3]): output p gathers z[p + 1 - t] by tap t."""
    n, _, ho, wo = z.shape
    zp = np.pad(z, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w2.shape[1], ho, wo), np.result_type(z, w2))
    for ti, tj in itertools.product(range(3), range(3)):
        out += np.einsum("nmhw,mo->nohw", zp[:, :, 2 - ti : 2 - ti + ho, 2 - tj : 2 - tj + wo], w2[:, :, ti, tj])
    return out


def col(v) -> np.ndarray:
    return np.asarray(v)[:, None, None]


def prologue(case: dict, x: np.ndarray) -> np.ndarray:
    """The pre-activation in fp32 as the kernel applies it (a product, then a sum, each rounded)."""
    if "in_scale" not in case:
        return x
    return np.maximum(x * col(case["in_scale"]) + col(case["in_shift"]), np.float32(0))


def fma32(a: np.ndarray, b, c) -> np.ndarray:
    """a * b + c rounded once to fp32 (the float64 product of two floats is exact; the sum's double rounding is
    off only when it lands on an fp32 tie, never in these data)."""
    return (a.astype(np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


def quantize(v: np.ndarray, scale: float, zero: int) -> np.ndarray:
    return np.clip(np.rint(v / np.float32(scale)) + zero, 0, 255).astype(np.int64)


def weight_q(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel symmetric s8 along ``axis``: (w_q, scale), scale = max |w| / 127 (1 for a zero channel)."""
    others = tuple(a for a in range(4) if a != axis)
    most = np.abs(w).max(axis=others)
    scale = np.where(most > 0, most / np.float32(127), np.float32(1)).astype(np.float32)
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    return np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int64), scale


def zeros_if_none(a, n: int) -> np.ndarray:
    return np.zeros(n, np.float32) if a is None else a


def int8_reference(case, x, *, stride, sampling, q, r=None, relu=False, mid_relu=False) -> np.ndarray:
    """The int8 contract in numpy: integer sums of (u8 - zero point) x s8, fp32 rescales, the fp32 epilogue."""
    w1, w2 = case["w1"], case["w2"]
    cmid, cout = w1.shape[0], w2.shape[1]
    xq = quantize(prologue(case, x), q["x_scale"], q["x_zero_point"]) - q["x_zero_point"]
    w1q, s1 = weight_q(w1, 0)
    h = fma32(
        conv(xq, w1q, stride).astype(np.float32),
        col(np.float32(q["x_scale"]) * s1),
        col(zeros_if_none(case["b1"], cmid)),
    )
    if "mid_scale" in case:
        h = fma32(h, col(case["mid_scale"]), col(case["mid_shift"]))
    if mid_relu or "mid_scale" in case:
        h = np.maximum(h, np.float32(0))
    z = (quantize(h, q["m_scale"], q["m_zero_point"]) - q["m_zero_point"]) * mask(*h.shape[2:], sampling)
    w2q, s2 = weight_q(w2, 1)
    y = fma32(
        deconv(z, w2q).astype(np.float32), col(np.float32(q["m_scale"]) * s2), col(zeros_if_none(case["b2"], cout))
    )
    if r is not None:
        y = y + r
    return np.maximum(y, np.float32(0)) if relu else y


def float_parts(case, x, *, stride, sampling, mid_relu=False) -> tuple[np.ndarray, np.ndarray]:
    """(the sampled mid map, the output before R) of the fp32 node in float64, and its |.| sums for the bound."""
    x64 = prologue(case, x).astype(np.float64)
    cmid = case["w1"].shape[0]
    ms = case.get("mid_scale", np.ones(cmid, np.float32)).astype(np.float64)
    mh = case.get("mid_shift", np.zeros(cmid, np.float32)).astype(np.float64)
    h = conv(x64, case["w1"].astype(np.float64), stride) + col(zeros_if_none(case["b1"], cmid))
    h = h * col(ms) + col(mh)
    if mid_relu or "mid_scale" in case:
        h = np.maximum(h, 0)
    return h * mask(*h.shape[2:], sampling), x64


def bf16_bound(case, x, z, x64, *, stride, sampling) -> np.ndarray:
    """An elementwise bound on |bf16 output - exact output|.

    bf16 keeps 8 significant bits: rounding is off by at most u = 2^-9 relatively, so a product of two rounded
    values by 2u + u^2; fp32 sums of n terms add n 2^-24 of their |.| sum. The conv (n1 = 9 Cin + 1 terms, W1
    scaled by the mid affine in fp32 first) is off by e1 <= (2u + 2^-16 + n1 2^-24) S1, S1 = conv(|x|, |W1 ms|) +
    |ms b1| + |mh| (ReLU does not widen it); rounding the mid map to bf16 adds u (|z| + e1): dz. The deconv (n2 =
    9 Cmid + 1 terms) is then off by (1 + u) deconv(dz, |W2|) + u deconv(|z|, |W2|) + n2 2^-24 (1 + u)
    (deconv(|z| + dz, |W2|) + |b2|), and adding R and its rounding 2^-23 |y| (ReLU again does not widen it).
    """
    u = 2.0**-9
    cin, cmid = case["w1"].shape[1], case["w1"].shape[0]
    ms = np.abs(case.get("mid_scale", np.ones(cmid, np.float32))).astype(np.float64)
    mh = np.abs(case.get("mid_shift", np.zeros(cmid, np.float32))).astype(np.float64)
    b1 = np.abs(zeros_if_none(case["b1"], cmid)).astype(np.float64)
    s1 = conv(np.abs(x64), np.abs(case["w1"].astype(np.float64)) * ms[:, None, None, None], stride) + col(ms * b1 + mh)
    e1 = (2 * u + 2.0**-16 + (9 * cin + 1) * 2.0**-24) * s1
    dz = (e1 + u * (np.abs(z) + e1)) * mask(*z.shape[2:], sampling)
    w2 = np.abs(case["w2"].astype(np.float64))
    b2 = np.abs(zeros_if_none(case["b2"], w2.shape[1])).astype(np.float64)
    n2 = 9 * cmid + 1
    return (
        (1 + u) * deconv(dz, w2)
        + u * deconv(np.abs(z), w2)
        + n2 * 2.0**-24 * (1 + u) * (deconv(np.abs(z) + dz, w2) + col(b2))
    )


def affine_q(lo: float, hi: float) -> tuple[float, int]:
    """u8 scale and zero point covering [lo, hi] (and 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-6) / 255
    return float(np.float32(scale)), int(np.clip(round(-lo / scale), 0, 255))


def int8_attrs(case, x, *, stride, sampling, mid_relu) -> dict:
    """Scales from the data, the mid's range cut to 0.8x so that some values saturate."""
    z, x64 = float_parts(case, x, stride=stride, sampling=sampling, mid_relu=mid_relu)
    xs, xz = affine_q(x64.min(), x64.max())
    ms, mz = affine_q(0.8 * z.min(), 0.8 * z.max())
    return {"x_scale": xs, "x_zero_point": xz, "m_scale": ms, "m_zero_point": mz}


def run_case(
    lib, case, precision, *, stride, sampling, batch, size, threads=1, residual=False, relu=False, mid_relu=False
) -> np.ndarray:
    """Runs the node in `precision` and checks it against its reference; returns the output."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, case["w1"].shape[1], *size)).astype(np.float32)
    out = [(s - 1) // stride + 1 for s in size]
    r = rng.standard_normal((batch, case["w2"].shape[1], *out)).astype(np.float32) if residual else None
    attrs = {"precision": precision} | ({"mid_relu": 1} if mid_relu else {})
    if precision == "int8":
        q = int8_attrs(case, x, stride=stride, sampling=sampling, mid_relu=mid_relu)
        attrs |= q
    model = sbconv_model(case, stride=stride, sampling=sampling, residual=residual, relu=relu, **attrs)
    y = session(lib, model, threads).run(None, {"x": x} | ({"r": r} if residual else {}))[0]
    if precision == "int8":
        ref = int8_reference(case, x, stride=stride, sampling=sampling, q=q, r=r, relu=relu, mid_relu=mid_relu)
        assert y.shape == ref.shape
        np.testing.assert_array_equal(y, ref)
    else:
        z, x64 = float_parts(case, x, stride=stride, sampling=sampling, mid_relu=mid_relu)
        exact = deconv(z, case["w2"].astype(np.float64)) + col(zeros_if_none(case["b2"], case["w2"].shape[1]))
        if r is not None:
            exact = exact + r
        exact = np.maximum(exact, 0) if relu else exact
        bound = bf16_bound(case, x, z, x64, stride=stride, sampling=sampling) + 2.0**-23 * np.abs(exact)
        assert y.shape == exact.shape
        excess = np.abs(y - exact) - bound
        assert excess.max() <= 0, f"bf16 off its bound by {excess.max():.3g}"
        assert np.abs(y - exact).max() > 0  # bf16 does round: this is not the fp32 path
    return y


def test_references_agree_with_the_dense_masked_form():
    """The tap sums above (float64, no quantization) are the SB of sbdeploy.nn.lowering.sb_reference."""
    rng = np.random.default_rng(2)
    for sampling, stride, mid in itertools.product(SAMPLINGS, (1, 2), (False, True)):
        case = make_case(mid=mid, pre=True)
        x = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
        z, _ = float_parts(case, x, stride=stride, sampling=sampling)
        y = deconv(z, case["w2"].astype(np.float64)) + col(case["b2"])
        ref = reference(case, x, stride=stride, sampling=sampling)
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


# One configuration per block family; together they take every sampling set, stride 1 and 2, odd and even sizes,
# batch 1 to 3 and 1 or 2 threads.
FAMILIES = {
    "plain": (dict(), dict(sampling="single", stride=1, size=(7, 6), batch=1)),
    "mid affine + relu": (dict(mid=True), dict(sampling="chessboard", stride=2, size=(9, 8), batch=2, threads=2)),
    "exported (mid relu only)": (dict(), dict(sampling="chessboard", stride=1, size=(8, 8), batch=2, mid_relu=True)),
    "pre-activation": (dict(pre=True), dict(sampling="three", stride=1, size=(6, 6), batch=2, mid_relu=True)),
    "residual + relu": (
        dict(mid=True),
        dict(sampling="dense", stride=2, size=(7, 7), batch=3, threads=2, residual=True, relu=True),
    ),
    "no biases": (dict(bias=False), dict(sampling="chessboard", stride=1, size=(5, 8), batch=1, mid_relu=True)),
    # A batch whose buffers outgrow the cache runs an image at a time (the output alone is past 1 MB).
    "batch in groups": (
        dict(cin=3, cmid=40, cout=40, mid=True),
        dict(sampling="chessboard", stride=1, size=(48, 64), batch=3, threads=2, residual=True, relu=True),
    ),
}


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_matches_reference(library, precision, family):
    build, run = FAMILIES[family]
    case = make_case(**build)
    if family == "no biases":
        case["w1"][0] = 0  # a zero channel: weight scale 1
    run_case(library, case, precision, **run)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_every_path_gives_the_same_numbers(library, monkeypatch, precision):
    """Each cap's path (native extension, AVX-512 without it, AVX2, scalar) matches the reference and the others."""
    # Cmid and Cout of 40 take the wide tiles and leave a part panel; Cin of 19 pads to whole words; a 34 x 30
    # output takes the deconv's bands; Cin = Cmid = 176 puts the weights past the L2 cache (panel by panel).
    wide = make_case(cin=19, cmid=40, cout=40, mid=True, pre=True)
    big = make_case(cin=176, cmid=176, cout=176, mid=True)
    outputs = {}
    for level in levels_here(library, monkeypatch):
        monkeypatch.setenv("SBDEPLOY_KERNEL_ISA", level)
        a = run_case(
            library,
            wide,
            precision,
            stride=2,
            sampling="chessboard",
            batch=2,
            size=(67, 60),
            threads=2,
            residual=True,
            relu=True,
        )
        assert library.sbdeploy_kernel_last_isa().decode() == path_name(level, precision)
        b = run_case(
            library,
            big,
            precision,
            stride=1,
            sampling="three",
            batch=2,
            size=(7, 6),
            threads=2,
            residual=True,
            relu=True,
        )
        outputs[level] = (a, b)
    first = next(iter(outputs.values()))
    for level, (a, b) in outputs.items():
        np.testing.assert_array_equal(a, first[0], err_msg=level)
        np.testing.assert_array_equal(b, first[1], err_msg=level)


def test_int8_quantizes_as_a_division_at_the_ties(library, monkeypatch):
    """Inputs at and one ulp around each half step of x_scale: the kernel's quotient and its rounding (half to
    even, by adding and subtracting 1.5 * 2^23) are numpy's division and rint on every path."""
    scale = np.float32(0.1)
    halves = (np.arange(-140, 140, dtype=np.float32) + np.float32(0.5)) * scale
    x = np.concatenate([halves, np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf)])
    x = np.resize(x, (2, 5, 9, 10)).astype(np.float32)
    case = make_case()
    q = {"x_scale": float(scale), "x_zero_point": 120, "m_scale": 0.01, "m_zero_point": 100}
    ref = int8_reference(case, x, stride=1, sampling="dense", q=q)
    for level in levels_here(library, monkeypatch):
        monkeypatch.setenv("SBDEPLOY_KERNEL_ISA", level)
        model = sbconv_model(case, stride=1, sampling="dense", precision="int8", **q)
        np.testing.assert_array_equal(session(library, model).run(None, {"x": x})[0], ref, err_msg=level)


def test_mac_count_is_the_same_in_every_precision(library, monkeypatch):
    """bf16 pairs and int8 quads pad the channels; the count is of the node's MACs, as in fp32."""
    monkeypatch.setenv("SBDEPLOY_KERNEL_COUNT_MACS", "1")
    case = make_case(cin=5, cmid=6, cout=7)
    x = np.zeros((2, 5, 7, 6), np.float32)
    counts = {}
    for precision in ("fp32", "bf16", "int8"):
        q = {"x_scale": 0.1, "x_zero_point": 128, "m_scale": 0.1, "m_zero_point": 0} if precision == "int8" else {}
        sess = session(library, sbconv_model(case, stride=1, sampling="three", precision=precision, **q))
        library.sbdeploy_kernel_reset_macs()
        sess.run(None, {"x": x})
        counts[precision] = library.sbdeploy_kernel_macs()
    assert counts["fp32"] > 0 and counts["bf16"] == counts["fp32"] == counts["int8"]


def test_fp32_names_its_path(library, monkeypatch):
    for level in levels_here(library, monkeypatch):
        monkeypatch.setenv("SBDEPLOY_KERNEL_ISA", level)
        session(library, sbconv_model(make_case(), stride=1, sampling="chessboard"))
        assert library.sbdeploy_kernel_last_isa().decode() == path_name(level, "fp32")


def test_bad_precision_attributes_are_refused(library):
    case = make_case()
    good = {"x_scale": 0.1, "x_zero_point": 128, "m_scale": 0.05, "m_zero_point": 0}
    bad = [
        ({"precision": "fp16"}, "precision must be fp32, bf16 or int8, not 'fp16'"),
        ({"precision": "int8"}, "precision int8 needs x_scale, x_zero_point, m_scale and m_zero_point"),
        ({"precision": "int8", **good, "m_scale": 0.0}, "m_scale must be a positive finite number"),
        ({"precision": "int8", **good, "x_scale": float("inf")}, "x_scale must be a positive finite number"),
        ({"precision": "int8", **good, "x_scale": -1.0}, "x_scale must be a positive finite number"),
        ({"precision": "int8", **good, "x_zero_point": 256}, "x_zero_point must be in 0..255, got 256"),
        ({"precision": "int8", **good, "m_zero_point": -1}, "m_zero_point must be in 0..255"),
        ({"precision": "bf16", "x_scale": 0.1}, "for precision int8 only, not bf16"),
        ({"m_zero_point": 3}, "for precision int8 only, not fp32"),
    ]
    for attrs, message in bad:
        with pytest.raises(Exception, match=message):
            session(library, sbconv_model(case, stride=1, sampling="chessboard", **attrs))
    wide = dict(case, w1=np.zeros((6, 7400, 3, 3), np.float32))  # 9 x 7400 x 255 x 127 is past 2^31
    with pytest.raises(Exception, match="int8 takes at most 7367 input channels a GEMM"):
        session(library, sbconv_model(wide, stride=1, sampling="chessboard", precision="int8", **good))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_cross_product(library, monkeypatch, precision):
    """Every path, block family, sampling set, stride, odd and even size, batch 1 and 3, 1 and 2 threads."""
    for level in levels_here(library, monkeypatch):
        monkeypatch.setenv("SBDEPLOY_KERNEL_ISA", level)
        for build, extra in [
            (dict(cin=4, cmid=16, cout=16, mid=True), {}),
            (dict(cin=3, cmid=33, cout=20, pre=True), dict(mid_relu=True, residual=True, relu=True)),
            (dict(cin=16, cmid=32, cout=32, bias=False), dict(mid_relu=True)),
        ]:
            case = make_case(**build)
            for sampling, stride, size, batch, threads in itertools.product(
                SAMPLINGS, (1, 2), ((8, 8), (7, 7), (6, 9), (1, 3)), (1, 3), (1, 2)
            ):
                run_case(
                    library,
                    case,
                    precision,
                    stride=stride,
                    sampling=sampling,
                    batch=batch,
                    size=size,
                    threads=threads,
                    **extra,
                )
