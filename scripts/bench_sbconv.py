"""Time one SBConv node against its baseline's dense 3x3 Conv nodes in ONNX Runtime (CPU), on the zoo's SB shapes.

A regular SB (cifar_resnet56/20 and the digits pair, resnet18) replaces conv, BN + ReLU, conv: its baseline is
two Conv nodes with a Relu between them. A linear SB (resnet50's bottlenecks, Cmid = C / 2) replaces one Conv,
followed by BN + ReLU in the network: its baseline is Conv + Relu, and the SBConv node applies the ReLU.
Both run with the product's timing method (:func:`sbdeploy.bench.timing.measure_group`: interleaved turns,
a bootstrap 95% interval of the speedup), intra-op spinning off. One line per shape: each median, the speedup
(baseline / SBConv) with its interval, each achieved MAC rate (MACs by :func:`sbdeploy.flops.count_macs`) and
their ratio (the issue's goal: SBConv's rate >= 0.9x the baseline's). ``--against LIB`` also times the
SBConv node with another build of the library (e.g. main's) in the same group and prints this build's speedup
over it. ``--precision fp32,bf16,int8`` also times the node in bf16 and int8 (attribute ``precision``; int8 with
scales fitting the data) in the same group and prints each one's speedup over fp32. Needs the kernel library
(``bash scripts/build_kernels.sh``).

    python scripts/bench_sbconv.py --families cifar --batches 1 8 --threads 1 2 --seconds 2
    python scripts/bench_sbconv.py --families resnet18 --batches 1 --against /tmp/libsbkernels-main.so
    python scripts/bench_sbconv.py --families cifar --batches 1 8 --precision fp32,bf16,int8
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sbdeploy.bench.stats import Interval
from sbdeploy.bench.timing import GroupResult, Pair, TimingPlan, measure_group
from sbdeploy.flops import count_macs
from sbdeploy.kernels import DOMAIN, library_path
from sbdeploy.nn.sampling import SAMPLINGS
from sbdeploy.nn.sb import SpatialBottleneck

# (cin, cmid, cout, size, stride) per family; linear SBs (no mid) replace one conv, regular ones two.
# The digits pair is cifar_resnet20: the cifar shapes.
FAMILIES = {
    "cifar": [(16, 16, 16, 32, 1), (16, 32, 32, 32, 2), (32, 32, 32, 16, 1), (32, 64, 64, 16, 2), (64, 64, 64, 8, 1)],
    "resnet18": [(64, 64, 64, 56, 1), (64, 128, 128, 56, 2), (128, 128, 128, 28, 1), (128, 256, 256, 28, 2)]
    + [(256, 256, 256, 14, 1), (256, 512, 512, 14, 2), (512, 512, 512, 7, 1)],
    "resnet50": [(64, 32, 64, 56, 1), (128, 64, 128, 56, 2), (128, 64, 128, 28, 1), (256, 128, 256, 28, 2)]
    + [(256, 128, 256, 14, 1), (512, 256, 512, 14, 2), (512, 256, 512, 7, 1)],
}
LINEAR = {"resnet50"}
BATCHES = {"cifar": (1, 8, 32), "resnet18": (1, 8), "resnet50": (1, 8)}


# int8's quantization for the timed nodes: inputs ~ N(0, 1), mid maps after ReLU (values do not change the time).
INT8 = {"x_scale": 8 / 255, "x_zero_point": 128, "m_scale": 4 / 255, "m_zero_point": 0}


def models(
    cin: int, cmid: int, cout: int, stride: int, linear: bool, sampling: str, precision: str = "fp32"
) -> tuple[bytes, bytes]:
    """The SBConv model (in ``precision``) and its baseline's, with the same random weights."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((cmid, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    w2 = (rng.standard_normal((cmid, cout, 3, 3)) / np.sqrt(9 * cmid)).astype(np.float32)
    b1, b2 = rng.standard_normal(cmid).astype(np.float32), rng.standard_normal(cout).astype(np.float32)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "y")]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    mid = {"relu": 1} if linear else {"mid_relu": 1}
    low = {"precision": precision} | (INT8 if precision == "int8" else {})
    sb = helper.make_node(
        "SBConv", ["x", "w1", "b1", "w2", "b2"], ["y"], domain=DOMAIN, stride=stride, sampling=sampling, **mid, **low
    )
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    sb_model = helper.make_model(helper.make_graph([sb], "sb", io[:1], io[1:], inits), opset_imports=opsets)
    conv = {"pads": [1, 1, 1, 1], "strides": [stride, stride]}
    if linear:
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
        nodes = [helper.make_node("Conv", ["x", "w", "b2"], ["h"], **conv), helper.make_node("Relu", ["h"], ["y"])]
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b2, "b2")]
    else:
        w = (rng.standard_normal((cout, cmid, 3, 3)) / np.sqrt(9 * cmid)).astype(np.float32)
        nodes = [
            helper.make_node("Conv", ["x", "w1", "b1"], ["h"], **conv),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Conv", ["r", "w", "b2"], ["y"], pads=[1, 1, 1, 1]),
        ]
        inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w, "w"), (b2, "b2"))]
    base = helper.make_model(helper.make_graph(nodes, "base", io[:1], io[1:], inits), opset_imports=opsets[:1])
    return sb_model.SerializeToString(), base.SerializeToString()


def session(model: bytes, threads: int, library: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.register_custom_ops_library(library or str(library_path()))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def macs(cin: int, cmid: int, cout: int, size: int, stride: int, linear: bool, sampling: str) -> tuple[int, int]:
    """(SB MACs, baseline MACs) of one image."""
    sb = count_macs(SpatialBottleneck(cin, cmid, cout, stride=stride, sampling=sampling), (size, size), in_chans=cin)
    out = (size - 1) // stride + 1
    return sb, out * out * 9 * (cin * cout if linear else cin * cmid + cmid * cout)


def interval(bounds: Interval | None) -> str:
    return f"({bounds.low:.2f}-{bounds.high:.2f})" if bounds else "(-)"


def against(result: GroupResult) -> str:
    """The other build's median and this build's speedup over it, when one was timed."""
    if "other" not in result.stats:
        return ""
    value, bounds = result.ratios[("other", "sb")]
    return f"  {result.stats['other'].median_ms * 1e3:8.1f}  {value:5.2f}x {interval(bounds)}"


def precisions(result: GroupResult, names: list[str]) -> str:
    """Each other precision's median and its speedup over fp32."""
    parts = []
    for name in names:
        value, bounds = result.ratios[("sb", f"sb_{name}")]
        parts.append(f"  {result.stats[f'sb_{name}'].median_ms * 1e3:8.1f}  {value:5.2f}x {interval(bounds):13s}")
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--batches", nargs="+", type=int, help="default: each family's (cifar 1 8 32, others 1 8)")
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per shape (both models)")
    parser.add_argument("--sampling", default="chessboard", choices=list(SAMPLINGS))
    parser.add_argument("--against", metavar="LIB", help="another build of the library, timed in the same groups")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32,bf16,int8 (fp32 is always timed)")
    args = parser.parse_args()
    low = [p for p in args.precision.split(",") if p != "fp32"]
    if set(low) - {"bf16", "int8"}:
        parser.error(f"--precision takes fp32, bf16 and int8, not {args.precision}")
    plan = TimingPlan(duration_s=args.seconds, turn=5)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"sampling {args.sampling}, {args.seconds:g} s per shape, load {load} at start")
    other = "  other us  vs other (95%)" if args.against else ""
    other += "".join(f"  {p:>5s} us  vs fp32 (95%)   " for p in low)
    print(
        f"shape                          b  thr   SBConv us     base us  speedup (95%)         SB GMAC/s  base  rate{other}"
    )
    for family in args.families:
        linear = family in LINEAR
        for (cin, cmid, cout, size, stride), threads in itertools.product(FAMILIES[family], args.threads):
            sb_model, base_model = models(cin, cmid, cout, stride, linear, args.sampling)
            sessions = {"sb": session(sb_model, threads), "base": session(base_model, threads)}
            if args.against:
                sessions["other"] = session(sb_model, threads, args.against)
            for p in low:
                sessions[f"sb_{p}"] = session(models(cin, cmid, cout, stride, linear, args.sampling, p)[0], threads)
            sb_macs, base_macs = macs(cin, cmid, cout, size, stride, linear, args.sampling)
            for batch in args.batches or BATCHES[family]:
                x = {"x": np.random.default_rng(1).standard_normal((batch, cin, size, size)).astype(np.float32)}
                fns = {name: lambda s=s: s.run(None, x) and None for name, s in sessions.items()}
                ratios = ([("other", "sb")] if args.against else []) + [("sb", f"sb_{p}") for p in low]
                result = measure_group(fns, plan, pairs=[Pair("sb", "base", sb_macs / base_macs)], ratios=ratios)
                sb_s, base_s = (result.stats[k].median_ms / 1e3 for k in ("sb", "base"))
                speedup = result.speedups["sb"]
                sb_rate, base_rate = batch * sb_macs / sb_s / 1e9, batch * base_macs / base_s / 1e9
                name = f"{family} {cin}-{cmid}-{cout} @{size} s{stride}"
                print(
                    f"{name:30s} {batch:2d}  {threads:2d}  {sb_s * 1e6:10.1f}  {base_s * 1e6:10.1f}  "
                    f"{speedup.value:5.2f}x {interval(speedup.interval):13s}  {sb_rate:7.1f}  {base_rate:5.1f}  "
                    f"{sb_rate / base_rate:4.2f}{against(result)}{precisions(result, low)}",
                    flush=True,
                )
    with open("/proc/loadavg") as f:
        print(f"load {f.read().split()[0]} at end")


if __name__ == "__main__":
    main()
