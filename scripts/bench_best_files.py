"""The fastest file of each network, as a user compares them: every engine and precision in one interleaved group.

For the shipped digits pair at one batch: the baseline and the SB network as ONNX Runtime fp32 (the rule's form,
fused where the kernel library is built) and int8 (the ort-cpu QDQ recipe, calibrated on the digits images), and
as OpenVINO fp32 and bf16 (the ov-cpu form; bf16 where the CPU plugin reports it). All timed in one group by the
product's timing method (interleaved turns, ONNX Runtime's spinning off so that no idle session's worker takes
another's cores), each file checked against PyTorch first (top-1 agreement on 64 images). Prints each file's
median with its 95% interval and the SB's best file over the baseline's best file.

    python scripts/bench_best_files.py --batch 1 --budget 30
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbdeploy.backends import get_runner  # noqa: E402
from sbdeploy.backends.ort import OrtRunner, SessionSettings  # noqa: E402
from sbdeploy.bench.timing import Pair, TimingPlan, measure_group  # noqa: E402
from sbdeploy.calibration import load_calibration  # noqa: E402
from sbdeploy.export.onnx_export import export_source  # noqa: E402
from sbdeploy.sources import resolve_source  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAIR = {"baseline": REPO / "models/digits_resnet20", "sb": REPO / "models/digits_resnet20_sb"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=30.0)
    args = parser.parse_args()
    x = np.random.default_rng(0).random((args.batch, 1, 32, 32), dtype=np.float32)
    feed = {"input": x}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        runners = {}
        for name, folder in PAIR.items():
            src = resolve_source(folder)
            calibration = load_calibration("digits", src.config, limit=64)
            paths = {p: Path(tmp) / f"{name}.ort.{p}.onnx" for p in ("fp32", "int8")}
            export_source(src, paths, target="ort-cpu", batch=args.batch, calibration=calibration)
            ov = Path(tmp) / f"{name}.ov.fp32.onnx"
            export_source(src, {"fp32": ov}, target="ov-cpu", batch=args.batch)
            settings = SessionSettings(intra_op_threads=args.threads, threads=args.threads, spinning=False)
            for precision, path in paths.items():
                runners[f"{name} ort-cpu {precision}"] = stack.enter_context(OrtRunner(path, session=settings))
            for precision in ("fp32", "bf16"):
                try:
                    runner = get_runner("ov-cpu", ov, threads=args.threads, precision=precision)
                    runners[f"{name} ov-cpu {precision}"] = stack.enter_context(runner)
                except Exception as error:  # a precision this CPU lacks: said, not timed
                    print(f"{name} ov-cpu {precision}: not timed ({error})")
            with torch.no_grad():
                expected = src.model(torch.from_numpy(x)).numpy().argmax(1)
            for key in [k for k in runners if k.startswith(name)]:
                agree = float((runners[key].infer(feed)["logits"].argmax(1) == expected).mean())
                print(f"{key}: top-1 agreement with PyTorch {agree:.0%} on this batch")
        plan = TimingPlan(warmup_iters=5, duration_s=args.budget, turn=10)
        base_keys = [k for k in runners if k.startswith("baseline")]
        pairs = [Pair(sb=k, baseline=base_keys[0], mac_ratio=1.0) for k in runners if k != base_keys[0]]
        result = measure_group({k: r.timed_call(feed) for k, r in runners.items()}, plan, pairs=pairs)
    for key, stats in result.stats.items():
        print(f"{key:28s} {stats.median_ms:8.3f} ms ({stats.median_low_ms:.3f}-{stats.median_high_ms:.3f})")
    best = {
        side: min((k for k in result.stats if k.startswith(side)), key=lambda k: result.stats[k].median_ms)
        for side in ("baseline", "sb")
    }
    ratio = result.stats[best["baseline"]].median_ms / result.stats[best["sb"]].median_ms
    print(f"best files: SB {best['sb']} vs baseline {best['baseline']}: {ratio:.2f}x (ratio of medians)")
    print(f"machine: {result.record.machine.to_dict()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
