"""Time one SBConv node against the baseline block's two dense 3x3 Conv nodes in ONNX Runtime (CPU).

Both models are one regular residual block's convolutions (conv, bias + ReLU, conv) at batch 1; runs are
interleaved, intra-op spinning is off, and the script prints medians, the baseline/SB ratio and the
achieved MAC rates. Needs the kernel library (``bash scripts/build_kernels.sh``).

    python scripts/bench_sbconv.py [--threads 1] [--runs 300] [--sampling chessboard]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sbdeploy.kernels import DOMAIN, library_path
from sbdeploy.nn.sampling import SAMPLINGS, sampled_positions

SHAPES = [(16, 32), (32, 16), (64, 8)]  # channels, H = W


def models(channels: int, sampling: str) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((channels, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32)
    w2 = (rng.standard_normal((channels, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32)
    b1, b2 = rng.standard_normal((2, channels)).astype(np.float32)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "y")]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    sb = helper.make_node(
        "SBConv",
        ["x", "w1", "", "w2", "b2"],
        ["y"],
        domain=DOMAIN,
        sampling=sampling,
        mid_relu=1,
        mid_scale=[1.0] * channels,
        mid_shift=b1.tolist(),
    )
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b2, "b2"))]
    sb_model = helper.make_model(helper.make_graph([sb], "sb", io[:1], io[1:], inits), opset_imports=opsets)
    # The baseline's second conv is the transposed conv's dense twin: same MACs, same weights' count.
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    base = helper.make_model(helper.make_graph(nodes, "base", io[:1], io[1:], inits), opset_imports=opsets[:1])
    return sb_model.SerializeToString(), base.SerializeToString()


def session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.register_custom_ops_library(str(library_path()))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--sampling", default="chessboard", choices=list(SAMPLINGS))
    args = parser.parse_args()
    print(f"threads {args.threads}, {args.runs} interleaved runs, sampling {args.sampling}, batch 1")
    for channels, size in SHAPES:
        sb, base = (session(m, args.threads) for m in models(channels, args.sampling))
        x = {"x": np.random.default_rng(1).standard_normal((1, channels, size, size)).astype(np.float32)}
        times: dict[str, list[float]] = {"sb": [], "base": []}
        for i in range(args.runs + 20):
            for name, sess in (("sb", sb), ("base", base)) if i % 2 else (("base", base), ("sb", sb)):
                start = time.perf_counter()
                sess.run(None, x)
                if i >= 20:
                    times[name].append(time.perf_counter() - start)
        sb_s, base_s = (statistics.median(times[k]) for k in ("sb", "base"))
        base_macs = 2 * size * size * 9 * channels * channels
        sb_macs = 2 * sampled_positions(size, size, args.sampling) * 9 * channels * channels
        print(
            f"C={channels:3d} @{size}x{size}: SBConv {sb_s * 1e6:7.1f} us ({sb_macs / sb_s / 1e9:5.1f} GMAC/s), "
            f"2 Conv {base_s * 1e6:7.1f} us ({base_macs / base_s / 1e9:5.1f} GMAC/s), "
            f"ratio {base_s / sb_s:.2f}x (ideal {base_macs / sb_macs:.2f}x)"
        )


if __name__ == "__main__":
    main()
