"""``sbdeploy pipeline`` end to end on TensorRT, where TensorRT, pycuda and an NVIDIA GPU are present (``-m gpu``).

The shipped trained SB model and its baseline, fp32 and fp16: the engine step builds the four
engines of the ``trt`` target (the strided form, from the run's ``*.trt.fp32.onnx``, with that
row's build options), validate judges every file, bench times them, triton-repo serves them.
Checked: the proof the pipeline sells holds for the engines (the engines bench timed are the
engines validate judged, byte for byte, and the files in the run folder); each fp32 engine's
sidecar says TF32 off and validate judged it by the strict fp32 tolerance at its profile's
min and opt/max batch (validate.md says so); the fp16 engines computed in fp16 and passed
the fp16 tolerance. Skipped elsewhere with the reason (tests/test_pipeline.py covers the
branch without TensorRT).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sbdeploy import environment
from sbdeploy._io import sha256_file
from sbdeploy.tolerance import DEFAULT_TOLERANCES
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.gpu

SHIPPED_SB, SHIPPED_BASELINE = REPO / "models" / "digits_resnet20_sb", REPO / "models" / "digits_resnet20"
BATCHES = (1, 4)  # one engine per model and precision, profile (1, 4, 4)
ENGINES = {f"{stem}.trt.{p}.engine" for stem in ("model", "baseline") for p in ("fp32", "fp16")}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One pipeline run on TensorRT: its folder and its JSON reports."""
    stack = environment.gpu_stack()
    if not stack.trt_ready:
        pytest.skip(f"the pipeline's TensorRT branch needs TensorRT, pycuda and an NVIDIA GPU: {stack.why_not_trt()}")
    from sbdeploy.pipeline.run import PipelineOptions, run_pipeline

    out = tmp_path_factory.mktemp("pipeline") / "run"
    options = PipelineOptions(
        fp16=True, batches=BATCHES, iters=16, warmup_iters=3, limit=96, threads=1, baseline=str(SHIPPED_BASELINE)
    )
    result = run_pipeline(SHIPPED_SB, out, options)
    assert result, [(s.name, s.detail) for s in result.steps if not s.ok]
    return {name: json.loads((out / f"{name}.json").read_text()) for name in ("summary", "validate", "bench")} | {
        "out": out
    }


def test_the_engine_step_builds_the_trt_targets_engines(run: dict[str, Any]) -> None:
    out, summary = run["out"], run["summary"]
    assert summary["engine_backend"] == "trt"
    engine_step = next(s for s in summary["steps"] if s["name"] == "engine")
    assert engine_step["status"] == "ok" and engine_step["detail"].startswith("4 TensorRT engines built")
    assert {p.name for p in out.glob("*.engine")} == ENGINES
    from sbdeploy.backends.tensorrt.sidecar import read_sidecar
    from sbdeploy.export.metadata import read_metadata

    for engine in ENGINES:
        sidecar = read_sidecar(out / engine)
        assert sidecar is not None and sidecar.engine_sha256 == sha256_file(out / engine)
        source = out / f"{engine.split('.')[0]}.trt.fp32.onnx"  # both precisions' engines are built from it
        assert sidecar.onnx_sha256 == sha256_file(source)  # built from the run's own trt-form ONNX
        metadata = read_metadata(source)  # the trt target's form: strided SB convs (the baseline has no SB)
        assert metadata["target"] == "trt" and metadata["lowering"] == (
            "strided" if engine.startswith("model.") else "none"
        )
        assert sidecar.profiles[0]["input"]["min"][0] == 1 and sidecar.profiles[0]["input"]["max"][0] == max(BATCHES)
        if ".fp32." in engine:  # the trt row's parity engine: TF32 cleared, and the sidecar says so
            assert sidecar.tf32 is False and sidecar.builder_options["tf32"] is False
            assert sidecar.actual_precisions.get("fp32", 0) > 0 and "fp16" not in sidecar.actual_precisions
        else:
            assert sidecar.requested_precision == "fp16" and sidecar.actual_precisions.get("fp16", 0) > 0, (
                sidecar.actual_precisions
            )


def test_the_engines_timed_are_the_engines_validated(run: dict[str, Any]) -> None:
    out, validation, bench = run["out"], run["validate"], run["bench"]
    validated = {(c["file"], c["sha256"]) for c in validation["checks"]}
    timed = {(r["file"], r["sha256"]) for r in bench["rows"] if r["backend"] == "trt"}
    assert {
        f for f, _ in timed
    } == ENGINES and timed <= validated  # every engine timed, each one validated by its sha256
    for file, digest in timed:
        assert sha256_file(out / file) == digest, file  # and it is the file in the run folder
    rows = {(r["model"], r["precision"], r["batch"]): r for r in bench["rows"] if r["backend"] == "trt"}
    assert {k[2] for k in rows} == set(BATCHES)
    assert all(
        r["compute_median_ms"] is not None and 0 < r["compute_median_ms"] <= r["median_ms"] for r in rows.values()
    )
    assert all(rows[("digits_resnet20_sb", p, b)]["speedup"] is not None for p in ("fp32", "fp16") for b in BATCHES)
    summary = {a["file"]: a for a in run["summary"]["artifacts"]}
    assert all(summary[e]["parity"] is True and summary[e]["latency_ms"]["trt"] for e in ENGINES)


def test_fp32_engines_are_judged_by_the_strict_fp32_tolerance(run: dict[str, Any]) -> None:
    checks = [c for c in run["validate"]["checks"] if c["file"].endswith(".engine")]
    assert {c["file"] for c in checks} == ENGINES and all(c["passed"] and c["backend"] == "trt" for c in checks)
    for c in checks:
        precision = "fp32" if ".fp32." in c["file"] else "fp16"
        assert c["precision"] == precision and c["tolerance"] == DEFAULT_TOLERANCES[precision].describe(), c
    per_engine = {e: {c["case"] for c in checks if c["file"] == e} for e in ENGINES}
    assert all({"random b1", "random b4"} <= cases for cases in per_engine.values())  # profile min and opt = max
    artifacts = {a["file"]: a for a in run["validate"]["artifacts"]}
    assert all(artifacts[e]["tf32"] is (False if ".fp32." in e else None) for e in ENGINES)
    page = (run["out"] / "validate.md").read_text()
    assert "| trt | fp32 | off |" in page and f"- trt fp32: {DEFAULT_TOLERANCES['fp32'].describe()}" in page
    assert "- TF32: fp32 engines built without TF32" in page


def test_triton_repo_serves_the_validated_engines(run: dict[str, Any], tmp_path: Path) -> None:
    served = run_cli("triton-repo", str(run["out"]), "--out", str(tmp_path / "repo"), "--json")
    assert served.returncode == 0, served.stdout + served.stderr
    models = {m["name"]: m for m in json.loads(served.stdout)["models"]}
    for engine in sorted(e for e in ENGINES if e.startswith("model.")):
        model = models[engine.removesuffix(".engine").replace(".", "_")]  # model_trt_fp32
        assert model["platform"] == "tensorrt_plan" and model["max_batch_size"] == max(BATCHES)
        assert sha256_file(Path(model["folder"]) / "1" / "model.plan") == sha256_file(
            run["out"] / engine
        )  # the validated bytes
