"""Measured speedup of SB networks over their baselines, next to the MAC ratio.

For each (baseline, SB) pair and batch size: export both to ONNX with the product's
exporter (:func:`sbdeploy.export.export_module`, each network in the deploy form of
``--target``'s row of the target table, :mod:`sbdeploy.targets`, with the batch fixed, as
``sbdeploy export --target T --batch N`` writes it), run them on ONNX Runtime CPU
(:class:`sbdeploy.backends.ort.OrtRunner`) with ``--threads`` intra-op threads, timed
*interleaved* by the product's one timing method
(:func:`sbdeploy.bench.timing.measure_group`: turns of ``--turn`` runs whose order
rotates every round, so load from other processes hits both alike), and report medians
and minima. Also PyTorch
eager (baseline vs the SB training form and vs the deploy form) and, where CUDA is
present, PyTorch CUDA fp32/fp16 (``--cuda-only``: those rows alone, as scripts/gpu_check.sh
runs it). Prints a table of latency, realized speedup with its 95% interval, MAC ratio and
efficiency, writes JSON, and with ``--profile`` adds onnxruntime's per-op-type time for
both graphs. ``--int8`` adds a row of both networks quantized by the ORT CPU int8 recipe
(:data:`sbdeploy.passes.int8.ORT_CPU_INT8`), timed as a pair the same way; the report
names the CPU's int8 instructions (:func:`sbdeploy.environment.cpu_int8_support`).

With ``--tune`` each ort-cpu pair is also tuned as ``sbdeploy export --tune`` tunes it
(:func:`sbdeploy.tune.tune_export`: every candidate form and ONNX Runtime session setting
timed on this machine, for this batch and ``--threads``), baseline and SB alike, and the
four files (untuned and tuned, baseline and SB) are timed in one interleaved group: the
untuned row, the tuned row beside it, and the tuned SB against the untuned SB (never
below 1 beyond its interval). ``--profile`` then profiles the tuned files too, each with
its own session settings.

Every figure says how sure it is: each row carries the spread of both networks' runs
(std, CV, p90, p99, min) and the product's 95% intervals
(:func:`sbdeploy.bench.timing.measure_group`: a seeded bootstrap over the paired turns of
the interleaved schedule) of each median and of the speedup, the ratio of the medians.

Definitions (the same as ``sbdeploy bench``, :mod:`sbdeploy.bench.report`):
speedup = baseline median / SB median; MAC ratio = SB MACs / baseline MACs
(:func:`sbdeploy.flops.count_macs`); ideal speedup = 1 / MAC ratio; efficiency =
speedup x MAC ratio = speedup / ideal speedup.

    python scripts/bench_speedup.py --out bench.json
    python scripts/bench_speedup.py --pairs cifar_resnet56 --batches 1 --reps 200 --profile
    python scripts/bench_speedup.py --pairs cifar_resnet56 resnet18 resnet50 --batches 1 --no-torch --tune --profile
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbdeploy import kernels  # noqa: E402
from sbdeploy.backends.ort import OrtRunner, SessionSettings  # noqa: E402
from sbdeploy.bench.timing import GroupResult, Pair, TimingPlan, measure_group  # noqa: E402
from sbdeploy.environment import cpu_int8_support  # noqa: E402
from sbdeploy.export.onnx_export import export_module  # noqa: E402
from sbdeploy.flops import count_macs  # noqa: E402
from sbdeploy.models import create_model, model_info  # noqa: E402
from sbdeploy.passes.int8 import ORT_CPU_INT8, quantize_int8  # noqa: E402
from sbdeploy.targets import TARGETS, get_target  # noqa: E402

PAIRS = {
    "cifar_resnet56": ((1, 32), (32, 32)),
    "resnet18": ((1, 8), (224, 224)),
    "resnet50": ((1, 8), (224, 224)),
    "digits": ((1, 8), (32, 32)),
}
"""Baseline name -> (default batch sizes, input size)."""

CHECKPOINTS = {"digits": ("models/digits_resnet20", "models/digits_resnet20_sb")}
"""Pairs that are the repository's shipped checkpoints (trained weights, their own input channels), not zoo names."""


def _randomize_bn(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so BN folding is exercised (timing does not depend on them)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def export(model: torch.nn.Module, batch: int, size: tuple[int, int], target: str, in_chans: int) -> onnx.ModelProto:
    """``sbdeploy export --target``: the target's (or variant's) deploy form and passes; static batch."""
    proto, _ = export_module(model, in_chans=in_chans, input_size=size, batch=batch, target=target)
    return proto


def load_pair(base_name: str, sampling: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The baseline and SB networks of a pair: a shipped checkpoint pair, or zoo networks with random BN statistics."""
    if base_name in CHECKPOINTS:
        from sbdeploy.sources import resolve_source

        repo = Path(__file__).resolve().parents[1]
        return tuple(resolve_source(repo / path).model.eval() for path in CHECKPOINTS[base_name])  # type: ignore[return-value]
    torch.manual_seed(0)
    base = create_model(base_name).eval()
    sb = create_model(f"{base_name}_sb", sampling=sampling).eval()
    for m in (base, sb):
        _randomize_bn(m)
    return base, sb


def sb_forms(args: argparse.Namespace) -> list[str]:
    """The SB's forms to time: ``--sb-forms``, else the target's own and, for ort-cpu, the fused (where the kernel
    library is built) and the portable gather form."""
    if args.sb_forms:
        return args.sb_forms
    if args.target != "ort-cpu":
        return [args.target]
    return ["ort-cpu", *(["ort-cpu:fused"] if kernels.is_built() else []), "ort-cpu:gather"]


def ort_session(
    path: Path, threads: int, profile_prefix: str, settings: SessionSettings | None = None
) -> ort.InferenceSession:
    """A profiling session with the settings of :class:`OrtRunner` (intra-op threads, full optimization; a tuned file's own)."""
    so = (settings or SessionSettings.default(threads)).session_options()
    so.enable_profiling = True
    so.profile_file_prefix = profile_prefix
    if kernels.uses_kernels(onnx.load(str(path), load_external_data=False)):  # the fused form: as OrtRunner does
        so.register_custom_ops_library(str(kernels.library_path()))
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def plan(args: argparse.Namespace, reps: int | None = None) -> TimingPlan:
    """At most ``reps`` timed runs each and at most ``--budget`` seconds (at least 5 runs), in turns of ``--turn``.

    Turns are shortened so that ``reps`` runs make at least 10 turns, and by the timing loop so
    that the 8 an interval needs fit in ``--budget`` at the runs' measured speed: the intervals
    resample turns, and fewer than :data:`~sbdeploy.bench.stats.MIN_ROUNDS_FOR_INTERVAL` give none.
    """
    iters = reps or args.reps
    return TimingPlan(
        warmup_iters=2, iters=iters, duration_s=args.budget, min_iters=5, turn=min(args.turn, max(1, iters // 10))
    )


def op_profile(
    path: Path,
    feed: dict[str, np.ndarray],
    threads: int,
    runs: int,
    workdir: Path,
    settings: SessionSettings | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """onnxruntime profiler: ms per run and count per run of each op type, and of the Conv nodes
    by their output grid (``HxW``: where in the network the convolution time goes; after ORT's
    fusions a Conv node may hold a folded BN, a sum input or a ReLU, and a depthwise Conv may be a BN)."""
    sess = ort_session(path, threads, str(workdir / "profile"), settings)
    for _ in range(runs):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    total: dict[str, collections.Counter[str]] = {"op": collections.Counter(), "grid": collections.Counter()}
    count: dict[str, collections.Counter[str]] = {"op": collections.Counter(), "grid": collections.Counter()}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            keys = [("op", e["args"]["op_name"])]
            if keys[0][1] == "Conv" and (grid := _output_grid(e["args"])):
                keys.append(("grid", grid))
            for kind, key in keys:
                total[kind][key] += e["dur"]
                count[kind][key] += 1
    ops, grids = (
        {
            key: {"ms_per_run": us / runs / 1e3, "nodes": count[kind][key] // runs}
            for key, us in total[kind].most_common()
        }
        for kind in ("op", "grid")
    )
    return ops, grids


def _output_grid(args: Mapping[str, object]) -> str | None:
    """``HxW`` of a profiled node's first output, when it is 4-D (the profiler's ``output_type_shape``)."""
    shapes = args.get("output_type_shape")
    if not isinstance(shapes, list) or not shapes or not isinstance(shapes[0], dict) or not shapes[0]:
        return None
    shape = next(iter(shapes[0].values()))
    return f"{shape[2]}x{shape[3]}" if isinstance(shape, list) and len(shape) == 4 else None


def measure(
    fns: Mapping[str, Callable[[], object]], plan: TimingPlan, sb_names: Sequence[str], mac_ratio: float
) -> GroupResult:
    """:func:`measure_group` of a baseline (``"base"``) and SB forms, each SB name paired with the baseline."""
    return measure_group(fns, plan, pairs=[Pair(sb=name, baseline="base", mac_ratio=mac_ratio) for name in sb_names])  # type: ignore[arg-type]


def _interval(low_high: tuple[float | None, float | None]) -> list[float] | None:
    low, high = low_high
    return None if low is None or high is None else [low, high]


def _row(
    pair: str,
    batch: int,
    backend: str,
    result: GroupResult,
    sb_name: str = "sb",
    base_name: str = "base",
    **extra: object,
) -> dict:
    base, sb, speedup = result.stats[base_name], result.stats[sb_name], result.speedups[sb_name]
    intervals = {
        "base_median_ci95": _interval((base.median_low_ms, base.median_high_ms)),
        "sb_median_ci95": _interval((sb.median_low_ms, sb.median_high_ms)),
        "speedup_ci95": [speedup.interval.low, speedup.interval.high] if speedup.interval else None,
    }
    return {
        "pair": pair,
        "batch": batch,
        "backend": backend,
        "mac_ratio": speedup.mac_ratio,
        "ideal_speedup": 1 / speedup.mac_ratio,
        "speedup": speedup.value,
        "speedup_min": base.min_ms / sb.min_ms,
        "efficiency": speedup.efficiency,
        "base": base.to_dict(),
        "sb": sb.to_dict(),
        **{k: v for k, v in intervals.items() if v is not None},
        "turns": result.record.rounds,
        "machine": result.record.machine.to_dict(),
        **extra,
    }


def bench_pair(base_name: str, batch: int, args: argparse.Namespace, workdir: Path) -> list[dict]:
    size = PAIRS[base_name][1] if base_name in PAIRS else model_info(base_name).input_size
    base, sb = load_pair(base_name, args.sampling)
    in_chans = next(m for m in base.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    mac_ratio = count_macs(sb, size, in_chans) / count_macs(base, size, in_chans)  # SB / baseline, as in sbdeploy bench
    x = torch.randn(batch, in_chans, *size)
    if args.cuda_only:
        return _bench_cuda(base, sb, x, base_name, batch, mac_ratio, args) if torch.cuda.is_available() else []
    deployed = get_target(args.target).deploy_form(sb)
    with torch.no_grad():
        err = (deployed(x) - sb(x)).abs().max().item()
    rows = []
    forms = sb_forms(args)
    names = {form: "sb" if i == 0 else f"sb {form}" for i, form in enumerate(forms)}  # the first: the rows' "sb"
    paths = {"base": workdir / "base.onnx", **{name: workdir / f"sb{i}.onnx" for i, name in enumerate(names.values())}}
    paths["base"].write_bytes(export(base, batch, size, args.target, in_chans).SerializeToString())
    for form, name in names.items():
        paths[name].write_bytes(export(sb, batch, size, form, in_chans).SerializeToString())
    feed = {"input": x.numpy()}
    if args.tune:
        rows += _bench_tuned(base_name, batch, args, workdir, paths, feed, mac_ratio, base, sb, size, err)
    else:
        with contextlib.ExitStack() as stack:
            settings = SessionSettings(intra_op_threads=args.threads, threads=args.threads, spinning=args.spinning)
            runners = {k: stack.enter_context(OrtRunner(p, session=settings)) for k, p in paths.items()}
            with torch.no_grad():
                expected = sb(x).numpy()
            errors = {k: float(np.abs(r.session.run(None, feed)[0] - expected).max()) for k, r in runners.items()}
            result = measure(
                {k: r.timed_call(feed) for k, r in runners.items()}, plan(args), list(names.values()), mac_ratio
            )
        for form, name in names.items():
            rows.append(
                _row(
                    base_name,
                    batch,
                    f"ort-cpu-{args.threads}t" + ("" if name == "sb" else f" {form}"),
                    result,
                    sb_name=name,
                    sb_form=form,
                    max_abs_err_ort_vs_torch=errors[name],
                    max_abs_err_deploy_vs_train_form=err,
                    _files={"base": (paths["base"], None), "sb": (paths[name], None)},
                )
            )
    runs = max(3, min(20, args.reps // 10))
    for row in rows:
        files = row.pop("_files")  # (path, session settings) of the two files of the row
        if args.profile:
            profiles = {
                k: op_profile(path, feed, args.threads, runs, workdir, settings)
                for k, (path, settings) in files.items()
            }
            row["profile"] = {k: ops for k, (ops, _) in profiles.items()}
            row["conv_by_grid"] = {k: grids for k, (_, grids) in profiles.items()}
    if args.int8:
        rows.append(int8_row(base_name, batch, paths, feed, mac_ratio, args, workdir))
    if args.torch:
        torch.set_num_threads(args.threads)

        def eager(m: torch.nn.Module) -> Callable[[], None]:
            def call() -> None:
                with torch.no_grad():
                    m(x)

            return call

        forms = ("sb_train_form", "sb_deploy_form")
        eager_result = measure(
            {"base": eager(base), "sb_train_form": eager(sb), "sb_deploy_form": eager(deployed)},
            plan(args, max(5, args.reps // 4)),
            forms,
            mac_ratio,
        )
        for form in forms:
            rows.append(_row(base_name, batch, f"torch-eager-cpu-{args.threads}t ({form})", eager_result, form))
    if torch.cuda.is_available():
        rows.extend(_bench_cuda(base, sb, x, base_name, batch, mac_ratio, args))
    return rows


def _bench_tuned(
    base_name: str,
    batch: int,
    args: argparse.Namespace,
    workdir: Path,
    paths: dict[str, Path],
    feed: dict[str, np.ndarray],
    mac_ratio: float,
    base: torch.nn.Module,
    sb: torch.nn.Module,
    size: tuple[int, int],
    deploy_err: float,
) -> list[dict]:
    """Untuned and tuned baseline and SB in one interleaved group: the untuned row and the tuned row beside it."""
    from sbdeploy.checkpoint import Checkpoint
    from sbdeploy.sources import zoo_source  # the zoo network as export sees it, weights given here
    from sbdeploy.tune import tune_budget_options, tune_export

    options = tune_budget_options(args.tune_budget, threads=args.threads)
    tuned, records = {}, {}
    for key, model, name in (("base", base, base_name), ("sb", sb, f"{base_name}_sb")):
        config = zoo_source(name, {"sampling": args.sampling} if key == "sb" else {}).config
        source = Checkpoint(Path(name), model, config, "bench_speedup", kind="zoo")
        path = workdir / f"{key}.tuned.onnx"
        ((_, record),) = tune_export(
            source, {"fp32": path}, target="ort-cpu", batch=batch, input_size=size, options=options
        ).values()
        tuned[key], records[key] = path, record
    names = {"base": paths["base"], "sb": paths["sb"], "base_tuned": tuned["base"], "sb_tuned": tuned["sb"]}
    pairs = [Pair("sb", "base", mac_ratio), Pair("sb_tuned", "base_tuned", mac_ratio)]
    with contextlib.ExitStack() as stack:
        runners = {k: stack.enter_context(OrtRunner(p, threads=args.threads)) for k, p in names.items()}
        with torch.no_grad():
            ort_err = float(
                np.abs(runners["sb_tuned"].infer(feed)["logits"] - sb(torch.from_numpy(feed["input"])).numpy()).max()
            )
        settings = {k: r.session_settings for k, r in runners.items()}
        fns = {k: r.timed_call(feed) for k, r in runners.items()}
        result = measure_group(fns, plan(args), pairs=pairs, ratios=[("sb", "sb_tuned")])
    untuned = _row(
        base_name,
        batch,
        f"ort-cpu-{args.threads}t",
        result,
        max_abs_err_deploy_vs_train_form=deploy_err,
        _files={k: (names[k], None) for k in ("base", "sb")},
    )
    tuned_row = _row(
        base_name,
        batch,
        f"ort-cpu-{args.threads}t tuned",
        result,
        "sb_tuned",
        "base_tuned",
        max_abs_err_ort_vs_torch=ort_err,
        tuned_sb_vs_untuned_sb=_ratio(result, "sb", "sb_tuned"),
        tuned_forms={k: {"chosen": r.chosen.label, "decision": r.decision} for k, r in records.items()},
        tuning={k: r.to_metadata() for k, r in records.items()},
        _files={"base": (names["base_tuned"], settings["base_tuned"]), "sb": (names["sb_tuned"], settings["sb_tuned"])},
    )
    return [untuned, tuned_row]


def _ratio(result: GroupResult, num: str, den: str) -> dict[str, object]:
    """``num`` median / ``den`` median with its interval over the group's paired rounds (a ratio asked of the group)."""
    value, interval = result.ratios[(num, den)]
    return {"value": value, "ci95": [interval.low, interval.high] if interval else None}


def int8_row(
    pair: str,
    batch: int,
    paths: dict[str, Path],
    feed: dict[str, np.ndarray],
    mac_ratio: float,
    args: argparse.Namespace,
    workdir: Path,
) -> dict:
    """Both exports and their :data:`ORT_CPU_INT8` files, the four timed in one interleaved group on ORT CPU.

    Gives SB/baseline of the int8 files (paired interval, as the fp32 row), each network's
    int8 speedup over its own fp32 file (fp32 median / int8 median) and SB int8 over baseline
    fp32, each with its paired-turn interval (the ``ratios`` of :func:`~sbdeploy.bench.timing.measure_group`).
    Calibrated on standard-normal inputs (the networks have random weights; the speed does
    not depend on the calibration). ``scripts/bench_int8.py`` compares the quantized forms.
    """
    calibration = np.random.default_rng(0).standard_normal((max(batch, 8), *feed["input"].shape[1:]), dtype=np.float32)
    int8 = {key: workdir / f"{key}.int8.onnx" for key in ("base", "sb")}
    for key, path in int8.items():
        path.write_bytes(
            quantize_int8(onnx.load(paths[key]), calibration, recipe=ORT_CPU_INT8, batch_size=batch).SerializeToString()
        )
    files = {"base": paths["base"], "sb": paths["sb"], "base_int8": int8["base"], "sb_int8": int8["sb"]}
    with contextlib.ExitStack() as stack:
        fns = {
            name: stack.enter_context(OrtRunner(file, threads=args.threads)).timed_call(feed)
            for name, file in files.items()
        }
        ratios = [("base", "base_int8"), ("sb", "sb_int8"), ("base", "sb_int8")]
        result = measure_group(fns, plan(args), pairs=[Pair("sb_int8", "base_int8", mac_ratio)], ratios=ratios)  # type: ignore[arg-type]
    return _row(
        pair,
        batch,
        f"ort-cpu-{args.threads}t int8",
        result,
        "sb_int8",
        "base_int8",
        int8_recipe=ORT_CPU_INT8.describe(),
        int8_speedup_base=_ratio(result, "base", "base_int8"),
        int8_speedup_sb=_ratio(result, "sb", "sb_int8"),
        sb_int8_vs_base_fp32=_ratio(result, "base", "sb_int8"),
        base_fp32=result.stats["base"].to_dict(),
        sb_fp32=result.stats["sb"].to_dict(),
    )


def _bench_cuda(base, sb, x, base_name, batch, mac_ratio, args) -> list[dict]:  # noqa: ANN001
    rows = []
    gpu_form = get_target("ort-cuda").deploy_form(sb)
    for dtype in (torch.float32, torch.float16):
        b, s, xx = base.cuda().to(dtype), gpu_form.cuda().to(dtype), x.cuda().to(dtype)

        def run(m: torch.nn.Module) -> None:
            with torch.no_grad():
                m(xx)
            torch.cuda.synchronize()

        result = measure({"base": lambda: run(b), "sb": lambda: run(s)}, plan(args), ["sb"], mac_ratio)
        rows.append(
            _row(base_name, batch, f"torch-cuda-{str(dtype).split('.')[-1]}", result, gpu=torch.cuda.get_device_name(0))
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), help="baseline names (the SB twin is NAME_sb)")
    parser.add_argument(
        "--batches", nargs="+", type=int, help="batch sizes (default per pair: 1 and 32 for CIFAR, 1 and 8 else)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=100, help="timed runs per network (at most; see --budget)")
    parser.add_argument(
        "--turn",
        type=int,
        default=10,
        help="timed runs of one network in a row (after 2 untimed) before the other's turn",
    )
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timing per (pair, batch, backend)")
    parser.add_argument(
        "--target", default="ort-cpu", choices=list(TARGETS), help="deploy form (sbdeploy export --target)"
    )
    parser.add_argument(
        "--sb-forms",
        nargs="+",
        help="the SB's forms, timed in one group with the baseline (default for ort-cpu: ort-cpu, ort-cpu:fused "
        "where the kernel library is built, ort-cpu:gather)",
    )
    parser.add_argument(
        "--no-spinning",
        dest="spinning",
        action="store_false",
        help="ONNX Runtime's idle pool threads sleep: interleaved sessions each keep a spinning worker otherwise, "
        "which takes the other sessions' cores between turns (the heavy tail on 2 cores)",
    )
    parser.add_argument("--sampling", default="chessboard")
    parser.add_argument("--no-torch", dest="torch", action="store_false", help="skip PyTorch eager timings")
    parser.add_argument(
        "--cuda-only", action="store_true", help="only the PyTorch CUDA fp32/fp16 rows (none without CUDA)"
    )
    parser.add_argument("--profile", action="store_true", help="add onnxruntime per-op-type profiles")
    parser.add_argument(
        "--tune", action="store_true", help="add tuned rows: baseline and SB tuned as `sbdeploy export --tune`"
    )
    parser.add_argument(
        "--tune-budget", type=float, default=10.0, help="--tune: seconds of timed turns per tuning stage, at most"
    )
    parser.add_argument(
        "--int8", action="store_true", help="add int8 rows: both networks quantized by the ORT CPU recipe"
    )
    parser.add_argument("--out", type=Path, default=Path("bench_speedup.json"))
    args = parser.parse_args(argv)

    rows: list[dict] = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            for batch in args.batches or PAIRS.get(pair, ((1,),))[0]:
                rows.extend(bench_pair(pair, batch, args, Path(tmp)))
                _print_rows([r for r in rows if r["pair"] == pair and r["batch"] == batch], header=False)
    report = {
        "command": " ".join([os.path.basename(sys.argv[0]), *(argv if argv is not None else sys.argv[1:])]),
        "onnxruntime": ort.__version__,
        "cpu_int8": cpu_int8_support().describe(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        # PyTorch's default: its fp32 CUDA convolutions may run on TF32 tensor cores (matrix products do not)
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "loadavg_at_start": load_start,
        "loadavg_at_end": os.getloadavg(),
        "target": args.target,
        "spinning": args.spinning,
        "definitions": "speedup = base median / SB median; mac_ratio = SB MACs / base MACs; "
        "ideal_speedup = 1 / mac_ratio; efficiency = speedup x mac_ratio",
        "rows": rows,
    }
    tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=1))
    tmp_out.replace(args.out)
    print()
    _print_rows(rows, header=True)
    for row in rows:
        if "tuned_forms" in row:
            _print_tuned(row)
    for row in rows:
        if "profile" in row:
            _print_profile(row)
    return 0


def _print_rows(rows: list[dict], header: bool = True) -> None:
    if header:
        print(
            f"{'pair':16s} {'batch':>5s} {'backend':34s} {'base ms':>9s} {'sb ms':>9s} {'speedup':>8s} {'95% interval':>15s} "
            f"{'MAC ratio':>9s} {'ideal':>6s} {'effic.':>7s} {'speedup(min)':>12s}"
        )
    for r in rows:
        interval = _interval_text(r.get("speedup_ci95"), r.get("turns"))
        print(
            f"{r['pair']:16s} {r['batch']:5d} {r['backend']:34s} {r['base']['median_ms']:9.3f} {r['sb']['median_ms']:9.3f} "
            f"{r['speedup']:8.2f} {interval:>15s} {r['mac_ratio']:9.3f} {r['ideal_speedup']:6.2f} {r['efficiency']:7.2f} "
            f"{r['speedup_min']:12.2f}",
            flush=True,
        )
        for key, what in (
            ("int8_speedup_base", "baseline int8 vs its fp32"),
            ("int8_speedup_sb", "SB int8 vs its fp32"),
            ("sb_int8_vs_base_fp32", "SB int8 vs baseline fp32"),
        ):
            if key in r:
                interval = _interval_text(r[key]["ci95"], r.get("turns"))
                print(
                    f"{'':16s} {'':5s} {'  ' + what:34s} {'':9s} {'':9s} {r[key]['value']:8.2f} {interval:>15s}",
                    flush=True,
                )


def _interval_text(ci: list[float] | None, turns: int | None) -> str:
    """``low-high``, or why there is none: the group had fewer turns than an interval needs (raise --reps or --budget)."""
    if ci:
        return f"{ci[0]:.2f}-{ci[1]:.2f}"
    return f"none ({turns} turns)" if turns is not None else "none"


def _print_tuned(row: dict) -> None:
    ratio = row["tuned_sb_vs_untuned_sb"]
    interval = f" ({ratio['ci95'][0]:.2f}-{ratio['ci95'][1]:.2f})" if ratio["ci95"] else ""
    print(f"  {row['pair']} b{row['batch']} tuned SB vs untuned SB: {ratio['value']:.2f}x{interval}")
    for key, chosen in row["tuned_forms"].items():
        print(f"    {key}: {chosen['chosen']} ({chosen['decision']})")
        if row["tuning"][key].get("busy_machine"):
            print(f"      warning: {row['tuning'][key]['busy_machine']}")


def _print_profile(row: dict) -> None:
    print(f"\nonnxruntime op profile, {row['pair']} batch {row['batch']} {row['backend']} (ms per run, nodes per run)")
    ops = sorted(
        set(row["profile"]["base"]) | set(row["profile"]["sb"]),
        key=lambda op: -row["profile"]["sb"].get(op, {}).get("ms_per_run", 0),
    )
    _print_profile_lines("op", ops, row["profile"])
    grids = sorted(
        set(row["conv_by_grid"]["base"]) | set(row["conv_by_grid"]["sb"]), key=lambda g: -int(g.split("x")[0])
    )
    print("  Conv nodes by output grid (the SB's phase runs are on half-size grids):")
    _print_profile_lines("Conv, output", grids, row["conv_by_grid"])


def _print_profile_lines(what: str, keys: list[str], by_file: dict) -> None:
    print(f"  {what:24s} {'base ms':>9s} {'n':>5s} {'sb ms':>9s} {'n':>5s}")
    for key in keys:
        b = by_file["base"].get(key, {"ms_per_run": 0.0, "nodes": 0})
        s = by_file["sb"].get(key, {"ms_per_run": 0.0, "nodes": 0})
        print(f"  {key:24s} {b['ms_per_run']:9.3f} {b['nodes']:5d} {s['ms_per_run']:9.3f} {s['nodes']:5d}")


if __name__ == "__main__":
    raise SystemExit(main())
