"""ov-cpu through the one flow, by the CLI: the pipeline validates every (file sha256, backend, precision) it times,
bf16 included (the fp32 file run with OpenVINO's bf16 hint), bf16 is refused where no backend can set it, and each
network's fastest file across engines and precisions is timed against its baseline's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbdeploy import kernels
from sbdeploy.artifacts import plan_artifacts
from sbdeploy.bench.report import FINALISTS
from sbdeploy.errors import ConfigError
from tests.conftest import REPO, kernel_library, run_cli

pytest.importorskip("openvino")

SHIPPED_SB, SHIPPED_BASELINE = REPO / "models" / "digits_resnet20_sb", REPO / "models" / "digits_resnet20"
OV, SB_BF16 = [("ov-cpu", "fp32"), ("ov-cpu", "bf16")], ("model", "ort-cpu", "bf16")


def test_bf16_on_ov_cpu_is_the_fp32_file_run_in_bf16() -> None:
    plans, uses = plan_artifacts([("m", "model")], ["ov-cpu"], [1], precisions=("fp32", "bf16"))
    assert [(p.filename, p.precision, p.backends) for p in plans] == [
        ("model.ov-cpu.b1.fp32.onnx", "fp32", ("ov-cpu",))
    ]
    assert uses[("m", "ov-cpu", 1, "bf16")] == uses[("m", "ov-cpu", 1, "fp32")] == "model.ov-cpu.b1.fp32.onnx"
    with pytest.raises(ConfigError, match="target trt offers fp32, fp16, int8, not 'bf16'"):
        plan_artifacts([("m", "model")], ["trt"], [1], precisions=("fp32", "bf16"))
    # with a backend that computes in it, the others skip it; on ort-cpu only SB networks have a bf16 file (their
    # fused nodes compute in it), on ov-cpu every network (the fp32 file with the bf16 hint)
    plans, uses = plan_artifacts([("m", "model")], ["trt", "ov-cpu"], [1], precisions=("fp32", "bf16"))
    assert ("m", "trt", 1, "bf16") not in uses and ("m", "ov-cpu", 1, "bf16") in uses
    models = [("sb", "model"), ("base", "baseline")]
    plans, uses = plan_artifacts(models, ["ort-cpu", "ov-cpu"], [1], precisions=("fp32", "bf16"), plain=["base"])
    assert (
        uses[("sb", "ort-cpu", 1, "bf16")] == "model.ort-cpu.b1.bf16.onnx"
        and ("base", "ort-cpu", 1, "bf16") not in uses
    )
    assert uses[("base", "ov-cpu", 1, "bf16")] == "baseline.ov-cpu.b1.fp32.onnx"


def test_without_the_kernel_library_ort_cpu_bf16_is_refused_or_skipped_before_anything_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kernels, "is_built", lambda: False)
    with pytest.raises(ConfigError, match="bf16 on ort-cpu is computed by the fused SB kernel, and sbdeploy's kernel"):
        plan_artifacts([("sb", "model")], ["ort-cpu"], [1], precisions=("fp32", "bf16"))
    _, uses = plan_artifacts([("sb", "model")], ["ort-cpu", "ov-cpu"], [1], precisions=("fp32", "bf16"))
    assert ("sb", "ort-cpu", 1, "bf16") not in uses and ("sb", "ov-cpu", 1, "bf16") in uses


def test_pipeline_on_ov_cpu_validates_every_precision_it_times_and_names_the_fastest_file(tmp_path: Path) -> None:
    kernel_library()  # ort-cpu's bf16 file is the fused form's
    out = tmp_path / "run"
    args = ["--baseline", str(SHIPPED_BASELINE), "--out", str(out), "--backends", "ort-cpu,ov-cpu", "--bf16"]
    args += ["--batch", "1", "--iters", "4", "--warmup", "1", "--limit", "64", "--threads", "1"]
    result = run_cli("pipeline", str(SHIPPED_SB), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((out / "summary.json").read_text())["passed"]
    validation, bench = json.loads((out / "validate.json").read_text()), json.loads((out / "bench.json").read_text())
    validated = {(c["file"], c["sha256"], c["backend"], c["precision"]) for c in validation["checks"] if c["passed"]}
    timed = {(r["file"], r["sha256"], r["backend"], r["precision"]) for r in bench["rows"] if r["file"] is not None}
    # bf16 where a backend computes in it: ov-cpu's hint on every fp32 file, ort-cpu's fused SB nodes (the SB
    # network only); said once for the one that cannot
    pairs = {(f.split(".")[0], b, p) for f, _, b, p in timed}
    assert pairs == {(m, b, p) for m in ("model", "baseline") for b, p in [("ort-cpu", "fp32"), *OV]} | {SB_BF16}
    assert "bf16 runs on ort-cpu, ov-cpu; torch timed without it" in bench["settings"]["notes"]
    fastest = {(r["file"], r["sha256"], r["backend"], r["precision"]) for r in bench["fastest"]}
    assert timed <= validated and fastest <= timed  # every (file, backend, precision) timed was validated
    assert {f for f, *_ in timed} >= {"model.ov-cpu.b1.fp32.onnx", "baseline.ov-cpu.b1.fp32.onnx"}
    summary = {a["file"]: a for a in json.loads((out / "summary.json").read_text())["artifacts"]}
    assert set(summary["model.ov-cpu.b1.fp32.onnx"]["latency_ms"]) == {"ov-cpu", "ov-cpu bf16"}  # neither hides
    assert "bf16" in validation["tolerances"].get("ov-cpu bf16", "") or "ov-cpu bf16" in validation["tolerances"]
    # each network's fastest of its (file, engine, precision): its fastest on each engine (the finalists), timed
    # together to choose, the winner re-timed in one group, SB against baseline
    rows = {r["model"]: r for r in bench["fastest"]}
    assert len(bench["fastest"]) == 2 and set(rows) == {r["model"] for r in bench["rows"]}
    for m, r in rows.items():
        engine = [x for x in bench["rows"] if x["model"] == m and x["backend"] == r["backend"]]
        best = min(engine, key=lambda x: x["median_ms"])
        assert (r["precision"], r["file"]) == (best["precision"], best["file"])
    assert len([g for g in bench["groups"] if g["backend"] == FINALISTS and g["batch"] == 1]) == 1
    # both networks had files on two engines: their finalists, timed together, chose the picks
    for m, r in rows.items():
        finalists = [x for x in bench["finalists"] if x["model"] == m]
        assert {x["backend"] for x in finalists} == {"ort-cpu", "ov-cpu"}
        chosen = min(finalists, key=lambda x: x["median_ms"])
        assert (r["backend"], r["precision"], r["file"]) == (chosen["backend"], chosen["precision"], chosen["file"])
    sb = next(r for r in bench["fastest"] if r["speedup"] is not None)
    base = rows[sb["baseline"]]
    assert sb["speedup"] == base["median_ms"] / sb["median_ms"] and sb["baseline_sha256"] == base["sha256"]
    assert any(g["backend"] == "fastest files" and g["batch"] == 1 for g in bench["groups"])
    assert "## Which file to ship" in (out / "summary.md").read_text()
    assert "## Fastest file per network" in (out / "bench.md").read_text()


def test_validate_and_bench_take_ov_cpu_files(tmp_path: Path) -> None:
    onnx = tmp_path / "model.ov-cpu.b1.fp32.onnx"
    done = run_cli("export", str(SHIPPED_SB), "--target", "ov-cpu", "--batch", "1", "-o", str(onnx))
    assert done.returncode == 0, done.stderr
    done = run_cli("validate", str(SHIPPED_SB), "--onnx", str(onnx), "--backends", "ov-cpu", "--bf16", "--limit", "32")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ov-cpu" in done.stdout and "bf16" in done.stdout and "PASSED: 4 checks of 1 files" in done.stdout
    report = tmp_path / "bench"
    done = run_cli("bench", "-m", str(onnx), "--iters", "3", "--warmup", "1", "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads((report / "bench.json").read_text())["rows"]
    assert [(r["backend"], r["precision"], r["file"]) for r in rows] == [("ov-cpu", "fp32", onnx.name)]


def test_an_int8_ov_cpu_file_passes_the_int8_gate_on_the_shipped_model(tmp_path: Path) -> None:
    onnx = tmp_path / "model.ov-cpu.b1.int8.onnx"  # ONNX Runtime's QDQ recipe, which OpenVINO reads
    done = run_cli("export", str(SHIPPED_SB), "--target", "ov-cpu", "--batch", "1", "--int8", "-o", str(onnx))
    assert done.returncode == 0, done.stderr
    done = run_cli("validate", str(SHIPPED_SB), "--onnx", str(onnx), "--backends", "ov-cpu", "--limit", "64")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ov-cpu int8" in done.stdout and "PASSED: 2 checks of 1 files" in done.stdout
