"""Is timing across engines fair? One file and its byte copy on ONNX Runtime and on OpenVINO, all four interleaved.

The bench interleaves ONNX Runtime and OpenVINO sessions in its "fastest files" groups. On 2 cores an idle ONNX
Runtime worker spins for ~50 ms after its session's run and takes a core from whatever is timed next. This times
the shipped digits SB file (ort-cpu form, with spinning, as deployed) and the ov-cpu file, each beside its byte
copy, in one group, twice: with the bench's fair plan (each turn opens with untimed runs for the longest idle spin
of the group, :func:`sbdeploy.bench.timing.fair_plan`) and without it. Prints each A/A ratio with its 95% interval
(it should hold 1.0), each median beside the file's latency alone (the same session timed back to back for a
second, as one deployed process sees it) and the machine's load.

    python scripts/bench_engines_aa.py --batch 1 --budget 20
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbdeploy.backends import get_runner  # noqa: E402
from sbdeploy.bench.timing import Pair, TimingPlan, fair_plan, measure_group  # noqa: E402
from sbdeploy.export.onnx_export import export_source  # noqa: E402
from sbdeploy.sources import resolve_source  # noqa: E402

SB = Path(__file__).resolve().parents[1] / "models/digits_resnet20_sb"


def alone_ms(fn, seconds: float = 1.0) -> float:  # noqa: ANN001
    """The median of one callable timed back to back (after 0.2 s for the others' workers to sleep)."""
    time.sleep(0.2)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=20.0)
    args = parser.parse_args()
    source = resolve_source(SB)
    feed = {"input": np.random.default_rng(0).random((args.batch, 1, 32, 32), dtype=np.float32)}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        runners = {}
        for backend in ("ort-cpu", "ov-cpu"):
            path = Path(tmp) / f"sb.{backend}.onnx"
            export_source(source, {"fp32": path}, target=backend, batch=args.batch)
            shutil.copyfile(path, copy := path.with_suffix(".copy.onnx"))
            for name, file in ((backend, path), (f"{backend} copy", copy)):
                runners[name] = stack.enter_context(get_runner(backend, file, threads=args.threads))
        fns = {name: r.timed_call(feed) for name, r in runners.items()}
        pairs = [Pair(sb=f"{b} copy", baseline=b, mac_ratio=1.0) for b in ("ort-cpu", "ov-cpu")]
        plain = TimingPlan(budget_s=args.budget, goal=0.01)
        for label, plan in (
            ("fair plan", fair_plan(plain, [r.idle_spin_s for r in runners.values()])),
            ("no settle", plain),
        ):
            result = measure_group(fns, plan, pairs=pairs)
            machine = result.record.machine
            print(
                f"{label} (settle {plan.settle_s * 1e3:.0f} ms, {result.record.rounds} rounds; load "
                f"{machine.loads()}, other processes {machine.others_cpu or 0:.2f} CPUs):"
            )
            for name, s in result.stats.items():
                print(f"  {name:16s} {s.median_ms:.3f} ms ({s.median_low_ms:.3f}-{s.median_high_ms:.3f})")
            for p, s in result.speedups.items():
                low, high = dataclasses.astuple(s.interval)[:2] if s.interval else (float("nan"),) * 2
                print(f"  A/A {p:12s} {s.value:.3f} ({low:.3f}-{high:.3f})")
        print("alone, back to back: " + ", ".join(f"{n} {alone_ms(fn):.3f} ms" for n, fn in fns.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
