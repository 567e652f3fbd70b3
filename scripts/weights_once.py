"""What storing each weight once costs: file size, ONNX Runtime session load time and latency, per form.

For each source and deploy target (and batch), the product's exporter writes the form twice:
with its weight views kept (:func:`sbdeploy.passes.constant_folding.fold_constants`, the
default: each weight stored once, the repeats and slices computed from it in the graph) and
with every weight view folded (``keep_weight_views=False``: one stored copy per use, as before).
Both must compute the same outputs on ONNX Runtime CPU. Then, on ONNX Runtime CPU:

* file size and the bytes of the initializers;
* session load time (``InferenceSession`` from the file, ORT's default optimizations, which
  fold the views), the two files' loads interleaved by the product's timing method
  (:func:`sbdeploy.bench.timing.measure_group`, one load per turn), medians with 95% intervals;
* latency, the two files interleaved as a pair (:func:`sbdeploy.bench.pair.bench_onnx_pair`):
  "speedup" = folded median / once median, with its 95% interval (1.0 inside: no difference).

    python scripts/weights_once.py --source models/digits_resnet20_sb --target grouped --target ort-cpu --batch 8
    python scripts/weights_once.py --source resnet18_sb --input-size 97x75 --sampling three --target grouped --batch 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def _export(src, target: str, batch: int | str, size: tuple[int, int], keep: bool, path: Path) -> Path:  # noqa: ANN001
    from sbdeploy import passes
    from sbdeploy.export.onnx_export import export_source
    from sbdeploy.passes import constant_folding

    folder = passes.PASSES["fold_constants"]
    passes.PASSES["fold_constants"] = lambda model: constant_folding.fold_constants(model, keep_weight_views=keep)
    try:
        export_source(src, {"fp32": path}, target=target, batch=batch, input_size=size)
    finally:
        passes.PASSES["fold_constants"] = folder
    return path


def _stored_bytes(path: Path) -> int:
    import onnx

    return sum(onnx.numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)


def _load_times(once: Path, folded: Path, threads: int, budget: float) -> dict[str, object]:
    import onnxruntime as ort

    from sbdeploy.bench.timing import TimingPlan, measure_group

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads

    def load(path: Path):  # noqa: ANN202
        def run() -> None:
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        return run

    plan = TimingPlan(warmup_iters=1, turn=1, settle=0, budget_s=budget, min_turns=10)
    result = measure_group({"once": load(once), "folded": load(folded)}, plan)
    return {
        name: {"median_ms": s.median_ms, "low_ms": s.median_low_ms, "high_ms": s.median_high_ms, "runs": s.runs}
        for name, s in result.stats.items()
    }


def _same_outputs(once: Path, folded: Path, batch: int) -> float:
    from sbdeploy.backends import get_runner

    with get_runner("ort-cpu", once) as a, get_runner("ort-cpu", folded) as b:
        spec = a.input_specs()[0]
        x = (
            np.random.default_rng(0)
            .standard_normal(tuple(batch if d is None else d for d in spec.shape))
            .astype(np.float32)
        )
        return float(
            np.max(np.abs(next(iter(a.infer({spec.name: x}).values())) - next(iter(b.infer({spec.name: x}).values()))))
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", required=True, help="checkpoint folder or zoo name")
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument(
        "--batch", type=int, default=1, help="batch of the timed runs (per-batch targets are exported at it)"
    )
    parser.add_argument("--input-size", default=None, help="HxW")
    parser.add_argument("--sampling", default=None, help="zoo names: the SB sampling set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of timed turns per measurement, at most")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    args = parser.parse_args()

    from sbdeploy.bench.pair import bench_onnx_pair
    from sbdeploy.bench.timing import TimingPlan
    from sbdeploy.flops import count_macs
    from sbdeploy.sources import resolve_source
    from sbdeploy.targets import get_target

    options = {"sampling": args.sampling} if args.sampling and not Path(args.source).is_dir() else None
    src = resolve_source(args.source, options=options)
    size = tuple(int(v) for v in args.input_size.split("x")) if args.input_size else src.config.input_size
    macs = count_macs(src.model, size, src.config.in_chans)
    weights = sum(t.numel() * t.element_size() for t in src.model.state_dict().values())
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.target:
            batch: int | str = args.batch if get_target(target).per_batch else "dynamic"
            once = _export(src, target, batch, size, True, Path(tmp) / f"{target}.once.onnx")
            folded = _export(src, target, batch, size, False, Path(tmp) / f"{target}.folded.onnx")
            diff = _same_outputs(once, folded, args.batch)
            loads = _load_times(once, folded, args.threads, args.budget)
            report = bench_onnx_pair(
                once,
                folded,
                sb_macs=macs,
                baseline_macs=macs,
                batch=args.batch,
                threads=args.threads,
                plan=TimingPlan(budget_s=args.budget),
            )
            rows = {r.model: r for r in report.rows}
            pair = rows[once.name]
            figures.append(
                {
                    "source": args.source,
                    "target": target,
                    "batch": args.batch,
                    "input_size": list(size),
                    "weights_bytes": weights,
                    "once": {
                        "file_bytes": once.stat().st_size,
                        "stored_bytes": _stored_bytes(once),
                        "latency_ms": rows[once.name].stats.median_ms,
                        "load": loads["once"],
                    },
                    "folded": {
                        "file_bytes": folded.stat().st_size,
                        "stored_bytes": _stored_bytes(folded),
                        "latency_ms": rows[folded.name].stats.median_ms,
                        "load": loads["folded"],
                    },
                    "max_abs_diff": diff,
                    "latency_ratio": pair.speedup,
                    "latency_ratio_interval": [pair.speedup_low, pair.speedup_high],
                    "flags": [f.reason for f in pair.flags],
                }
            )
    for f in figures:
        o, d = f["once"], f["folded"]
        print(
            f"{f['source']} {f['target']} b{f['batch']} {f['input_size'][0]}x{f['input_size'][1]}: weights {f['weights_bytes'] / 1e6:.2f} MB; "
            f"file {d['file_bytes'] / 1e6:.2f} MB folded -> {o['file_bytes'] / 1e6:.2f} MB once; "
            f"load {d['load']['median_ms']:.1f} ms ({d['load']['low_ms']:.1f}-{d['load']['high_ms']:.1f}) folded, "
            f"{o['load']['median_ms']:.1f} ms ({o['load']['low_ms']:.1f}-{o['load']['high_ms']:.1f}) once; "
            f"latency {d['latency_ms']:.3f} folded / {o['latency_ms']:.3f} once ms = {f['latency_ratio']:.3f} "
            f"({f['latency_ratio_interval'][0]:.3f}-{f['latency_ratio_interval'][1]:.3f}); max |diff| {f['max_abs_diff']:.2g}"
            + (f"; flags: {'; '.join(f['flags'])}" if f["flags"] else "")
        )
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
