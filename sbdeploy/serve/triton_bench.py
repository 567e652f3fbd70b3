"""Concurrent clients against a Triton server: latency, throughput, and agreement with direct inference.

:func:`bench_triton` runs one ``tritonclient.http`` client per thread, each sending batch-1
requests and comparing every response with direct inference, at each concurrency level.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


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
