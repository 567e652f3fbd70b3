"""Which int8 form is fastest on ONNX Runtime CPU, and how accurate each is: the measurement behind ``ORT_CPU_INT8``.

Speed (default): for each (baseline, SB) pair and batch size, the baseline and the SB
network in each form (``ort-cpu``: phase/stacked layout, as ``sbdeploy export --target
ort-cpu`` writes it at that fixed batch; ``strided``: the ``ort-cuda``/``trt`` form;
``grouped``: the canonical interchange form) are exported with the product's exporter,
quantized by every candidate :class:`~sbdeploy.passes.int8.Int8Recipe` of
:data:`VARIANTS` (QDQ vs QOperator, per-channel vs per-tensor, u8s8 vs s8s8,
``reduce_range``, which ops), and the fp32 model and all its int8 variants are timed
*interleaved in one group* by the product's timing (:func:`sbdeploy.bench.timing.measure_group`
on :class:`~sbdeploy.backends.ort.OrtRunner`, rotating turns). Each int8 variant is
paired with its fp32 model: "int8 speedup" = fp32 median / int8 median with the 95%
interval of the paired-turn bootstrap; the per-turn ratios give the spread (median,
quartiles). The machine's load and the CPU's int8 instructions are recorded.

Accuracy (``--accuracy``): the shipped digits models (``models/digits_resnet20`` and
``models/digits_resnet20_sb``) in each form and variant, calibrated on 256 training
images, against PyTorch on the test split (validate's int8 gate: per-sample cosine >=
0.98 and top-1 agreement >= 90%) and on validate's random batches; top-1 accuracy of
int8 beside fp32.

    python scripts/bench_int8.py --pairs cifar_resnet56 resnet18 --out int8.json
    python scripts/bench_int8.py --accuracy --out int8_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbdeploy.backends.ort import OrtRunner  # noqa: E402
from sbdeploy.bench.timing import GroupResult, Pair, TimingPlan, measure_group  # noqa: E402
from sbdeploy.environment import cpu_int8_support  # noqa: E402
from sbdeploy.export.onnx_export import export_module  # noqa: E402
from sbdeploy.models import create_model  # noqa: E402
from sbdeploy.passes.int8 import ORT_CPU_INT8, ORT_CPU_INT8_OPS, TRT_INT8, Int8Recipe, quantize_int8  # noqa: E402
from sbdeploy.validate.compare import output_stats  # noqa: E402

PAIRS = {"cifar_resnet56": ((1, 32), (32, 32)), "resnet18": ((1, 8), (224, 224))}
"""Baseline name -> (batch sizes, input size)."""

CPU_OPS = ("Conv", "Gemm", "MatMul")  # ONNX Runtime CPU has no int8 ConvTranspose kernel
EXTENDED_OPS = ORT_CPU_INT8_OPS  # the compute ops and the int8 ops and data movement between them
_U8 = {"activation_type": "uint8", "activation_symmetric": False}

VARIANTS: dict[str, Int8Recipe] = {
    "trt (qdq s8s8 pc, float bias, +ConvT)": TRT_INT8,
    "qdq s8s8 pc": Int8Recipe("qdq-s8s8-pc", quantize_bias=True, op_types=CPU_OPS),
    "qdq u8s8 pc": Int8Recipe("qdq-u8s8-pc", quantize_bias=True, op_types=CPU_OPS, **_U8),  # type: ignore[arg-type]
    "qdq u8s8 pt": Int8Recipe("qdq-u8s8-pt", per_channel=False, quantize_bias=True, op_types=CPU_OPS, **_U8),  # type: ignore[arg-type]
    "qdq u8s8 pc rr": Int8Recipe("qdq-u8s8-pc-rr", reduce_range=True, quantize_bias=True, op_types=CPU_OPS, **_U8),  # type: ignore[arg-type]
    "ort-cpu (qdq u8s8 pc ext)": ORT_CPU_INT8,
    "qdq u8s8 pt ext": Int8Recipe(
        "qdq-u8s8-pt-ext", per_channel=False, quantize_bias=True, op_types=EXTENDED_OPS, **_U8
    ),  # type: ignore[arg-type]
    "qop u8s8 pc": Int8Recipe("qop-u8s8-pc", format="qoperator", op_types=CPU_OPS, **_U8),  # type: ignore[arg-type]
    "qop s8s8 pc": Int8Recipe("qop-s8s8-pc", format="qoperator", op_types=CPU_OPS),
    "qop u8s8 pc ext": Int8Recipe("qop-u8s8-pc-ext", format="qoperator", op_types=EXTENDED_OPS, **_U8),  # type: ignore[arg-type]
}
"""Candidate recipes by label ("pc"/"pt": per-channel/per-tensor weights, "rr": reduce_range, "ext": more op types)."""

FORMS = {
    "base": (False, "ort-cpu"),
    "sb ort-cpu": (True, "ort-cpu"),
    "sb strided": (True, "trt"),
    "sb grouped": (True, "grouped"),
}
"""Form label -> (SB network?, export target)."""


def _variants(args: argparse.Namespace) -> dict[str, Int8Recipe]:
    return {label: r for label, r in VARIANTS.items() if label in args.variants} if args.variants else VARIANTS


def _spread(result: GroupResult, num: str, den: str) -> dict[str, float]:
    """Median and quartiles of the per-turn ratios num/den (int8 over fp32: below 1 is faster)."""
    ratios = [np.median(a) / np.median(b) for a, b in zip(result.rounds[num], result.rounds[den])]
    q1, q2, q3 = np.percentile(ratios, [25, 50, 75])
    return {
        "turns": len(ratios),
        "ratio_median": float(q2),
        "ratio_q1": float(q1),
        "ratio_q3": float(q3),
        "ratio_min": float(min(ratios)),
        "ratio_max": float(max(ratios)),
    }


def bench_form(pair: str, batch: int, form: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    """fp32 and every int8 variant of one network form, timed in one group; one row per variant."""
    sb, target = FORMS[form]
    size = PAIRS[pair][1]
    torch.manual_seed(0)
    model = create_model(f"{pair}_sb" if sb else pair).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, *size), dtype=np.float32)
    calibration = rng.standard_normal((max(batch, args.calibration), 3, *size), dtype=np.float32)
    fp32 = export_module(model, in_chans=3, input_size=size, batch=batch, target=target)[0]
    paths = {"fp32": workdir / "fp32.onnx"}
    onnx.save(fp32, paths["fp32"])
    variants = _variants(args)
    for i, (label, recipe) in enumerate(variants.items()):
        paths[label] = workdir / f"int8_{i}.onnx"
        onnx.save(quantize_int8(fp32, calibration, recipe=recipe, batch_size=batch), paths[label])
    feed = {"input": x}
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy().reshape(batch, -1)
    plan = TimingPlan(warmup_iters=3, budget_s=args.budget, turn=args.turn)
    rows = []
    for label, recipe in variants.items():  # one group per variant: more live sessions would slow each other
        with (
            OrtRunner(paths["fp32"], threads=args.threads) as base,
            OrtRunner(paths[label], threads=args.threads) as int8,
        ):
            cosine = output_stats(reference, int8.session.run(None, feed)[0].reshape(batch, -1)).min_cosine
            result = measure_group(
                {"fp32": base.timed_call(feed), label: int8.timed_call(feed)},
                plan,
                pairs=[Pair(sb=label, baseline="fp32", mac_ratio=1.0)],
            )
        usage, speedup = result.record.machine, result.speedups[label]
        rows.append(
            {
                "pair": pair,
                "batch": batch,
                "form": form,
                "variant": label,
                "recipe": recipe.describe(),
                "fp32_ms": result.stats["fp32"].median_ms,
                "int8_ms": result.stats[label].median_ms,
                "int8_speedup": speedup.value,
                "int8_speedup_ci95": [speedup.interval.low, speedup.interval.high] if speedup.interval else None,
                **_spread(result, label, "fp32"),
                "min_cosine_vs_torch_random_weights": cosine,
                "loadavg": [usage.before.loadavg, usage.after.loadavg],
                "others_cpu": usage.others_cpu,
                "stop": result.record.stop,
            }
        )
        _print_rows(rows[-1:])
    return rows


def accuracy_rows(args: argparse.Namespace, workdir: Path) -> list[dict]:
    """Every form x variant of the shipped digits models against PyTorch (validate's int8 gate) and the labels."""
    from sbdeploy.calibration import load_calibration
    from sbdeploy.checkpoint import load_checkpoint
    from sbdeploy.tolerance import DEFAULT_TOLERANCES
    from sbdeploy.validate.compare import accuracy, verdict
    from sbdeploy.validate.run import dataset_case, random_cases, run_batched

    rows = []
    gate = DEFAULT_TOLERANCES["int8"]
    forms = {
        "base": ("models/digits_resnet20", "ort-cpu", "dynamic"),
        "sb ort-cpu": ("models/digits_resnet20_sb", "ort-cpu", "dynamic"),
        "sb ort-cpu b1 (stacked)": ("models/digits_resnet20_sb", "ort-cpu", 1),
        "sb strided": ("models/digits_resnet20_sb", "trt", "dynamic"),
        "sb grouped": ("models/digits_resnet20_sb", "grouped", "dynamic"),
    }
    for form, (folder, target, batch) in forms.items():
        ckpt = load_checkpoint(Path(__file__).resolve().parents[1] / folder)
        cfg = ckpt.config
        calibration = load_calibration("digits", cfg).images  # 256 training images, as export --int8 takes them
        test = dataset_case("digits", cfg)
        cases = [test, *random_cases((1,) if batch == 1 else (1, 2, 8), (cfg.in_chans, *cfg.input_size))]
        with torch.no_grad():
            refs = {c.name: ckpt.model(torch.from_numpy(c.images)).numpy() for c in cases}
        fp32 = export_module(ckpt.model, in_chans=cfg.in_chans, input_size=cfg.input_size, batch=batch, target=target)[
            0
        ]
        torch_top1 = accuracy(refs[test.name], test.labels)[0]
        for label, recipe in _variants(args).items():
            path = workdir / "acc.onnx"
            onnx.save(quantize_int8(fp32, calibration, recipe=recipe, batch_size=1 if batch == 1 else 32), path)
            row: dict[str, object] = {
                "form": form,
                "variant": label,
                "recipe": recipe.describe(),
                "torch_top1": torch_top1,
            }
            with OrtRunner(path, threads=args.threads) as runner:
                fixed = None if batch == "dynamic" else 1
                for case in cases:
                    out = run_batched(runner, case.images, 64, fixed_batch=fixed)
                    stats = output_stats(refs[case.name], out, gate)
                    passed, reason = verdict(stats, gate)
                    row[case.name] = {
                        "min_cosine": stats.min_cosine,
                        "top1_agreement": stats.top1_agreement,
                        "passed": passed,
                        "reason": reason,
                    }
                    if case.labels is not None:
                        row["int8_top1"] = accuracy(out, case.labels)[0]
            rows.append(row)
            print(
                f"{form:24s} {label:40s} int8 top-1 {row['int8_top1']:.4f} (fp32 {torch_top1:.4f}) "
                f"test: {row[test.name]}",
                flush=True,
            )  # type: ignore[index]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument(
        "--batches", nargs="+", type=int, help="batch sizes (default per pair: 1 and 32 for CIFAR, 1 and 8 else)"
    )
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=list(FORMS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="int8 variants to measure (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--turn", type=int, default=5, help="timed runs of one model in a row (after 2 untimed)")
    parser.add_argument(
        "--budget", type=float, default=10.0, help="seconds of timed turns per (form, variant) group at most"
    )
    parser.add_argument(
        "--calibration", type=int, default=8, help="calibration images (random normal; speed does not depend on them)"
    )
    parser.add_argument(
        "--accuracy", action="store_true", help="measure accuracy on the shipped digits models instead of speed"
    )
    parser.add_argument("--out", type=Path, default=Path("bench_int8.json"))
    args = parser.parse_args(argv)

    cpu = cpu_int8_support()
    print(
        f"CPU: {cpu.describe()}; onnxruntime {ort.__version__}, {args.threads} threads; load {os.getloadavg()}",
        flush=True,
    )
    report = {
        "command": " ".join([os.path.basename(sys.argv[0]), *(argv if argv is not None else sys.argv[1:])]),
        "onnxruntime": ort.__version__,
        "cpu_int8": cpu.describe(),
        "threads": args.threads,
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.accuracy:
            report["rows"] = accuracy_rows(args, Path(tmp))
            _write(report, args.out)
        else:
            for pair in args.pairs:
                for batch in args.batches or PAIRS[pair][0]:
                    for form in args.forms:
                        report["rows"].extend(bench_form(pair, batch, form, args, Path(tmp)))
                        _write(report, args.out)  # after every group: a long run that is stopped keeps what it measured
    return 0


def _write(report: dict, out: Path) -> None:
    tmp_out = out.with_suffix(out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=1, default=str))
    tmp_out.replace(out)


def _print_rows(rows: list[dict]) -> None:
    for r in rows:
        ci = r["int8_speedup_ci95"] or [float("nan")] * 2
        load = r["loadavg"][0][0] if r["loadavg"][0] else float("nan")
        print(
            f"{r['pair']:15s} b{r['batch']:<3d} {r['form']:11s} {r['variant']:40s} fp32 {r['fp32_ms']:8.2f} int8 {r['int8_ms']:8.2f} "
            f"x{r['int8_speedup']:5.2f} [{ci[0]:.2f}-{ci[1]:.2f}] turns {r['turns']:3d} int8/fp32 per turn "
            f"{r['ratio_median']:.3f} ({r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}) cos {r['min_cosine_vs_torch_random_weights']:.4f} "
            f"load {load:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())
