"""Measured speedup of SB networks over their baselines, next to the MAC ratio.

For each (baseline, SB) pair and batch size: export both to ONNX (the SB network through
its deploy form for ``--target``, :func:`sbdeploy.nn.phase.deploy_form`), run them on
ONNX Runtime CPU with ``--threads`` intra-op threads, *interleaved* (base, SB, SB, base,
...) so that load from other processes hits both alike, and report medians (and minima)
of many runs. Also PyTorch eager (baseline vs the SB training form and vs the deploy
form) and, where CUDA is present, PyTorch CUDA fp32/fp16. Prints a table of latency,
realized speedup, MAC ratio and speedup efficiency (= speedup / MAC ratio), writes JSON,
and with ``--profile`` adds onnxruntime's per-op-type time for both graphs.

    python scripts/bench_speedup.py --out bench.json
    python scripts/bench_speedup.py --pairs cifar_resnet56 --batches 1 --reps 200 --profile

The export step is pluggable (``--exporter torchscript|sbdeploy``): ``sbdeploy`` uses
``sbdeploy.export.export_module`` when that package is present.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbdeploy.flops import count_macs  # noqa: E402
from sbdeploy.models import create_model, model_info  # noqa: E402
from sbdeploy.nn.phase import deploy_form  # noqa: E402
from sbdeploy.passes.pad_fusion import fuse_pads  # noqa: E402

PAIRS = {
    "cifar_resnet56": ((1, 32), (32, 32)),
    "resnet18": ((1, 8), (224, 224)),
    "resnet50": ((1, 8), (224, 224)),
}
"""Baseline name -> (default batch sizes, input size)."""


def _randomize_bn(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so BN folding is exercised (timing does not depend on them)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def export_torchscript(model: torch.nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    """TorchScript exporter, static shapes, opset 17."""
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (example,), buf, input_names=["input"], output_names=["logits"],
                          opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def export_sbdeploy(model: torch.nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    """The project's exporter (``sbdeploy.export``), static batch."""
    from sbdeploy.export import export_module  # type: ignore[attr-defined]

    proto, _ = export_module(model, in_chans=example.shape[1], input_size=tuple(example.shape[2:]),
                             batch=example.shape[0], lowering="separate", passes=())
    return proto


EXPORTERS: dict[str, Callable[[torch.nn.Module, torch.Tensor], onnx.ModelProto]] = {
    "torchscript": export_torchscript,
    "sbdeploy": export_sbdeploy,
}


def prepare_onnx(proto: onnx.ModelProto, workdir: Path, name: str) -> bytes:
    """Constant-fold with ORT's basic (hardware-independent) level, then fold Pads into Convs."""
    src, folded = workdir / f"{name}.onnx", workdir / f"{name}.basic.onnx"
    src.write_bytes(proto.SerializeToString())
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    fused, _ = fuse_pads(onnx.load(str(folded)))
    return fused.SerializeToString()


def ort_session(model_bytes: bytes, threads: int, profile_prefix: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def interleaved(fns: dict[str, Callable[[], object]], reps: int, budget_s: float) -> dict[str, list[float]]:
    """Run every fn ``reps`` times, alternating the order each round; seconds per run."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    keys = list(fns)
    start = time.perf_counter()
    for rep in range(reps):
        for key in keys if rep % 2 == 0 else reversed(keys):
            t0 = time.perf_counter()
            fns[key]()
            times[key].append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and rep >= 4:
            break
    return times


def op_profile(model_bytes: bytes, feed: dict[str, np.ndarray], threads: int, runs: int, workdir: Path) -> dict[str, dict[str, float]]:
    """onnxruntime profiler: ms per run and count per run of each op type."""
    sess = ort_session(model_bytes, threads, str(workdir / "profile"))
    for _ in range(runs):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    total: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            total[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
    return {op: {"ms_per_run": us / runs / 1e3, "nodes": count[op] // runs} for op, us in total.most_common()}


def summarize(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "runs": len(times)}


def bench_pair(base_name: str, batch: int, args: argparse.Namespace, workdir: Path) -> list[dict]:
    sb_name = f"{base_name}_sb"
    size = PAIRS[base_name][1] if base_name in PAIRS else model_info(base_name).input_size
    torch.manual_seed(0)
    base = create_model(base_name).eval()
    sb = create_model(sb_name, sampling=args.sampling).eval()
    for m in (base, sb):
        _randomize_bn(m)
    deployed = deploy_form(sb, args.target)
    mac_ratio = count_macs(base, size) / count_macs(sb, size)
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        err = (deployed(x) - sb(x)).abs().max().item()
    rows = []
    export = EXPORTERS[args.exporter]
    base_bytes = prepare_onnx(export(base, x), workdir, "base")
    sb_bytes = prepare_onnx(export(deployed, x), workdir, "sb")
    feed = {"input": x.numpy()}
    sessions = {"base": ort_session(base_bytes, args.threads), "sb": ort_session(sb_bytes, args.threads)}
    with torch.no_grad():
        ort_err = float(np.abs(sessions["sb"].run(None, feed)[0] - sb(x).numpy()).max())
    times = interleaved({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, args.reps, args.budget)
    row = {"pair": base_name, "batch": batch, "backend": f"ort-cpu-{args.threads}t", "mac_ratio": mac_ratio,
           "base": summarize(times["base"]), "sb": summarize(times["sb"]),
           "max_abs_err_ort_vs_torch": ort_err, "max_abs_err_deploy_vs_train_form": err}
    rows.append(row)
    if args.profile:
        runs = max(3, min(20, args.reps // 10))
        row["profile"] = {k: op_profile(b, feed, args.threads, runs, workdir) for k, b in (("base", base_bytes), ("sb", sb_bytes))}
    if args.torch:
        torch.set_num_threads(args.threads)
        with torch.no_grad():
            fns = {"base": lambda: base(x), "sb_train_form": lambda: sb(x), "sb_deploy_form": lambda: deployed(x)}
            t = interleaved(fns, max(5, args.reps // 4), args.budget)
        for form in ("sb_train_form", "sb_deploy_form"):
            rows.append({"pair": base_name, "batch": batch, "backend": f"torch-eager-cpu-{args.threads}t ({form})",
                         "mac_ratio": mac_ratio, "base": summarize(t["base"]), "sb": summarize(t[form])})
    if torch.cuda.is_available():
        rows.extend(_bench_cuda(base, sb, x, base_name, batch, mac_ratio, args))
    return rows


def _bench_cuda(base, sb, x, base_name, batch, mac_ratio, args) -> list[dict]:
    rows = []
    gpu_form = deploy_form(sb, "ort-cuda")
    for dtype in (torch.float32, torch.float16):
        b, s, xx = base.cuda().to(dtype), gpu_form.cuda().to(dtype), x.cuda().to(dtype)

        def run(m):
            m(xx)
            torch.cuda.synchronize()

        with torch.no_grad():
            t = interleaved({"base": lambda: run(b), "sb": lambda: run(s)}, args.reps, args.budget)
        rows.append({"pair": base_name, "batch": batch, "backend": f"torch-cuda-{str(dtype).split('.')[-1]}",
                     "mac_ratio": mac_ratio, "base": summarize(t["base"]), "sb": summarize(t["sb"])})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), help="baseline names (the SB twin is NAME_sb)")
    parser.add_argument("--batches", nargs="+", type=int, help="batch sizes (default per pair: 1 and 32 for CIFAR, 1 and 8 else)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=100, help="interleaved rounds (at most; see --budget)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timing per (pair, batch, backend)")
    parser.add_argument("--target", default="ort-cpu", choices=["ort-cpu", "ort-cuda", "trt"])
    parser.add_argument("--sampling", default="chessboard")
    parser.add_argument("--exporter", default="torchscript", choices=list(EXPORTERS))
    parser.add_argument("--no-torch", dest="torch", action="store_false", help="skip PyTorch eager timings")
    parser.add_argument("--profile", action="store_true", help="add onnxruntime per-op-type profiles")
    parser.add_argument("--out", type=Path, default=Path("bench_speedup.json"))
    args = parser.parse_args(argv)

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            for batch in args.batches or PAIRS.get(pair, ((1,),))[0]:
                rows.extend(bench_pair(pair, batch, args, Path(tmp)))
                _print_rows(rows[-1:] if not args.torch else [r for r in rows if r["pair"] == pair and r["batch"] == batch])
    report = {"command": " ".join([os.path.basename(sys.argv[0]), *(argv if argv is not None else sys.argv[1:])]),
              "onnxruntime": ort.__version__, "torch": torch.__version__, "cpu_count": os.cpu_count(),
              "loadavg_at_end": os.getloadavg(), "target": args.target, "rows": rows}
    tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=1))
    tmp_out.replace(args.out)
    print()
    _print_rows(rows, header=True)
    for row in rows:
        if "profile" in row:
            _print_profile(row)
    return 0


def _print_rows(rows: list[dict], header: bool = True) -> None:
    if header:
        print(f"{'pair':16s} {'batch':>5s} {'backend':40s} {'base ms':>9s} {'sb ms':>9s} {'speedup':>8s} "
              f"{'MAC ratio':>9s} {'effic.':>7s} {'speedup(min)':>12s}")
    for r in rows:
        speed = r["base"]["median_ms"] / r["sb"]["median_ms"]
        speed_min = r["base"]["min_ms"] / r["sb"]["min_ms"]
        print(f"{r['pair']:16s} {r['batch']:5d} {r['backend']:40s} {r['base']['median_ms']:9.2f} {r['sb']['median_ms']:9.2f} "
              f"{speed:8.2f} {r['mac_ratio']:9.2f} {speed / r['mac_ratio']:7.2f} {speed_min:12.2f}", flush=True)


def _print_profile(row: dict) -> None:
    print(f"\nonnxruntime op profile, {row['pair']} batch {row['batch']} (ms per run, nodes per run)")
    ops = sorted(set(row["profile"]["base"]) | set(row["profile"]["sb"]),
                 key=lambda op: -row["profile"]["sb"].get(op, {}).get("ms_per_run", 0))
    print(f"  {'op':24s} {'base ms':>9s} {'n':>5s} {'sb ms':>9s} {'n':>5s}")
    for op in ops:
        b = row["profile"]["base"].get(op, {"ms_per_run": 0.0, "nodes": 0})
        s = row["profile"]["sb"].get(op, {"ms_per_run": 0.0, "nodes": 0})
        print(f"  {op:24s} {b['ms_per_run']:9.3f} {b['nodes']:5d} {s['ms_per_run']:9.3f} {s['nodes']:5d}")


if __name__ == "__main__":
    raise SystemExit(main())
