"""Latency and throughput of an ONNX model served by a live Triton (PyTriton) at 1, 4 and 16 concurrent clients.

Starts PyTriton's Triton on 127.0.0.1 (free ports) with the sbdeploy ONNX Runtime
runner behind Triton's dynamic batcher, sends batch-1 requests from N tritonclient
HTTP clients at once, checks every response against direct inference, and prints a
table (or JSON). Needs the .venv-triton of `scripts/setup.sh --with-triton` (or SBDEPLOY_PYTRITON_PYTHON).

    .venv/bin/python scripts/bench_triton.py                    # cifar_resnet20_sb, exported on the fly
    .venv/bin/python scripts/bench_triton.py --onnx m.onnx --requests 100 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbdeploy.backends.ort import OrtRunner  # noqa: E402
from sbdeploy.files import describe_file  # noqa: E402
from sbdeploy.serve.pytriton_server import PyTritonServer, ServeOptions  # noqa: E402
from sbdeploy.serve.triton_bench import bench_triton  # noqa: E402


def export_default(folder: Path, arch: str) -> Path:
    from sbdeploy.export.onnx_export import export_onnx

    return export_onnx(arch, folder / f"{arch}.onnx").path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, help="model with a dynamic batch (default: export --arch)")
    parser.add_argument("--arch", default="cifar_resnet20_sb")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=50, help="requests per client per level")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per level at most")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--queue-delay-us", type=int, default=500)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads per instance")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx or export_default(Path(tmp), args.arch)
        spec = describe_file(onnx_path)
        (inp,), (out,) = spec.inputs, spec.outputs
        shape = tuple(d if d is not None else 32 for d in inp.shape[1:])
        images = np.random.default_rng(0).standard_normal((64, *shape)).astype(inp.dtype)
        outputs, direct_ms = [], []
        with OrtRunner(onnx_path, provider="cpu") as runner:
            for i in range(len(images)):
                t0 = time.perf_counter()
                outputs.append(runner.infer({inp.name: images[i : i + 1]})[out.name])
                direct_ms.append((time.perf_counter() - t0) * 1e3)
        expected = np.concatenate(outputs)
        options = ServeOptions(
            model_name="model",
            max_batch=args.max_batch,
            queue_delay_us=args.queue_delay_us,
            instances=args.instances,
            threads=args.threads,
        )
        with PyTritonServer(onnx_path, options) as server:
            report = bench_triton(
                server.http_url,
                "model",
                images,
                expected,
                input_name=inp.name,
                output_name=out.name,
                concurrency=args.concurrency,
                requests_per_client=args.requests,
                time_limit_s=args.time_limit,
            )
    if args.json:
        direct = {"p50_ms": float(np.median(direct_ms)), "requests": len(direct_ms)}
        print(
            json.dumps(
                {"onnx": str(args.onnx or args.arch), "direct_batch1": direct, **report.to_dict()},
                indent=2,
                default=str,
            )
        )
        return
    print(
        f"{onnx_path.name} behind Triton (PyTriton), dynamic batching max {args.max_batch}, "
        f"queue delay {args.queue_delay_us} us, {args.instances} instance(s); batch-1 requests over HTTP"
    )
    print(
        f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max|diff|':>9}  batches formed"
    )
    for lv in report.levels:
        print(
            f"{lv.concurrency:>7} {lv.requests:>8} {lv.throughput_rps:>7.1f} {lv.p50_ms:>7.2f} {lv.p90_ms:>7.2f} "
            f"{lv.p99_ms:>7.2f} {lv.max_abs_diff:>9.1e}  {lv.batches}"
        )
    print(
        f"direct OrtRunner, batch 1, in process (no Triton): p50 {np.median(direct_ms):.2f} ms over {len(direct_ms)} calls"
    )
    print(f"responses match direct inference (atol {report.atol}, rtol {report.rtol}): {'yes' if report else 'NO'}")
    sys.exit(0 if report else 1)


if __name__ == "__main__":
    main()
