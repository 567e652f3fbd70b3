#!/usr/bin/env python
"""How ONNX Runtime CPU's convolution speed depends on the layout of small grids (issue 15's "what would close the rest").

Two questions, each answered by single graphs of random weights timed in one interleaved
group (:func:`sbdeploy.bench.timing.measure_group`, the product's method: rotating turns,
paired-turn 95% intervals, the machine's load beside):

1. **Wide rows** (``--case rows``): the same convolution on a batch of small grids and on
   one *canvas* that puts the batch side by side along the width (a zero column between
   images, so each image still sees its own zero padding; the inputs here are random
   throughout, gap columns included: the time does not depend on the values). ResNet-18's 7x7 stage at batch 8:
   the baseline's 3x3 conv (512 channels, 7x7 grids) and an SB tap conv (2x2 kernel, the 4x4
   phase grids of the 7x7 stage). Reported per *useful* multiply-accumulate (the canvas also
   computes its gap columns), with the canvas's speedup per useful MAC.
2. **Merged taps** (``--case taps``): the conv part of one chessboard parity on phase-split
   input, as the exact tap convs (four: 1x1, 1x2, 2x1, 2x2 over C channels, summed), as
   two convs over row pairs of phases (1x2 and 2x2 over 2C: 12 MAC slots per 9 useful), or
   as the stacked layout's one 2x2 conv over 4C (16 per 9), at CIFAR sizes.

    python scripts/bench_conv_layouts.py --threads 2 --budget 10 --out layouts.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sbdeploy.backends.ort import OrtRunner  # noqa: E402
from sbdeploy.bench.timing import Pair, TimingPlan, measure_group  # noqa: E402

Term = tuple[int, int, int]
"""(input channels, kernel rows, kernel columns) of one conv of a sum."""


def conv_sum(
    batch: int, out_channels: int, grid: tuple[int, int], terms: Sequence[Term], seed: int = 0
) -> onnx.ModelProto:
    """``Relu(sum of convs)``: each term a valid conv from its own input onto a ``grid`` output (ORT fuses the sums)."""
    rng = np.random.default_rng(seed)
    nodes, inits, inputs, acc = [], [], [], None
    for i, (cin, kh, kw) in enumerate(terms):
        inputs.append(
            helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [batch, cin, grid[0] + kh - 1, grid[1] + kw - 1])
        )
        inits.append(
            numpy_helper.from_array(
                (rng.standard_normal((out_channels, cin, kh, kw)) * 0.05).astype(np.float32), f"w{i}"
            )
        )
        nodes.append(helper.make_node("Conv", [f"x{i}", f"w{i}"], [f"c{i}"]))
        if acc is not None:
            nodes.append(helper.make_node("Add", [acc, f"c{i}"], [f"s{i}"]))
        acc = f"c{i}" if acc is None else f"s{i}"
    nodes.append(helper.make_node("Relu", [acc], ["y"]))
    graph = helper.make_graph(
        nodes, "conv_sum", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def macs(batch: int, out_channels: int, grid: tuple[int, int], terms: Sequence[Term]) -> int:
    return batch * out_channels * grid[0] * grid[1] * sum(c * kh * kw for c, kh, kw in terms)


def cases(name: str) -> list[dict]:
    """Groups to time: each ``{"title", "reference", "forms"}``, a form being (label, batch, out channels,
    output grid, terms, useful MACs) and ``reference`` the label the others' speedups are against."""
    if name == "rows":
        groups = []
        for what, kernel, grid, canvas in (
            ("3x3 conv, 512 ch, 7x7 grids (baseline 7x7 stage)", 3, (7, 7), (7, 8 * 8 - 1)),
            ("2x2 tap conv, 512 ch, 4x4 grids (SB 7x7 stage)", 2, (4, 4), (4, 8 * 5 - 1)),
        ):
            terms = [(512, kernel, kernel)]
            useful = macs(8, 512, grid, terms)
            groups.append(
                {
                    "title": what,
                    "reference": "batch 8",
                    "forms": [
                        ("batch 8", 8, 512, grid, terms, useful),
                        (f"canvas 1x{canvas[0]}x{canvas[1]}", 1, 512, canvas, terms, useful),
                    ],
                }
            )
        return groups
    groups = []
    for batch, channels, side in ((32, 16, 16), (32, 64, 4), (1, 16, 16), (1, 64, 4)):
        c, grid = channels, (side, side)
        exact = [(c, 1, 1), (c, 1, 2), (c, 2, 1), (c, 2, 2)]
        useful = macs(batch, c, grid, exact)
        groups.append(
            {
                "title": f"conv part of one parity, batch {batch}, {c} ch, {side}x{side} phases",
                "reference": "exact taps",
                "forms": [
                    ("exact taps", batch, c, grid, exact, useful),
                    ("row pairs", batch, c, grid, [(2 * c, 1, 2), (2 * c, 2, 2)], useful),
                    ("stacked", batch, c, grid, [(4 * c, 2, 2)], useful),
                ],
            }
        )
    return groups


def time_group(group: dict, threads: int, budget: float, workdir: Path) -> dict:
    rng = np.random.default_rng(1)
    with contextlib.ExitStack() as stack:
        fns, info = {}, {}
        for label, batch, out_channels, grid, terms, useful in group["forms"]:
            path = workdir / f"{len(fns)}.onnx"
            model = conv_sum(batch, out_channels, grid, terms)
            path.write_bytes(model.SerializeToString())
            feed = {
                i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
                for i in model.graph.input
            }
            fns[label] = stack.enter_context(OrtRunner(path, threads=threads)).timed_call(feed)
            info[label] = {"computed_macs": macs(batch, out_channels, grid, terms), "useful_macs": useful}
        ref = group["reference"]
        # speedup per useful MAC: every form does the same useful work, so the ratio of the medians
        pairs = [Pair(sb=label, baseline=ref, mac_ratio=1.0) for label in fns if label != ref]
        result = measure_group(fns, TimingPlan(warmup_iters=5, budget_s=budget), pairs=pairs)
    forms = []
    for label, stats in result.stats.items():
        speedup = result.speedups.get(label)
        forms.append(
            {
                "form": label,
                "median_ms": stats.median_ms,
                "cv": stats.cv,
                **info[label],
                "useful_gmac_s": info[label]["useful_macs"] / stats.median_ms / 1e6,
                "speedup": None if speedup is None else speedup.value,
                "speedup_ci95": None
                if speedup is None or speedup.interval is None
                else [speedup.interval.low, speedup.interval.high],
            }
        )
    return {
        "title": group["title"],
        "reference": ref,
        "forms": forms,
        "record": result.record.to_dict(),
        "loads": result.record.machine.loads(", "),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("rows", "taps", "all"), default="all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds of timed turns per group (adaptive: stops earlier on narrow intervals)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    names = ("rows", "taps") if args.case == "all" else (args.case,)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for group in cases(name):
                res = time_group(group, args.threads, args.budget, Path(tmp))
                results.append(res)
                m = res["record"]["machine"]
                others = "n/a" if m["others_cpu"] is None else f"{m['others_cpu']:.2f}"
                print(
                    f"\n{res['title']} ({args.threads} threads; {res['record']['rounds']} turns; load {res['loads']}, "
                    f"other processes {others} of {m['before']['cpus_available']} CPUs)"
                )
                print(
                    f"  {'form':24s} {'median ms':>10s} {'CV':>6s} {'useful GMAC/s':>14s} {'computed/useful':>16s} "
                    f"{'speedup vs ' + res['reference']:>24s}"
                )
                for f in res["forms"]:
                    ratio = "" if f["speedup"] is None else f"{f['speedup']:.2f}"
                    if f["speedup_ci95"]:
                        ratio += f" ({f['speedup_ci95'][0]:.2f}-{f['speedup_ci95'][1]:.2f})"
                    print(
                        f"  {f['form']:24s} {f['median_ms']:10.3f} {f['cv']:6.1%} {f['useful_gmac_s']:14.1f} "
                        f"{f['computed_macs'] / f['useful_macs']:16.2f} {ratio:>24s}"
                    )
    if args.out:
        tmp_out = args.out.with_name(args.out.name + f".tmp{os.getpid()}")
        tmp_out.write_text(json.dumps({"threads": args.threads, "groups": results}, indent=2))
        tmp_out.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
