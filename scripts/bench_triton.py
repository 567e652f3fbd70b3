"""Latency and throughput of an ONNX model served by a live Triton (PyTriton) at 1, 4 and 16 concurrent clients.

:func:`bench_triton` runs one ``tritonclient.http`` client per thread, each sending batch-1 requests and
comparing every response with direct inference, at each concurrency level.

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
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbdeploy.backends.ort import OrtRunner  # noqa: E402
from sbdeploy.files import describe_file  # noqa: E402
from sbdeploy.serve.pytriton_server import PyTritonServer, ServeOptions  # noqa: E402


@dataclass(frozen=True)
class LevelResult:
    """What one concurrency level measured."""

    concurrency: int
    requests: int
    seconds: float
    throughput_rps: float  # requests (= images) per second, all clients together
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_abs_diff: float  # largest |served - direct| over every output element
    mismatches: int  # responses outside the tolerance
    batches: dict[int, int]  # executions per batch size that Triton's dynamic batcher formed (server statistics)


@dataclass(frozen=True)
class TritonBenchReport:
    """All levels of one run, and the tolerance the responses were checked against."""

    url: str
    model: str
    atol: float
    rtol: float
    levels: tuple[LevelResult, ...]

    def __bool__(self) -> bool:
        """True when every response matched direct inference and every level ran."""
        return all(level.mismatches == 0 and level.requests > 0 for level in self.levels)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "all_match": bool(self)}


def bench_triton(
    url: str,
    model: str,
    images: np.ndarray,
    expected: np.ndarray,
    *,
    input_name: str = "input",
    output_name: str = "logits",
    concurrency: Sequence[int] = (1, 4, 16),
    requests_per_client: int = 20,
    time_limit_s: float = 30.0,
    warmup_requests: int = 4,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> TritonBenchReport:
    """Measure ``model`` at ``url`` (``host:port`` of Triton's HTTP endpoint) at each concurrency.

    Each request sends one of ``images`` as a batch of 1 and matches when
    ``|served - expected| <= atol + rtol * |expected|``; ``time_limit_s`` bounds each level.
    """
    import tritonclient.http as httpclient

    if len(images) != len(expected) or len(images) == 0:
        raise ValueError("images and expected must be non-empty and of the same length")
    dtype = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16", np.dtype(np.float64): "FP64"}[images.dtype]

    def request(client: Any, k: int) -> np.ndarray:
        x = images[k : k + 1]
        feed = httpclient.InferInput(input_name, list(x.shape), dtype)
        feed.set_data_from_numpy(x)
        result = client.infer(model, [feed], outputs=[httpclient.InferRequestedOutput(output_name)])
        return result.as_numpy(output_name)[0]

    def sample(client: Any, k: int) -> tuple[float, float, bool]:
        """One request of image ``k``: its seconds, its largest deviation, whether it is within the tolerance."""
        t0 = time.perf_counter()
        served = request(client, k)
        seconds = time.perf_counter() - t0
        if served.shape != expected[k].shape:
            return seconds, 0.0, False
        diff = np.abs(served.astype(np.float64) - expected[k])
        return seconds, float(diff.max()), not np.any(diff > atol + rtol * np.abs(expected[k]))

    def new_client() -> Any:
        return httpclient.InferenceServerClient(url, connection_timeout=10, network_timeout=30)

    with new_client() as client:
        # Triton records a batch's statistics just after sending its responses, so every read of them
        # waits until the requests sent so far are all counted; otherwise a late warm-up batch would be
        # attributed to the first level.
        counted = _settled_batches(client, model, at_least=0)
        for k in range(warmup_requests):
            request(client, k % len(images))
        counted = _settled_batches(client, model, at_least=_requests(counted) + warmup_requests)
        levels = []
        for level in concurrency:
            result = _run_level(level, new_client, sample, len(images), requests_per_client, time_limit_s)
            before, counted = counted, _settled_batches(client, model, at_least=_requests(counted) + result.requests)
            batches = {b: n - before.get(b, 0) for b, n in sorted(counted.items()) if n > before.get(b, 0)}
            levels.append(LevelResult(**{**asdict(result), "batches": batches}))
    return TritonBenchReport(url, model, atol, rtol, tuple(levels))


def _requests(batches: dict[int, int]) -> int:
    return sum(b * n for b, n in batches.items())


def _settled_batches(client: Any, model: str, *, at_least: int, timeout_s: float = 5.0) -> dict[int, int]:
    """Executions per batch size (Triton's statistics) once they cover ``at_least`` requests, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = client.get_inference_statistics(model)["model_stats"][0]
        batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
        if _requests(batches) >= at_least or time.monotonic() >= deadline:
            return batches
        time.sleep(0.05)


def _run_level(
    level: int,
    new_client: Callable[[], Any],
    sample: Callable[[Any, int], tuple[float, float, bool]],
    images: int,
    requests_per_client: int,
    time_limit_s: float,
) -> LevelResult:
    """``level`` clients, each on its own thread and connection, released together by a barrier."""
    samples: list[tuple[float, float, bool]] = []  # list.append is atomic under the GIL
    errors: list[BaseException] = []
    start = threading.Barrier(level + 1)
    deadline = time.monotonic() + time_limit_s

    def client_loop(c: int) -> None:
        try:
            with new_client() as client:
                start.wait()
                for i in range(requests_per_client):
                    if time.monotonic() > deadline:
                        break
                    samples.append(sample(client, (c * requests_per_client + i) % images))
        except BaseException as error:  # re-raised below, once every thread has ended
            errors.append(error)
            start.abort()

    threads = [threading.Thread(target=client_loop, args=(c,), daemon=True) for c in range(level)]
    for t in threads:
        t.start()
    try:
        start.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()) + 60)
    seconds = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"a client failed at concurrency {level}: {errors[0]!r}") from errors[0]
    ms = np.array([s for s, _, _ in samples]) * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99])) if ms.size else (float("nan"),) * 3
    throughput = ms.size / seconds if seconds > 0 else 0.0
    diff = max((d for _, d, _ in samples), default=0.0)
    mismatches = sum(not ok for _, _, ok in samples)
    return LevelResult(level, len(samples), seconds, throughput, p50, p90, p99, diff, mismatches, {})


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
