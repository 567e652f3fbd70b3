"""Time one pre-activation residual block in each ort-cpu form against the baseline block (ONNX Runtime CPU, batch 1).

Each block is exported as ``sbdeploy export --target FORM --batch 1`` would write it; all files of one shape are
timed in one interleaved group (:func:`sbdeploy.bench.timing.measure_group`, idle threads not spinning), and the
script prints each form's median and its speedup over the baseline block with the 95% interval.

    python scripts/bench_block_forms.py [--threads 1] [--forms ort-cpu ort-cpu:gather] [--budget 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbdeploy.backends.ort import SessionSettings  # noqa: E402
from sbdeploy.bench.timing import Pair, TimingPlan, measure_group  # noqa: E402
from sbdeploy.export.onnx_export import export_module  # noqa: E402
from sbdeploy.flops import count_macs  # noqa: E402
from sbdeploy.nn.blocks import PreActBasicBlock, SBPreActBasicBlock  # noqa: E402

SHAPES = [(16, 32), (32, 16), (64, 8)]  # channels, H = W


def session(block: torch.nn.Module, channels: int, size: int, target: str, threads: int) -> ort.InferenceSession:
    proto, _ = export_module(block.eval(), in_chans=channels, input_size=(size, size), batch=1, target=target)
    options = SessionSettings(intra_op_threads=threads, spinning=False).session_options()
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--forms", nargs="+", default=["ort-cpu", "ort-cpu:gather"], help="ort-cpu target specs")
    parser.add_argument("--sampling", default="chessboard")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timing per shape")
    args = parser.parse_args()
    print(f"threads {args.threads}, sampling {args.sampling}, batch 1, {args.budget:g} s per shape")
    for channels, size in SHAPES:
        torch.manual_seed(0)
        base, sb = PreActBasicBlock(channels, channels), SBPreActBasicBlock(channels, channels, sampling=args.sampling)
        ratio = count_macs(sb, (size, size), channels) / count_macs(base, (size, size), channels)
        sessions = {"baseline": session(base, channels, size, "ort-cpu", args.threads)}
        sessions |= {form: session(sb, channels, size, form, args.threads) for form in args.forms}
        feed = {"input": np.random.default_rng(1).standard_normal((1, channels, size, size)).astype(np.float32)}
        fns = {name: (lambda s=s: s.run(None, feed) and None) for name, s in sessions.items()}
        plan = TimingPlan(warmup_iters=20, iters=100_000, duration_s=args.budget, turn=20)
        result = measure_group(fns, plan, pairs=[Pair(form, "baseline", ratio) for form in args.forms])
        cells = [f"baseline {result.stats['baseline'].median_ms * 1e3:6.1f} us"]
        for form in args.forms:
            speedup = result.speedups[form]
            low, high = (speedup.interval.low, speedup.interval.high) if speedup.interval else (np.nan, np.nan)
            cells.append(
                f"{form} {result.stats[form].median_ms * 1e3:6.1f} us {speedup.value:.2f}x ({low:.2f}-{high:.2f})"
            )
        print(f"C={channels:3d} @{size}x{size} (ideal {1 / ratio:.2f}x): " + ", ".join(cells))


if __name__ == "__main__":
    main()
