"""``sbdeploy pipeline`` end to end on the shipped trained models, with small settings (the README's main job).

The proof the pipeline sells: every file timed in bench.json is a file validated in
validate.json (by sha256), each is in the run folder with those bytes, SB files are judged
against the SB checkpoint and baseline files against the baseline checkpoint, and
summary.md lists each file with its verdict and latency. The run folder then serves as
the input of ``triton-repo``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbdeploy import environment
from sbdeploy._io import sha256_file
from tests.conftest import REPO, run_cli

SHIPPED_SB, SHIPPED_BASELINE = REPO / "models" / "digits_resnet20_sb", REPO / "models" / "digits_resnet20"

ONNX_FILES = {
    "model.onnx",
    "model.ort-cpu.b1.fp32.onnx",
    "model.ort-cpu.b1.fp16.onnx",
    "baseline.ort-cpu.b1.fp32.onnx",
    "baseline.ort-cpu.b1.fp16.onnx",
}
REPORTS = {
    "validate.json",
    "validate.md",
    "bench.json",
    "bench.csv",
    "bench.md",
    "latency_vs_macs.png",
    "speedup.png",
    "summary.json",
    "summary.md",
}


def test_pipeline_validates_exactly_the_files_it_times(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(
        "pipeline",
        str(SHIPPED_SB),
        "--baseline",
        str(SHIPPED_BASELINE),
        "--out",
        str(out),
        "--fp16",
        "--batch",
        "1",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--limit",
        "64",
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and [s["name"] for s in summary["steps"]] == [
        "export + passes",
        "engine",
        "validate",
        "bench",
    ]
    engines = {p.name for p in out.glob("*.engine")}
    stack = environment.gpu_stack()  # the pipeline's own answer on this machine
    trt_onnx = (
        {"model.trt.fp32.onnx", "baseline.trt.fp32.onnx"} if stack.trt_ready else set()
    )  # what the engines are built from
    onnx_files = ONNX_FILES | trt_onnx
    assert (onnx_files | REPORTS) <= {p.name for p in out.iterdir()}
    assert summary["engine_backend"] == ("trt" if stack.trt_ready else "ort-cpu")
    if not stack.trt_ready:  # the engine step built nothing and says so
        engine_step = summary["steps"][1]
        assert (
            engine_step["status"] == "skipped"
            and engine_step["detail"].startswith("skipped: no TensorRT here")
            and not engines
        )
        assert f"{stack.why_not_trt()} here" in (out / "summary.md").read_text()
        assert "| engine | skipped | - |" in (out / "summary.md").read_text()  # no "0.0 s" for a step that did nothing
    else:
        assert engines == {
            "model.trt.fp32.engine",
            "model.trt.fp16.engine",
            "baseline.trt.fp32.engine",
            "baseline.trt.fp16.engine",
        }

    validation, bench = json.loads((out / "validate.json").read_text()), json.loads((out / "bench.json").read_text())
    validated = {(c["file"], c["sha256"]) for c in validation["checks"]}
    timed = {(r["file"], r["sha256"]) for r in bench["rows"] if r["file"] is not None}
    assert timed and timed <= validated  # every timed file was validated, byte for byte
    for file, digest in validated:  # and each is the file in the run folder
        assert sha256_file(out / file) == digest, file
    assert {f for f, _ in validated} == onnx_files | engines
    assert {f for f, _ in timed} == (onnx_files | engines) - {"model.onnx"} - trt_onnx
    references = {c["file"]: Path(c["reference"]).name for c in validation["checks"]}
    assert all(
        ref == ("digits_resnet20_sb" if f.startswith("model.") else "digits_resnet20") for f, ref in references.items()
    )
    assert validation["passed"] and {c["precision"] for c in validation["checks"]} == {"fp32", "fp16"}
    accuracy = {(Path(a["reference"]).name, a["file"]): a["top1"] for a in validation["accuracy"]}
    assert accuracy[("digits_resnet20_sb", None)] >= 0.95
    assert (
        abs(accuracy[("digits_resnet20_sb", "model.ort-cpu.b1.fp32.onnx")] - accuracy[("digits_resnet20_sb", None)])
        < 1e-9
    )

    rows = {(r["model"], r["backend"], r["precision"]): r for r in bench["rows"]}
    assert rows[("digits_resnet20_sb", "ort-cpu", "fp16")]["baseline"] == "digits_resnet20"
    assert rows[("digits_resnet20_sb", "ort-cpu", "fp16")]["speedup"] is not None  # paired with the fp16 baseline file
    assert (
        "| digits_resnet20_sb | model.ort-cpu.b1.fp16.onnx | ort-cpu | ort-cpu | fp16 | 1 |"
        in (out / "bench.md").read_text()
    )

    artifacts = {a["file"]: a for a in summary["artifacts"]}
    assert set(artifacts) == onnx_files | engines and all(a["parity"] is True for a in artifacts.values())
    assert artifacts["model.ort-cpu.b1.fp32.onnx"]["latency_ms"]["ort-cpu"]["1"] > 0  # (JSON keys are strings)
    page = (out / "summary.md").read_text()
    for file, a in artifacts.items():
        assert f"| [{file}]({file}) | " in page and a["sha256"][:16] in page

    repo = tmp_path / "repo"
    served = run_cli("triton-repo", str(out), "--out", str(repo), "--json")
    assert served.returncode == 0, served.stdout + served.stderr
    names = {m["name"] for m in json.loads(served.stdout)["models"]}
    served_engines = {
        e.rsplit(".", 1)[0].replace(".", "_") for e in engines if e.startswith("model.")
    }  # model_trt_fp16
    assert names == {"model", "model_ort-cpu_b1_fp32", "model_ort-cpu_b1_fp16"} | served_engines


@pytest.mark.slow
def test_pipeline_int8_makes_validates_and_benches_the_int8_files(tmp_path: Path) -> None:
    """``--int8``: each model's int8 file in the run folder, calibrated on the SB checkpoint's dataset (the registry baseline
    has random weights and none), judged by the int8 tolerance on the digits test split, timed beside fp32 with "vs fp32"."""
    out = tmp_path / "run"
    result = run_cli(
        "pipeline",
        str(SHIPPED_SB),
        "--out",
        str(out),
        "--int8",
        "--batch",
        "1",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--limit",
        "64",
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    int8_files = {"model.ort-cpu.b1.int8.onnx", "baseline.ort-cpu.b1.int8.onnx"}
    assert int8_files <= {p.name for p in out.iterdir()}
    from sbdeploy.files import describe_file

    for name in int8_files:
        meta = describe_file(out / name).metadata
        assert (
            meta["precision"] == "int8"
            and meta["int8"]["recipe"] == ("fused" if "kernels" in meta else "ort-cpu")  # an SB net's fused form
            and meta["int8"]["calibration"]["source"] == "digits"
        )
    validation, bench = json.loads((out / "validate.json").read_text()), json.loads((out / "bench.json").read_text())
    checks = [c for c in validation["checks"] if c["file"] in int8_files]
    assert validation["passed"] and {c["file"] for c in checks} == int8_files
    assert all(c["passed"] for c in checks if c["judged"]) and {c["case"] for c in checks if c["judged"]} == {
        "digits test"
    }
    accuracy = {(Path(a["reference"]).name, a["file"]): a["top1"] for a in validation["accuracy"]}
    assert (
        abs(accuracy[("digits_resnet20_sb", "model.ort-cpu.b1.int8.onnx")] - accuracy[("digits_resnet20_sb", None)])
        <= 0.01
    )
    rows = {(r["model"], r["precision"]): r for r in bench["rows"] if r["backend"] == "ort-cpu"}
    sb8 = rows[("digits_resnet20_sb", "int8")]
    assert sb8["file"] == "model.ort-cpu.b1.int8.onnx" and sb8["baseline"] == "cifar_resnet20" and sb8["vs_fp32"] > 0
    markdown = (out / "bench.md").read_text()
    assert "## int8" in markdown and f"int8 on this CPU: {environment.cpu_int8_support().describe()}" in markdown


@pytest.mark.slow
def test_pipeline_tune_validates_and_times_the_tuned_files(tmp_path: Path) -> None:
    """The wiring of ``pipeline --tune`` (one candidate, so nothing is timed twice): the ort-cpu files are the tuned ones."""
    from sbdeploy.backends.ort import SessionSettings
    from sbdeploy.pipeline.run import PipelineOptions, run_pipeline
    from sbdeploy.tune import TuneOptions

    tune = TuneOptions(variants=(), settings=(SessionSettings.default(1),))
    result = run_pipeline(
        "cifar_resnet20_sb",
        tmp_path,
        PipelineOptions(batches=(1,), iters=2, warmup_iters=1, threads=1, limit=8, tune=tune),
    )
    assert result, [s.detail for s in result.steps]
    tuned = json.loads((tmp_path / "tuning.json").read_text())["files"]
    assert set(tuned) == {"model.ort-cpu.b1.fp32.onnx", "baseline.ort-cpu.b1.fp32.onnx"}
    assert all(t["tuned"] and t["threads"] == 1 and t["chosen"]["form"] == "ort-cpu" for t in tuned.values())
    assert "tuning.md" in result.steps[0].files and "tuned model.ort-cpu.b1.fp32.onnx" in result.steps[0].detail
    timed = {r["file"] for r in json.loads((tmp_path / "bench.json").read_text())["rows"] if r["file"]}
    validated = {c["file"] for c in json.loads((tmp_path / "validate.json").read_text())["checks"]}
    assert set(tuned) <= timed and set(tuned) <= validated
    assert "## model.ort-cpu.b1.fp32.onnx" in (tmp_path / "tuning.md").read_text()
